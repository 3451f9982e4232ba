package lowrank

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/onnxio"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func addInit(t testing.TB, m *onnxio.Model, rng *rand.Rand, name string, shape ...int64) {
	t.Helper()
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * 0.3)
	}
	tt, err := onnxio.FromFloat32(name, onnxio.Float, shape, v)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetInitializer(tt); err != nil {
		t.Fatal(err)
	}
}

func dims(v ...int64) []onnxio.Dim {
	d := make([]onnxio.Dim, len(v))
	for i, x := range v {
		d[i] = onnxio.Dim{Value: x}
	}
	return d
}

// denseModel: x[2,16] → MatMul(W1[16,12]) → Add(b1) → Relu →
// Gemm(W2[10,12], transB=1, alpha=0.5, beta=2, C=b2) → Transpose →
// Gemm(transA=1, W3[10,9], no C) → y[2,9].
func denseModel(t testing.TB) *onnxio.Model {
	t.Helper()
	rng := rand.New(rand.NewPCG(31, 32))
	m := onnxio.New("dense", 17)
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: dims(2, 16)})
	addInit(t, m, rng, "W1", 16, 12)
	addInit(t, m, rng, "b1", 12)
	addInit(t, m, rng, "W2", 10, 12)
	addInit(t, m, rng, "b2", 10)
	addInit(t, m, rng, "W3", 10, 9)
	err := m.InsertNodes(
		onnxio.Node{Name: "fc1/MatMul", OpType: "MatMul", Inputs: []string{"x", "W1"}, Outputs: []string{"h0"}},
		onnxio.Node{Name: "fc1/Add", OpType: "Add", Inputs: []string{"h0", "b1"}, Outputs: []string{"h1"}},
		onnxio.Node{Name: "relu", OpType: "Relu", Inputs: []string{"h1"}, Outputs: []string{"h2"}},
		onnxio.Node{Name: "fc2/Gemm", OpType: "Gemm", Inputs: []string{"h2", "W2", "b2"}, Outputs: []string{"h3"},
			Attrs: []onnxio.Attr{onnxio.AttrInt("transB", 1), onnxio.AttrFloatVal("alpha", 0.5), onnxio.AttrFloatVal("beta", 2)}},
		onnxio.Node{Name: "t", OpType: "Transpose", Inputs: []string{"h3"}, Outputs: []string{"h3t"}},
		onnxio.Node{Name: "fc3/Gemm", OpType: "Gemm", Inputs: []string{"h3t", "W3"}, Outputs: []string{"y"},
			Attrs: []onnxio.Attr{onnxio.AttrInt("transA", 1)}},
	)
	if err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float, Shape: dims(2, 9)})
	return m
}

// convModel: x[1,3,10,10] → c1 3×3 pad 1 (first conv) → Relu → c2 3×3
// pad 1 + bias → c3 3×5 stride (2,1) dilation (1,2) asymmetric pads →
// c4 1×1 → y.
func convModel(t testing.TB) *onnxio.Model {
	t.Helper()
	rng := rand.New(rand.NewPCG(33, 34))
	m := onnxio.New("conv", 17)
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: dims(1, 3, 10, 10)})
	addInit(t, m, rng, "c1.w", 8, 3, 3, 3)
	addInit(t, m, rng, "c2.w", 8, 8, 3, 3)
	addInit(t, m, rng, "c2.b", 8)
	addInit(t, m, rng, "c3.w", 6, 8, 3, 5)
	addInit(t, m, rng, "c4.w", 4, 6, 1, 1)
	pads := func(v ...int64) onnxio.Attr { return onnxio.AttrIntList("pads", v...) }
	err := m.InsertNodes(
		onnxio.Node{Name: "c1", OpType: "Conv", Inputs: []string{"x", "c1.w"}, Outputs: []string{"a1"}, Attrs: []onnxio.Attr{pads(1, 1, 1, 1)}},
		onnxio.Node{Name: "r1", OpType: "Relu", Inputs: []string{"a1"}, Outputs: []string{"a2"}},
		onnxio.Node{Name: "c2", OpType: "Conv", Inputs: []string{"a2", "c2.w", "c2.b"}, Outputs: []string{"a3"},
			Attrs: []onnxio.Attr{pads(1, 1, 1, 1), onnxio.AttrIntList("kernel_shape", 3, 3)}},
		onnxio.Node{Name: "c3", OpType: "Conv", Inputs: []string{"a3", "c3.w"}, Outputs: []string{"a4"},
			Attrs: []onnxio.Attr{pads(0, 2, 1, 1), onnxio.AttrIntList("strides", 2, 1), onnxio.AttrIntList("dilations", 1, 2)}},
		onnxio.Node{Name: "c4", OpType: "Conv", Inputs: []string{"a4", "c4.w"}, Outputs: []string{"y"}},
	)
	if err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float, Shape: dims(1, 4, 5, 5)})
	return m
}

