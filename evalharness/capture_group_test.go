package evalharness

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"testing"

	"github.com/onnxpost/onnxpost/internal/llmgen"
	"github.com/onnxpost/onnxpost/onnxio"
)

func TestFetchGroups(t *testing.T) {
	sz := func(b int64) valueSize { return valueSize{elems: b / 4, bytes: b, dim0: 1} }
	sizes := map[string]valueSize{"a": sz(40), "b": sz(40), "c": sz(400), "d": sz(8), "e": sz(8)}
	piece := func(_ string, s valueSize) int64 { return s.elems }
	for _, tc := range []struct {
		budget int64
		want   [][]string
	}{
		// a alone: 40 + 8·10 = 120; a+b: 80 + 80 = 160
		{160, [][]string{{"a", "b"}, {"c"}, {"d", "e"}}},
		{159, [][]string{{"a"}, {"b"}, {"c"}, {"d", "e"}}},
		{1, [][]string{{"a"}, {"b"}, {"c"}, {"d"}, {"e"}}}, // each over the budget: alone
		{1 << 20, [][]string{{"a", "b", "c", "d", "e"}}},
	} {
		got := fetchGroups([]string{"a", "b", "c", "d", "e"}, sizes, piece, tc.budget)
		if !slices.EqualFunc(got, tc.want, slices.Equal) {
			t.Errorf("budget %d: groups %v, want %v", tc.budget, got, tc.want)
		}
	}
	// a value of unknown size goes alone, wherever it is
	got := fetchGroups([]string{"d", "x", "e"}, sizes, piece, 1<<20)
	if want := [][]string{{"d"}, {"x"}, {"e"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("unknown size: groups %v, want %v", got, want)
	}
}

// TestCaptureGroupsKeepStatistics: with MaxBatchBytes below one sample's
// activations, Capture fetches them in groups (one ONNX Runtime session
// each), and every statistic — Grams, Wanda column norms, tensor ranges
// and histograms — is bit for bit that of the capture fetching them all
// at once, one sample a run; each group's run holds at most the budget
// unless it is one value alone. The CNN's Conv output a1 feeds a Relu
// that ONNX Runtime would fuse into the Conv in a session not exposing
// a1: the groups run the graph optimized with every value exposed.
func TestCaptureGroupsKeepStatistics(t *testing.T) {
	requireORT(t)
	cnn, err := onnxio.Load(testdata("cnn.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	cnnData, err := LoadDataset(testdata("cnn_data.npz"))
	if err != nil {
		t.Fatal(err)
	}
	dec, decData, decGrams := tinyDecoder(t, llmgen.Config{Layers: 2, Hidden: 16, Heads: 2, FF: 24, Vocab: 30}, 3, 5, 7, 2)
	var decTensors []string
	for _, n := range dec.Nodes() {
		if n.OpType == "MatMul" || n.OpType == "Add" {
			decTensors = append(decTensors, n.Outputs[0])
		}
	}
	fusing, fixed := fusingCNN(t, 0), fusingCNN(t, 4)
	fusingOpt := CaptureOptions{Grams: []string{"w2", "w3"}, Norms: []string{"w1"}, Tensors: []string{"a1", "a2", "a3", "a4", "a5", "a6"}, Bins: 16}
	cases := []struct {
		name   string
		m      *onnxio.Model
		ds     *Dataset
		opt    CaptureOptions
		budget int64
		run    int64 // samples per run: 1, or a fixed batch
	}{
		{"fusing cnn", fusing, fusingData(t, 6), fusingOpt, 14000, 1},
		{"fusing cnn, every value alone", fusing, fusingData(t, 6), fusingOpt, 1, 1},
		{"fixed batch of 4", fixed, fusingData(t, 8), fusingOpt, 40000, 4},
		{"cnn norms", cnn, cnnData, CaptureOptions{Norms: []string{"c1", "c2", "w3"}}, 1, 1},
		{"cnn grams", cnn, cnnData, CaptureOptions{Grams: []string{"c2", "w3"}}, 600, 1},
		{"cnn histograms", cnn, cnnData, CaptureOptions{Tensors: []string{"a1", "a2", "a3", "a4", "logits"}, Bins: 32}, 700, 1},
		{"cnn all, every value alone", cnn, cnnData, CaptureOptions{Norms: []string{"c1"}, Grams: []string{"c2", "w3"},
			Tensors: []string{"a1", "a2", "a3"}, Bins: 8}, 1, 1},
		{"decoder grams and histograms", dec, decData, CaptureOptions{Grams: decGrams, Tensors: decTensors, Bins: 16}, 4000, 1},
		{"decoder norms, every value alone", dec, decData, CaptureOptions{Norms: decGrams}, 1, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ref := tc.opt
			ref.Batch, ref.MaxBatchBytes = int(tc.run), -1
			want, err := Capture(context.Background(), tc.m, tc.ds, ref)
			if err != nil {
				t.Fatal(err)
			}
			type groupRun struct {
				values  int
				held    int64
				samples int64
			}
			var runs []groupRun
			groupHook = func(g []string, s SessionRunner) SessionRunner {
				return hooked{s, func(in map[string]*Array, outs []*Array) {
					r := groupRun{values: len(g)}
					for _, a := range in {
						r.samples = a.Rows()
					}
					// the values and a float64 copy of the largest piece
					// (a sample of a value whose first axis is the samples')
					var largest int64
					for _, o := range outs {
						r.held += int64(len(o.Data))
						p := o.NumElements()
						if len(o.Shape) > 0 && o.Shape[0] == r.samples {
							p /= r.samples
						}
						largest = max(largest, p)
					}
					r.held += 8 * largest
					runs = append(runs, r)
				}}
			}
			defer func() { groupHook = nil }()
			opt := tc.opt
			opt.MaxBatchBytes = tc.budget
			got, err := Capture(context.Background(), tc.m, tc.ds, opt)
			if err != nil {
				t.Fatal(err)
			}
			groups := 0
			for i, r := range runs {
				if r.samples != tc.run {
					t.Fatalf("group run %d of %d samples, want %d", i, r.samples, tc.run)
				}
				if r.values > 1 && r.held > tc.budget {
					t.Fatalf("group run %d of %d values holds %d bytes, over the budget %d", i, r.values, r.held, tc.budget)
				}
			}
			passes := int64(1)
			if tc.opt.Bins > 0 {
				passes = 2
			}
			perGroup := tc.ds.N / tc.run * passes
			groups = len(runs) / int(perGroup)
			if groups < 2 || int64(len(runs)) != int64(groups)*perGroup {
				t.Fatalf("%d group runs over %d samples: want at least two groups", len(runs), tc.ds.N)
			}
			sameStats(t, want, got, tc.opt)
		})
	}
}

// hooked calls after on every run of a session.
type hooked struct {
	SessionRunner
	after func(in map[string]*Array, outs []*Array)
}

func (h hooked) Run(in map[string]*Array) ([]*Array, error) {
	outs, err := h.SessionRunner.Run(in)
	if err == nil {
		h.after(in, outs)
	}
	return outs, err
}

// sameStats fails unless got equals want bit for bit in every statistic
// opt asks for.
func sameStats(t *testing.T, want, got *Stats, opt CaptureOptions) {
	t.Helper()
	if got.Samples != want.Samples {
		t.Fatalf("%d samples, want %d", got.Samples, want.Samples)
	}
	bits := func(a, b []float64) bool {
		return slices.EqualFunc(a, b, func(x, y float64) bool { return math.Float64bits(x) == math.Float64bits(y) })
	}
	for _, w := range opt.Grams {
		g, d, n, err := got.InputGram(w)
		wg, wd, wn, werr := want.InputGram(w)
		if err != nil || werr != nil || d != wd || n != wn || !bits(g, wg) {
			t.Fatalf("Gram of %s differs (d %d/%d, n %d/%d, %v %v)", w, d, wd, n, wn, err, werr)
		}
	}
	for _, w := range opt.Norms {
		c, n, err := got.SquaredColumnNorms(w)
		wc, wn, werr := want.SquaredColumnNorms(w)
		if err != nil || werr != nil || n != wn || !bits(c, wc) {
			t.Fatalf("column norms of %s differ (n %d/%d, %v %v)", w, n, wn, err, werr)
		}
	}
	for _, name := range opt.Tensors {
		a, _ := got.Tensor(name)
		b, _ := want.Tensor(name)
		if a == nil || b == nil {
			t.Fatalf("no statistics of %s", name)
		}
		if a.Count != b.Count || a.NaNs != b.NaNs || a.Infs != b.Infs || !bits([]float64{a.Min, a.Max, a.Mean, a.Std}, []float64{b.Min, b.Max, b.Mean, b.Std}) {
			t.Fatalf("statistics of %s differ: %+v, want %+v", name, a, b)
		}
		if (a.Hist == nil) != (b.Hist == nil) || a.Hist != nil && (a.Hist.Lo != b.Hist.Lo || a.Hist.Hi != b.Hist.Hi || !slices.Equal(a.Hist.Counts, b.Hist.Counts)) {
			t.Fatalf("histograms of %s differ", name)
		}
	}
}

// fusingCNN builds a Conv network whose activations ONNX Runtime computes
// differently, in the last bits, depending on which of them a session
// exposes: Conv → BatchNormalization, Conv → Add → Mul of constants (folded
// into the Conv's weights and bias unless the Conv's output is a graph
// output), Conv → Relu. batch is the input's batch dimension (0: free).
func fusingCNN(t *testing.T, batch int64) *onnxio.Model {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 11))
	m := onnxio.New("fusing", 13)
	tensor := func(name string, shape ...int64) {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64()) * 0.3
			if name == "var" {
				v[i] = 0.5 + v[i]*v[i]
			}
		}
		ts, err := onnxio.FromFloat32(name, onnxio.Float, shape, v)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetInitializer(ts); err != nil {
			t.Fatal(err)
		}
	}
	tensor("w1", 6, 3, 3, 3)
	tensor("b1", 6)
	for _, n := range []string{"scale", "bias", "mean", "var"} {
		tensor(n, 6)
	}
	tensor("w2", 6, 6, 3, 3)
	tensor("b2", 6)
	tensor("c", 1, 6, 1, 1)
	tensor("s", 1, 6, 1, 1)
	tensor("w3", 4, 6, 1, 1)
	dim0 := onnxio.Dim{Param: "batch"}
	if batch > 0 {
		dim0 = onnxio.Dim{Value: batch}
	}
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{dim0, {Value: 3}, {Value: 12}, {Value: 12}}})
	pads := onnxio.AttrIntList("pads", 1, 1, 1, 1)
	node := func(name, op string, in []string, out string, attrs ...onnxio.Attr) onnxio.Node {
		return onnxio.Node{Name: name, OpType: op, Inputs: in, Outputs: []string{out}, Attrs: attrs}
	}
	if err := m.InsertNodes(
		node("conv1", "Conv", []string{"x", "w1", "b1"}, "a1", pads),
		node("bn", "BatchNormalization", []string{"a1", "scale", "bias", "mean", "var"}, "a2"),
		node("relu", "Relu", []string{"a2"}, "a3"),
		node("conv2", "Conv", []string{"a3", "w2", "b2"}, "a4", pads),
		node("add", "Add", []string{"a4", "c"}, "a5"),
		node("mul", "Mul", []string{"a5", "s"}, "a6"),
		node("conv3", "Conv", []string{"a6", "w3"}, "y"),
	); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float})
	return m
}

// fusingData returns n random samples for fusingCNN.
func fusingData(t *testing.T, n int64) *Dataset {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 5))
	v := make([]float32, n*3*12*12)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	ds, err := NewDataset(map[string]*Array{"x": FromFloat32([]int64{n, 3, 12, 12}, v)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// TestCaptureGroupsLeaveNoFiles: the optimized model and the profile the
// grouped capture writes go with its temporary folder.
func TestCaptureGroupsLeaveNoFiles(t *testing.T) {
	requireORT(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	opt := CaptureOptions{Grams: []string{"w2", "w3"}, Tensors: []string{"a1", "a5"}, MaxBatchBytes: 1}
	if _, err := Capture(context.Background(), fusingCNN(t, 0), fusingData(t, 2), opt); err != nil {
		t.Fatal(err)
	}
	left, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Fatalf("the capture left %d entries in the temporary folder (%s first)", len(left), left[0].Name())
	}
}
