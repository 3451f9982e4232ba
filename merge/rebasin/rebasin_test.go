package rebasin

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

func loadZoo(t *testing.T, name string) *onnxio.Model {
	t.Helper()
	m, err := onnxio.Load("../../models/zoo/" + name + "/base.onnx")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestGroupsZoo(t *testing.T) {
	for _, tc := range []struct {
		zoo  string
		want []Group
	}{
		{"mlp", []Group{
			{"fc1.weight", 128, []Member{{"fc1.weight", 0, 1}, {"fc1.bias", 0, 1}, {"fc2.weight", 1, 1}}, "/Relu_output_0", -1, 0, "", nil},
			{"fc2.weight", 64, []Member{{"fc2.weight", 0, 1}, {"fc2.bias", 0, 1}, {"fc3.weight", 1, 1}}, "/Relu_1_output_0", -1, 0, "", nil},
		}},
		{"cnn", []Group{
			{"conv1.weight", 16, []Member{{"conv1.weight", 0, 1}, {"conv1.bias", 0, 1}, {"conv2.weight", 1, 1}}, "/Relu_output_0", 1, 0, "", nil},
			{"conv2.weight", 32, []Member{{"conv2.weight", 0, 1}, {"conv2.bias", 0, 1}, {"conv3.weight", 1, 1}}, "/MaxPool_output_0", 1, 0, "", nil},
			// MaxPool to 2×2, Flatten: each channel owns 4 rows of fc.
			{"conv3.weight", 32, []Member{{"conv3.weight", 0, 1}, {"conv3.bias", 0, 1}, {"fc.weight", 1, 4}}, "/MaxPool_1_output_0", 1, 0, "", nil},
		}},
	} {
		got, err := Groups(loadZoo(t, tc.zoo))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(tc.want) {
			t.Fatalf("%s: got %+v", tc.zoo, got)
		}
		for i := range got {
			g, w := got[i], tc.want[i]
			if g.Name != w.Name || g.Size != w.Size || g.Probe != w.Probe || g.ProbeAxis != w.ProbeAxis || len(g.Members) != len(w.Members) {
				t.Fatalf("%s: group %d: got %+v want %+v", tc.zoo, i, g, w)
			}
			for k := range g.Members {
				if g.Members[k] != w.Members[k] {
					t.Fatalf("%s: group %d: got %+v want %+v", tc.zoo, i, g, w)
				}
			}
		}
	}
	// Transformer: the residual stream (embedding, LayerNorm parameters,
	// every block's input and output projections, the head) is one group,
	// each block's MLP units another, and per block the head dimensions of
	// queries with keys and of values with the output projection's input.
	gs, held, err := Analyze(loadZoo(t, "transformer"))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name        string
		size, heads int
		members     int
	}{{"embed.weight", 32, 0, 30}, {"blocks.0.ff1.weight", 64, 0, 3}, {"blocks.1.ff1.weight", 64, 0, 3},
		{"blocks.0.q.weight", 32, 2, 4}, {"blocks.1.q.weight", 32, 2, 4}, {"blocks.0.v.weight", 32, 2, 3}, {"blocks.1.v.weight", 32, 2, 3}}
	if len(gs) != len(want) || len(held) != 0 {
		t.Fatalf("groups %+v, held %+v", gs, held)
	}
	for i, w := range want {
		if gs[i].Name != w.name || gs[i].Size != w.size || gs[i].Heads != w.heads || len(gs[i].Members) != w.members {
			t.Fatalf("group %d: %+v, want %+v", i, gs[i], w)
		}
	}
	// Activation matching reads the residual stream after each of its four
	// additions, not only at the pooled output the first layer's units reach.
	if want := []string{"/blocks.0/Add_output_0", "/blocks.0/Add_2_output_0", "/blocks.1/Add_output_0", "/blocks.1/Add_2_output_0"}; gs[0].Probe != "/ln/LayerNormalization_output_0" || !slices.Equal(gs[0].Stream, want) {
		t.Fatalf("residual stream probes %q then %q, want the pooled LayerNorm then %q", gs[0].Probe, gs[0].Stream, want)
	}
	for i, g := range gs[1:] {
		want := 0 // MLP units and values: their own probe only
		if i == 2 || i == 3 {
			want = 1 // queries: the keys too
		}
		if len(g.Stream) != want || want == 1 && !strings.HasSuffix(g.Stream[0], "/k/Add_output_0") {
			t.Fatalf("group %s: more probes %q, want %d", g.Name, g.Stream, want)
		}
	}
	// Queries/keys and values/outputs of one block reorder heads together.
	if gs[3].Attention == "" || gs[3].Attention != gs[5].Attention || gs[4].Attention != gs[6].Attention || gs[3].Attention == gs[4].Attention {
		t.Fatalf("attention blocks: %q %q %q %q", gs[3].Attention, gs[4].Attention, gs[5].Attention, gs[6].Attention)
	}
}