// graphText renders the node list and initializer shapes, one per line.
func graphText(t testing.TB, m *onnxio.Model) string {
	t.Helper()
	var b strings.Builder
	for _, n := range m.Nodes() {
		fmt.Fprintf(&b, "%s %s(%s) -> %s", n.Name, n.OpType, strings.Join(n.Inputs, ", "), strings.Join(n.Outputs, ", "))
		for _, a := range n.Attrs {
			switch a.Type {
			case onnxio.KindInt:
				fmt.Fprintf(&b, " %s=%d", a.Name, a.I)
			case onnxio.KindInts:
				fmt.Fprintf(&b, " %s=%v", a.Name, a.Ints)
			case onnxio.KindFloat:
				fmt.Fprintf(&b, " %s=%g", a.Name, a.F)
			default:
				fmt.Fprintf(&b, " %s=?", a.Name)
			}
		}
		b.WriteByte('\n')
	}
	for _, name := range m.Initializers() {
		dt, shape, err := m.InitializerInfo(name)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "init %s %v %v\n", name, dt, shape)
	}
	return b.String()
}

func layerLines(r *Report) string {
	var b strings.Builder
	for _, l := range r.Layers {
		fmt.Fprintf(&b, "layer %s %s scheme=%s %dx%d rank=%d params=%d->%d factorized=%v reason=%q\n",
			l.Node, l.Op, l.Scheme, l.M, l.N, l.Rank, l.ParamsBefore, l.ParamsAfter, l.Factorized, l.Reason)
	}
	fmt.Fprintf(&b, "model params %d -> %d\n", r.ModelParamsBefore, r.ModelParamsAfter)
	return b.String()
}

// TestApplyGolden pins the rewritten graphs (node list, attributes,
// initializer shapes) and the per-layer decisions. Regenerate with
// go test ./compress/lowrank -run Golden -update.
func TestApplyGolden(t *testing.T) {
	cases := []struct {
		file  string
		model func(testing.TB) *onnxio.Model
		opt   Options
	}{
		{"dense_rank3.golden", denseModel, Options{Scheme: SchemeSVD, Rule: Rule{ByRank, 3}}},
		{"conv_channel_rank2.golden", convModel, Options{Scheme: SchemeChannel, Rule: Rule{ByRank, 2}}},
		{"conv_spatial_include_rank2.golden", convModel, Options{Scheme: SchemeSpatial, Rule: Rule{ByRank, 2}, Include: regexp.MustCompile(`^c[23]$`)}},
		{"conv_channel_include_all_rank2.golden", convModel, Options{Scheme: SchemeChannel, Rule: Rule{ByRank, 2}, Include: regexp.MustCompile(`.`)}},
		{"conv_auto_include_all_energy08.golden", convModel, Options{Scheme: SchemeAuto, Rule: Rule{ByEnergy, 0.8}, Include: regexp.MustCompile(`.`)}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			m := c.model(t)
			rep, err := Apply(context.Background(), m, c.opt)
			if err != nil {
				t.Fatal(err)
			}
			got := graphText(t, m) + layerLines(rep)
			path := filepath.Join("testdata", c.file)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("graph differs from %s:\n--- got\n%s--- want\n%s", path, got, want)
			}
		})
	}
}