// builder assembles small test graphs.
type builder struct {
	m     *onnxio.Model
	rng   *rand.Rand
	scale float64 // of the random weights; 0: 1
}

func newBuilder(t *testing.T, in string, shape ...int64) *builder {
	b := &builder{m: onnxio.New("t", 17), rng: rand.New(rand.NewSource(3))}
	var dims []onnxio.Dim
	for _, d := range shape {
		dims = append(dims, onnxio.Dim{Value: d})
	}
	b.m.AddInput(onnxio.ValueInfo{Name: in, DType: onnxio.Float, Shape: dims})
	return b
}

func (b *builder) init(t *testing.T, name string, shape ...int64) string {
	t.Helper()
	n, _ := onnxio.NumElements(shape)
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(b.rng.NormFloat64())
		if b.scale != 0 {
			v[i] *= float32(b.scale)
		}
	}
	tt, err := onnxio.FromFloat32(name, onnxio.Float, shape, v)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.m.SetInitializer(tt); err != nil {
		t.Fatal(err)
	}
	return name
}

func (b *builder) node(t *testing.T, op string, in []string, out string, attrs ...onnxio.Attr) string {
	t.Helper()
	if err := b.m.InsertNodes(onnxio.Node{Name: out + "_n", OpType: op, Inputs: in, Outputs: []string{out}, Attrs: attrs}); err != nil {
		t.Fatal(err)
	}
	return out
}

func (b *builder) done(out string) *onnxio.Model {
	b.m.SetOutputs([]onnxio.ValueInfo{{Name: out, DType: onnxio.Float}})
	return b.m
}

func TestGroupsSynthetic(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(t *testing.T) *onnxio.Model
		want  string // error text; "" for success
		check func(t *testing.T, gs []Group)
	}{
		{"matmul-bias-batchnorm-gelu-softmax", func(t *testing.T) *onnxio.Model {
			b := newBuilder(t, "x", 2, 4)
			h := b.node(t, "MatMul", []string{"x", b.init(t, "w1", 4, 6)}, "h")
			h = b.node(t, "Add", []string{b.init(t, "b1", 6), h}, "hb")
			h = b.node(t, "BatchNormalization", []string{h, b.init(t, "s", 6), b.init(t, "o", 6), b.init(t, "mu", 6), b.init(t, "var", 6)}, "bn")
			s := b.node(t, "Sigmoid", []string{h}, "sg")
			h = b.node(t, "Mul", []string{h, s}, "gelu")
			y := b.node(t, "Gemm", []string{h, b.init(t, "w2", 3, 6), b.init(t, "b2", 3)}, "y", onnxio.AttrInt("transB", 1))
			return b.done(b.node(t, "Softmax", []string{y}, "p"))
		}, "", func(t *testing.T, gs []Group) {
			if len(gs) != 1 || gs[0].Size != 6 || len(gs[0].Members) != 7 {
				t.Fatalf("%+v", gs)
			}
		}},
		{"residual", func(t *testing.T) *onnxio.Model {
			b := newBuilder(t, "x", 2, 4)
			h := b.node(t, "Gemm", []string{"x", b.init(t, "w1", 4, 4)}, "h")
			h2 := b.node(t, "Gemm", []string{h, b.init(t, "w2", 4, 4)}, "h2")
			r := b.node(t, "Add", []string{h, h2}, "r")
			return b.done(b.node(t, "Gemm", []string{r, b.init(t, "w3", 4, 2)}, "y"))
		}, "", func(t *testing.T, gs []Group) {
			// The two layers added together share one permutation.
			want := []Member{{"w1", 1, 1}, {"w2", 0, 1}, {"w3", 0, 1}, {"w2", 1, 1}}
			if len(gs) != 1 || len(gs[0].Members) != len(want) {
				t.Fatalf("%+v", gs)
			}
			for i := range want {
				if gs[0].Members[i] != want[i] {
					t.Fatalf("%+v", gs)
				}
			}
		}},
		{"residual-from-input", func(t *testing.T) *onnxio.Model {
			b := newBuilder(t, "x", 2, 4)
			h := b.node(t, "Gemm", []string{"x", b.init(t, "w1", 4, 4)}, "h")
			r := b.node(t, "Add", []string{"x", h}, "r")
			return b.done(b.node(t, "Gemm", []string{r, b.init(t, "w3", 4, 2)}, "y"))
		}, "", func(t *testing.T, gs []Group) {
			if len(gs) != 0 { // tied to the input features: cannot move
				t.Fatalf("%+v", gs)
			}
		}},
		{"grouped-conv", func(t *testing.T) *onnxio.Model {
			b := newBuilder(t, "x", 1, 4, 5, 5)
			h := b.node(t, "Conv", []string{"x", b.init(t, "c1", 4, 1, 3, 3)}, "h", onnxio.AttrInt("group", 4))
			return b.done(h)
		}, `Conv node "h_n" is a grouped or depthwise convolution (group=4)`, nil},
		{"reshape", func(t *testing.T) *onnxio.Model {
			b := newBuilder(t, "x", 2, 4)
			h := b.node(t, "Gemm", []string{"x", b.init(t, "w1", 4, 4)}, "h")
			r := b.node(t, "Transpose", []string{h}, "r")
			return b.done(b.node(t, "Gemm", []string{r, b.init(t, "w3", 2, 2)}, "y"))
		}, `reach Transpose node "r_n": re-basin does not follow this op`, nil},
		{"attention-scores-out", func(t *testing.T) *onnxio.Model {
			b := newBuilder(t, "x", 2, 4)
			q := b.node(t, "MatMul", []string{"x", b.init(t, "wq", 4, 4)}, "q")
			return b.done(b.node(t, "MatMul", []string{q, "x"}, "s"))
		}, "", func(t *testing.T, gs []Group) {
			if len(gs) != 0 { // the query units go into the scores: held
				t.Fatalf("%+v", gs)
			}
		}},
		{"hidden-is-output", func(t *testing.T) *onnxio.Model {
			b := newBuilder(t, "x", 2, 4)
			h := b.node(t, "Gemm", []string{"x", b.init(t, "w1", 4, 4)}, "h")
			b.node(t, "Gemm", []string{h, b.init(t, "w2", 4, 2)}, "y")
			b.m.SetOutputs([]onnxio.ValueInfo{{Name: "y", DType: onnxio.Float}, {Name: "h", DType: onnxio.Float}})
			return b.m
		}, "", func(t *testing.T, gs []Group) {
			if len(gs) != 0 { // h is an output: its units cannot move
				t.Fatalf("%+v", gs)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gs, err := Groups(tc.build(t))
			if tc.want != "" {
				if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, gs)
		})
	}
}

// randomPerms draws one permutation per group.
func randomPerms(gs []Group, seed int64) [][]int {
	r := rand.New(rand.NewSource(seed))
	out := make([][]int, len(gs))
	heads := map[string][]int{} // one head order per attention block
	for i, g := range gs {
		if g.Heads > 1 { // whole heads move together, then within each head
			hd := g.Size / g.Heads
			order := make([]int, g.Heads)
			for h := range order {
				order[h] = h
			}
			if g.Attention != "" {
				if heads[g.Attention] == nil {
					heads[g.Attention] = r.Perm(g.Heads)
				}
				order = heads[g.Attention]
			}
			for _, h := range order {
				for _, j := range r.Perm(hd) {
					out[i] = append(out[i], h*hd+j)
				}
			}
			continue
		}
		out[i] = r.Perm(g.Size)
	}
	return out
}

func sameWeights(t *testing.T, a, b *onnxio.Model) {
	t.Helper()
	for _, n := range a.Initializers() {
		x, _ := a.Initializer(n)
		y, err := b.Initializer(n)
		if err != nil {
			t.Fatal(err)
		}
		xv, _ := x.Float64()
		yv, _ := y.Float64()
		for i := range xv {
			if xv[i] != yv[i] {
				t.Fatalf("%s[%d]: %v != %v", n, i, xv[i], yv[i])
			}
		}
	}
}