// factorProduct returns the canonical rank-r product of a rewritten layer's
// two factor initializers (named weight_lowrank_a/b by Apply).
func initF64(t *testing.T, m *onnxio.Model, name string) []float64 {
	t.Helper()
	tt, err := m.Initializer(name)
	if err != nil {
		t.Fatal(err)
	}
	v, err := tt.Float64()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestApplyEckartYoung: the rewritten MatMul's two factors multiply to the
// best rank-r approximation of W1 (float32 storage: relative 1e-5).
func TestApplyEckartYoung(t *testing.T) {
	m := denseModel(t)
	w1 := initF64(t, m, "W1") // [16,12]
	s, err := ExactSVD(w1, 16, 12)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []int{1, 3, 5} {
		mm := denseModel(t)
		rep, err := Apply(context.Background(), mm, Options{Scheme: SchemeSVD, Rule: Rule{ByRank, float64(r)}, Include: regexp.MustCompile(`^fc1/`)})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Factorized != 1 || rep.Layers[0].Rank != r {
			t.Fatalf("rank %d: report %+v", r, rep.Layers)
		}
		a := initF64(t, mm, "W1_lowrank_a") // [16, r]
		b := initF64(t, mm, "W1_lowrank_b") // [r, 12]
		got := sqDiff(w1, matmul(a, b, 16, r, 12))
		want := s.Tail(r)
		if math.Abs(got-want) > 1e-5*want {
			t.Errorf("rank %d: ‖W−AB‖² = %.8g, Σ_{i>r}σ² = %.8g", r, got, want)
		}
		if e := rep.Layers[0].Energy; math.Abs(e-s.Energy(r)) > 1e-12 {
			t.Errorf("rank %d: reported energy %g, want %g", r, e, s.Energy(r))
		}
	}
}

func TestApplyRefusals(t *testing.T) {
	grouped := func(t testing.TB) *onnxio.Model {
		m := convModel(t)
		n, err := m.Node("c2")
		if err != nil {
			t.Fatal(err)
		}
		n.SetAttr(onnxio.AttrInt("group", 2))
		rng := rand.New(rand.NewPCG(1, 1))
		addInit(t, m, rng, "c2.w", 8, 4, 3, 3)
		if err := m.UpdateNode(n); err != nil {
			t.Fatal(err)
		}
		return m
	}
	samePad := func(t testing.TB) *onnxio.Model {
		m := convModel(t)
		n, _ := m.Node("c2")
		n.Attrs = []onnxio.Attr{onnxio.AttrStr("auto_pad", "SAME_UPPER")}
		if err := m.UpdateNode(n); err != nil {
			t.Fatal(err)
		}
		return m
	}
	cases := []struct {
		name  string
		model func(testing.TB) *onnxio.Model
		opt   Options
		want  error
		msg   string
	}{
		{"include matches nothing", denseModel, Options{Rule: Rule{ByEnergy, 0.9}, Include: regexp.MustCompile(`nosuchlayer`)}, ErrOption, `the include parameter "nosuchlayer" matches no layer`},
		{"include names only a Conv under svd", convModel, Options{Scheme: SchemeSVD, Rule: Rule{ByRank, 2}, Include: regexp.MustCompile(`^c2$`)}, ErrOption, "scheme svd factorizes (MatMul, Gemm"},
		{"energy above 1", denseModel, Options{Rule: Rule{ByEnergy, 1.5}}, ErrOption, "outside (0,1]"},
		{"energy 0", denseModel, Options{Rule: Rule{ByEnergy, 0}}, ErrOption, "outside (0,1]"},
		{"no rule", denseModel, Options{}, ErrOption, "no rank rule"},
		{"grouped conv named", grouped, Options{Scheme: SchemeChannel, Rule: Rule{ByRank, 2}, Include: regexp.MustCompile(`^c2$`)}, ErrUnsupported, "group=2"},
		{"auto_pad SAME named", samePad, Options{Scheme: SchemeSpatial, Rule: Rule{ByRank, 2}, Include: regexp.MustCompile(`^c2$`)}, ErrUnsupported, "SAME_UPPER"},
		{"spatial whitened", convModel, Options{Scheme: SchemeSpatial, Rule: Rule{ByRank, 2}, Calib: grams(nil)}, ErrOption, "cannot be whitened (its matrix is not the im2col view); set the scheme parameter to channel"},
		{"budget too small", denseModel, Options{Rule: Rule{ByParamsRatio, 0.01}}, ErrBudget, "budget"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Apply(context.Background(), c.model(t), c.opt)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, c.want, c.msg)
			}
		})
	}
	// An empty weight (a hostile or degenerate file) is skipped, not a panic.
	empty := denseModel(t)
	et, err := onnxio.FromFloat32("W3", onnxio.Float, []int64{10, 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := empty.SetInitializer(et); err != nil {
		t.Fatal(err)
	}
	rep0, err := Apply(context.Background(), empty, Options{Rule: Rule{ByRank, 2}})
	if err != nil {
		t.Fatal(err)
	}
	if l := rep0.Layers[2]; l.Factorized || l.Reason != "empty weight" {
		t.Errorf("empty W3: %+v", l)
	}
	// Without --include the same grouped conv is skipped with a reason.
	rep, err := Apply(context.Background(), grouped(t), Options{Scheme: SchemeChannel, Rule: Rule{ByRank, 2}})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range rep.Layers {
		if l.Node == "c2" && (l.Factorized || !strings.Contains(l.Reason, "group=2")) {
			t.Errorf("grouped c2: %+v", l)
		}
	}
}

// gramCalib serves stored Gram matrices per weight (InputGram only).
type gramCalib struct {
	calib.Missing
	g map[string][]float64 // weight → XᵀX (d×d)
}

func grams(g map[string][]float64) gramCalib { return gramCalib{g: g} }

func (g gramCalib) InputGram(weight string) ([]float64, int, int64, error) {
	x, ok := g.g[weight]
	if !ok {
		return nil, 0, 0, fmt.Errorf("no activations for %s", weight)
	}
	d := int(math.Sqrt(float64(len(x))))
	return x, d, 100, nil
}

// TestApplyWhitened: with calibration, the rewritten MatMul's output error
// on the calibration inputs is the whitened tail and below plain SVD's.
func TestApplyWhitened(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	n, d := 300, 16
	x := anisotropic(rng, n, d)
	calib := grams(map[string][]float64{"W1": gram(x, n, d)})
	out := func(opt Options) float64 {
		m := denseModel(t)
		w1 := initF64(t, m, "W1")
		rep, err := Apply(context.Background(), m, opt)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Layers[0].Factorized || rep.Layers[0].Whitened != (opt.Calib != nil) {
			t.Fatalf("report %+v", rep.Layers[0])
		}
		a := initF64(t, m, "W1_lowrank_a")
		b := initF64(t, m, "W1_lowrank_b")
		// X·W1 − X·A·B
		diff := make([]float64, len(w1))
		ab := matmul(a, b, 16, 3, 12)
		for i := range diff {
			diff[i] = w1[i] - ab[i]
		}
		return sumSquares(matmul(x, diff, n, d, 12))
	}
	inc := regexp.MustCompile(`^fc1/`)
	plain := out(Options{Rule: Rule{ByRank, 3}, Include: inc})
	white := out(Options{Rule: Rule{ByRank, 3}, Include: inc, Calib: calib, Damp: -1})
	if !(white < plain) {
		t.Errorf("whitened output error %g, plain %g", white, plain)
	}
	// Calibration errors surface.
	_, err := Apply(context.Background(), denseModel(t), Options{Rule: Rule{ByRank, 3}, Calib: grams(nil)})
	if !errors.Is(err, ErrCalibration) {
		t.Errorf("missing Gram: err = %v, want ErrCalibration", err)
	}
}

// TestApplyParams: the report's model parameter counts agree with the
// rewritten model's weights.
func TestApplyParams(t *testing.T) {
	for _, sc := range []Scheme{SchemeSVD, SchemeChannel, SchemeSpatial, SchemeAuto} {
		m := convModel(t)
		if sc == SchemeSVD {
			m = denseModel(t)
		}
		rep, err := Apply(context.Background(), m, Options{Scheme: sc, Rule: Rule{ByRankRatio, 0.25}, Include: regexp.MustCompile(`.`)})
		if err != nil {
			t.Fatal(err)
		}
		ws, err := m.Weights()
		if err != nil {
			t.Fatal(err)
		}
		if got := modelParams(ws); got != rep.ModelParamsAfter {
			t.Errorf("%v: model has %d params, report %d", sc, got, rep.ModelParamsAfter)
		}
		if rep.ModelParamsBefore-rep.ModelParamsAfter != rep.LayerParamsBefore-rep.LayerParamsAfter {
			t.Errorf("%v: model saving %d ≠ layer saving %d", sc, rep.ModelParamsBefore-rep.ModelParamsAfter, rep.LayerParamsBefore-rep.LayerParamsAfter)
		}
		if rep.Factorized == 0 {
			t.Errorf("%v: nothing factorized", sc)
		}
		var sb strings.Builder
		if err := rep.WriteTable(&sb); err != nil || !strings.Contains(sb.String(), "model parameters") {
			t.Errorf("table: %v\n%s", err, sb.String())
		}
	}
}

// TestApplyBudget: --params-ratio keeps the factorized layers within the
// budget.
func TestApplyBudget(t *testing.T) {
	m := convModel(t)
	rep, err := Apply(context.Background(), m, Options{Scheme: SchemeAuto, Rule: Rule{ByParamsRatio, 0.6}, Include: regexp.MustCompile(`.`)})
	if err != nil {
		t.Fatal(err)
	}
	var before, after int64
	for _, l := range rep.Layers {
		before += int64(l.M * l.N)
		after += l.ParamsAfter
	}
	if float64(after) > 0.6*float64(before) {
		t.Errorf("params %d > 0.6×%d\n%s", after, before, layerLines(rep))
	}
}

func TestCandidates(t *testing.T) {
	cases := []struct {
		name  string
		model func(testing.TB) *onnxio.Model
		opt   Options
		want  string
	}{
		{"dense", denseModel, Options{Rule: Rule{ByEnergy, 0.9}}, "W1,W2,W3"},
		{"dense exclude", denseModel, Options{Rule: Rule{ByEnergy, 0.9}, Exclude: regexp.MustCompile(`fc2`)}, "W1,W3"},
		{"channel default", convModel, Options{Scheme: SchemeChannel, Rule: Rule{ByRank, 2}}, "c2.w"},
		{"spatial include", convModel, Options{Scheme: SchemeSpatial, Rule: Rule{ByRank, 2}, Include: regexp.MustCompile(`c[34]`)}, "c3.w,c4.w"},
	}
	for _, c := range cases {
		got, err := Candidates(c.model(t), c.opt)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if strings.Join(got, ",") != c.want {
			t.Errorf("%s: %v, want %s", c.name, got, c.want)
		}
	}
	if _, err := Candidates(denseModel(t), Options{Rule: Rule{ByEnergy, 2}}); !errors.Is(err, ErrOption) {
		t.Errorf("bad energy: err = %v", err)
	}
}