// TestAlignRecoversPermutation permutes a zoo model at random, then aligns
// it back onto the original: weight matching must find the inverse, so the
// realigned weights equal the original's exactly.
func TestAlignRecoversPermutation(t *testing.T) {
	for _, zoo := range []string{"mlp", "cnn", "transformer"} {
		t.Run(zoo, func(t *testing.T) {
			a := loadZoo(t, zoo)
			before, _ := a.Bytes()
			gs, err := Groups(a)
			if err != nil {
				t.Fatal(err)
			}
			perms := randomPerms(gs, 7)
			b, err := Permute(a, gs, perms)
			if err != nil {
				t.Fatal(err)
			}
			after, _ := a.Bytes()
			if string(before) != string(after) {
				t.Fatal("Permute modified its input")
			}
			aligned, res, err := Align(context.Background(), a, b, Options{Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			sameWeights(t, a, aligned)
			for g, mv := range res.Moved() {
				if mv < 0.5 {
					t.Errorf("group %s: only %.2f of the units moved", gs[g].Name, mv)
				}
			}
			// Aligning a model onto itself moves nothing.
			_, res, err = Align(context.Background(), a, a, Options{Seed: 2})
			if err != nil {
				t.Fatal(err)
			}
			for g, mv := range res.Moved() {
				if mv != 0 {
					t.Errorf("self-alignment moved %.2f of %s", mv, gs[g].Name)
				}
			}
		})
	}
}

// TestPermutedSameFunction runs the zoo models and their random
// permutations in ONNX Runtime: the outputs agree within 1e-5.
func TestPermutedSameFunction(t *testing.T) {
	if err := evalharness.Init(""); err != nil {
		if errors.Is(err, evalharness.ErrNoLibrary) {
			t.Skipf("ONNX Runtime not available: %v", err)
		}
		t.Fatal(err)
	}
	for _, zoo := range []string{"mlp", "cnn", "transformer"} {
		t.Run(zoo, func(t *testing.T) {
			a := loadZoo(t, zoo)
			gs, err := Groups(a)
			if err != nil {
				t.Fatal(err)
			}
			b, err := Permute(a, gs, randomPerms(gs, 11))
			if err != nil {
				t.Fatal(err)
			}
			in := a.Inputs()[0]
			shape := []int64{32}
			for _, d := range in.Shape[1:] {
				shape = append(shape, d.Value)
			}
			n, _ := onnxio.NumElements(shape)
			r := rand.New(rand.NewSource(5))
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(r.Float64())
			}
			run := func(m *onnxio.Model) []float64 {
				raw, err := m.Bytes()
				if err != nil {
					t.Fatal(err)
				}
				s, err := evalharness.NewSession(raw, evalharness.SessionOptions{})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				out, err := s.Run(map[string]*evalharness.Array{in.Name: evalharness.FromFloat32(shape, x)})
				if err != nil {
					t.Fatal(err)
				}
				v, err := out[0].Float64()
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			ya, yb := run(a), run(b)
			worst, moved := 0.0, 0.0
			for i := range ya {
				worst = math.Max(worst, math.Abs(ya[i]-yb[i]))
			}
			for _, m := range (&Result{Perms: randomPerms(gs, 11)}).Moved() {
				moved += m
			}
			t.Logf("max abs difference %g", worst)
			if worst > 1e-5 || moved == 0 {
				t.Fatalf("max abs difference %g (moved %g)", worst, moved)
			}
		})
	}
}

func TestPermuteErrors(t *testing.T) {
	a := loadZoo(t, "mlp")
	gs, _ := Groups(a)
	bad := randomPerms(gs, 1)
	bad[0][0] = bad[0][1]
	for _, tc := range []struct {
		perms [][]int
		want  string
	}{
		{bad, `group "fc1.weight": not a permutation`},
		{bad[:1], "1 permutations for 2 groups"},
		{[][]int{{0}, bad[1]}, `group "fc1.weight": permutation of 1 for 128 units`},
	} {
		if _, err := Permute(a, gs, tc.perms); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
	tr := loadZoo(t, "transformer")
	tgs, _ := Groups(tr)
	cross := randomPerms(tgs, 1)
	cross[3][0], cross[3][31] = cross[3][31], cross[3][0] // unit 0 of head 0 ↔ a unit of head 1
	if _, err := Permute(tr, tgs, cross); err == nil || !strings.Contains(err.Error(), `group "blocks.0.q.weight": head 0 of the result takes units from more than one head`) {
		t.Errorf("cross-head permutation: %v", err)
	}
	// Reordering the heads of queries/keys but not of values/outputs.
	split := randomPerms(tgs, 1)
	for i := range split[3] {
		split[3][i] = (split[3][i] + 16) % 32 // swap the two heads
	}
	if _, err := Permute(tr, tgs, split); err == nil || !strings.Contains(err.Error(), "reorder the heads of one attention block differently") {
		t.Errorf("heads reordered apart: %v", err)
	}
	_, err := WeightMatching(context.Background(), a, loadZoo(t, "cnn"), Options{})
	if !errors.Is(err, ErrIncompatible) {
		t.Fatalf("mlp vs cnn: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := WeightMatching(ctx, a, a, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// TestActivationMatchingRecovers permutes a zoo model at random and aligns
// it back by activation matching on the digits test set.
func TestActivationMatchingRecovers(t *testing.T) {
	if err := evalharness.Init(""); err != nil {
		if errors.Is(err, evalharness.ErrNoLibrary) {
			t.Skipf("ONNX Runtime not available: %v", err)
		}
		t.Fatal(err)
	}
	for _, zoo := range []string{"mlp", "cnn"} {
		t.Run(zoo, func(t *testing.T) {
			a := loadZoo(t, zoo)
			ds, err := evalharness.LoadDatasetFor("../../models/data/digits_clean_test.npz", evalharness.DatasetOptions{Inputs: []string{a.Inputs()[0].Name}})
			if err != nil {
				t.Fatal(err)
			}
			gs, _ := Groups(a)
			b, err := Permute(a, gs, randomPerms(gs, 3))
			if err != nil {
				t.Fatal(err)
			}
			res, err := ActivationMatching(context.Background(), a, b, ds.Head(200), ActivationOptions{})
			if err != nil {
				t.Fatal(err)
			}
			// Units that are constant on the data (dead ReLUs) carry no
			// signal and may land anywhere; every other unit must return to
			// its place.
			truth := randomPerms(gs, 3)
			for g := range gs {
				wrong, dead := 0, 0
				for i, j := range res.Perms[g] {
					if truth[g][j] != i {
						wrong++
					}
				}
				st := deadUnits(t, a, gs[g], ds.Head(200))
				dead = st
				t.Logf("group %s: %d of %d units misplaced, %d dead", gs[g].Name, wrong, gs[g].Size, dead)
				if wrong > dead {
					t.Errorf("group %s: %d units misplaced, only %d dead", gs[g].Name, wrong, dead)
				}
			}
		})
	}
}

// deadUnits counts the units of g constant over ds.
func deadUnits(t *testing.T, m *onnxio.Model, g Group, ds *evalharness.Dataset) int {
	s, err := probeSession(m, []Group{g}, evalharness.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := ds.Check(s.Inputs()); err != nil {
		t.Fatal(err)
	}
	out, err := s.Run(ds.Batch(0, ds.N))
	if err != nil {
		t.Fatal(err)
	}
	r, n, err := rows(out[0], g.ProbeAxis, g.Size)
	if err != nil {
		t.Fatal(err)
	}
	dead := 0
	for u := 0; u < g.Size; u++ {
		same := true
		for k := 1; k < n && same; k++ {
			same = r[k*g.Size+u] == r[u]
		}
		if same {
			dead++
		}
	}
	return dead
}

// TestWeightMatchingSeedPair aligns the two zoo MLPs and CNNs trained from
// different initializations: the aligned B is closer to A in weight space
// than B is (by a wide margin), and the search ends with a pass that
// changes nothing.
func TestWeightMatchingSeedPair(t *testing.T) {
	for _, fam := range []string{"mlp", "cnn"} {
		a, err := onnxio.Load("../../models/zoo/" + fam + "/seed_a.onnx")
		if err != nil {
			t.Skipf("re-basin pair missing (make rebasin-zoo): %v", err)
		}
		b, err := onnxio.Load("../../models/zoo/" + fam + "/seed_b.onnx")
		if err != nil {
			t.Fatal(err)
		}
		aligned, res, err := Align(context.Background(), a, b, Options{Seed: 0})
		if err != nil {
			t.Fatal(err)
		}
		dist := func(x, y *onnxio.Model) float64 {
			s := 0.0
			for _, n := range x.Initializers() {
				p, _ := x.Initializer(n)
				q, _ := y.Initializer(n)
				pv, _ := p.Float64()
				qv, _ := q.Float64()
				for i := range pv {
					s += (pv[i] - qv[i]) * (pv[i] - qv[i])
				}
			}
			return math.Sqrt(s)
		}
		before, after := dist(a, b), dist(a, aligned)
		t.Logf("%s: ‖A − B‖ = %.3f, ‖A − PB‖ = %.3f after %d passes", fam, before, after, res.Passes)
		if after > 0.9*before || res.Passes < 2 || res.Passes >= 100 {
			t.Fatalf("%s: ‖A − B‖ = %.3f, ‖A − PB‖ = %.3f, %d passes", fam, before, after, res.Passes)
		}
	}
}

// residualMLP is x → Gemm+Relu (a0) → Gemm+Relu → Gemm (h2); Relu(a0 + h2)
// → Gemm: the first and third layers' units are tied by the addition.
func residualMLP(t *testing.T) *onnxio.Model {
	b := newBuilder(t, "x", 5, 6)
	b.scale = 0.5
	h := b.node(t, "Gemm", []string{"x", b.init(t, "w0", 6, 8), b.init(t, "b0", 8)}, "h0")
	a0 := b.node(t, "Relu", []string{h}, "a0")
	h = b.node(t, "Gemm", []string{a0, b.init(t, "w1", 8, 8)}, "h1")
	h = b.node(t, "Relu", []string{h}, "a1")
	h = b.node(t, "Gemm", []string{h, b.init(t, "w2", 8, 8), b.init(t, "b2", 8)}, "h2")
	r := b.node(t, "Add", []string{a0, h}, "r")
	r = b.node(t, "Relu", []string{r}, "ar")
	return b.done(b.node(t, "Gemm", []string{r, b.init(t, "w3", 8, 3)}, "y"))
}

// TestResidualPermuteAndRecover: a random permutation of the residual MLP
// keeps its function in ONNX Runtime (when available), and weight matching
// aligns it back onto the original exactly.
func TestResidualPermuteAndRecover(t *testing.T) {
	a := residualMLP(t)
	gs, err := Groups(a)
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 2 || gs[0].Name != "w0" || len(gs[0].Members) != 6 || gs[1].Name != "w1" {
		t.Fatalf("%+v", gs)
	}
	b, err := Permute(a, gs, randomPerms(gs, 9))
	if err != nil {
		t.Fatal(err)
	}
	aligned, _, err := Align(context.Background(), a, b, Options{Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	sameWeights(t, a, aligned)
	if err := evalharness.Init(""); err != nil {
		if errors.Is(err, evalharness.ErrNoLibrary) {
			t.Skipf("ONNX Runtime not available: %v", err)
		}
		t.Fatal(err)
	}
	x := make([]float32, 5*6)
	for i := range x {
		x[i] = float32(i%7) - 3
	}
	run := func(m *onnxio.Model) []float64 {
		raw, err := m.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		s, err := evalharness.NewSession(raw, evalharness.SessionOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		out, err := s.Run(map[string]*evalharness.Array{"x": evalharness.FromFloat32([]int64{5, 6}, x)})
		if err != nil {
			t.Fatal(err)
		}
		v, _ := out[0].Float64()
		return v
	}
	ya, yb := run(a), run(b)
	worst := 0.0
	for i := range ya {
		worst = math.Max(worst, math.Abs(ya[i]-yb[i]))
	}
	t.Logf("max abs difference %g", worst)
	if worst > 1e-5 {
		t.Fatalf("max abs difference %g", worst)
	}
}

// residualCNN: Conv+BN+Relu (c0), Conv+BN+Relu, Conv+BN, added to c0, Relu,
// MaxPool, Flatten, Gemm: BatchNorm parameters, residual channels and the
// Flatten blocks all move with their channels.
func residualCNN(t *testing.T) *onnxio.Model {
	b := newBuilder(t, "x", 3, 2, 6, 6)
	b.scale = 0.3 // outputs of order 1: the 1e-5 bound is then float32 reassociation
	pads := onnxio.AttrIntList("pads", 1, 1, 1, 1)
	bn := func(in, p string, c int64) string {
		v := b.init(t, p+"v", c)
		vt, _ := b.m.Initializer(v)
		vv, _ := vt.Float32()
		for i := range vv {
			vv[i] = vv[i]*vv[i] + 0.5 // a variance must be positive
		}
		nt, _ := onnxio.FromFloat32(v, onnxio.Float, []int64{c}, vv)
		b.m.SetInitializer(nt)
		return b.node(t, "BatchNormalization", []string{in, b.init(t, p+"s", c), b.init(t, p+"o", c), b.init(t, p+"m", c), v}, p+"out")
	}
	h := b.node(t, "Conv", []string{"x", b.init(t, "k0", 4, 2, 3, 3), b.init(t, "kb0", 4)}, "c0", pads)
	c0 := b.node(t, "Relu", []string{bn(h, "bn0", 4)}, "r0")
	h = b.node(t, "Conv", []string{c0, b.init(t, "k1", 5, 4, 3, 3)}, "c1", pads)
	h = b.node(t, "Relu", []string{bn(h, "bn1", 5)}, "r1")
	h = b.node(t, "Conv", []string{h, b.init(t, "k2", 4, 5, 3, 3), b.init(t, "kb2", 4)}, "c2", pads)
	h = bn(h, "bn2", 4)
	h = b.node(t, "Add", []string{c0, h}, "sum")
	h = b.node(t, "Relu", []string{h}, "rs")
	h = b.node(t, "MaxPool", []string{h}, "mp", onnxio.AttrIntList("kernel_shape", 2, 2), onnxio.AttrIntList("strides", 2, 2))
	h = b.node(t, "Flatten", []string{h}, "fl")
	return b.done(b.node(t, "Gemm", []string{h, b.init(t, "fc", 3, 36)}, "y", onnxio.AttrInt("transB", 1)))
}

func TestResidualCNNPermuteAndRecover(t *testing.T) {
	a := residualCNN(t)
	gs, err := Groups(a)
	if err != nil {
		t.Fatal(err)
	}
	// k0 ∪ k2 (tied by the sum: 2 weights, 2 biases, 8 BN parameters, the
	// input axes of k1 and fc), and k1 (its BN and k2's input).
	if len(gs) != 2 || gs[0].Size != 4 || len(gs[0].Members) != 14 || gs[1].Size != 5 || len(gs[1].Members) != 6 {
		t.Fatalf("%+v", gs)
	}
	for _, m := range gs[0].Members {
		if m.Tensor == "fc" && m.Block != 9 {
			t.Fatalf("fc block %d, want 9 (3×3 after pooling)", m.Block)
		}
	}
	b, err := Permute(a, gs, randomPerms(gs, 21))
	if err != nil {
		t.Fatal(err)
	}
	aligned, _, err := Align(context.Background(), a, b, Options{Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	sameWeights(t, a, aligned)
	if err := evalharness.Init(""); err != nil {
		if errors.Is(err, evalharness.ErrNoLibrary) {
			t.Skipf("ONNX Runtime not available: %v", err)
		}
		t.Fatal(err)
	}
	x := make([]float32, 3*2*6*6)
	for i := range x {
		x[i] = float32((i*37)%11)/5 - 1
	}
	run := func(m *onnxio.Model) []float64 {
		raw, err := m.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		s, err := evalharness.NewSession(raw, evalharness.SessionOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		out, err := s.Run(map[string]*evalharness.Array{"x": evalharness.FromFloat32([]int64{3, 2, 6, 6}, x)})
		if err != nil {
			t.Fatal(err)
		}
		v, _ := out[0].Float64()
		return v
	}
	ya, yb := run(a), run(b)
	worst := 0.0
	for i := range ya {
		worst = math.Max(worst, math.Abs(ya[i]-yb[i]))
	}
	t.Logf("max abs difference %g", worst)
	if worst > 1e-5 {
		t.Fatalf("max abs difference %g", worst)
	}
}
