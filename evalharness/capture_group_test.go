package evalharness

import (
	"context"
	"math"
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
	cases := []struct {
		name   string
		m      *onnxio.Model
		ds     *Dataset
		opt    CaptureOptions
		budget int64
	}{
		{"cnn norms", cnn, cnnData, CaptureOptions{Norms: []string{"c1", "c2", "w3"}}, 1},
		{"cnn grams", cnn, cnnData, CaptureOptions{Grams: []string{"c2", "w3"}}, 600},
		{"cnn histograms", cnn, cnnData, CaptureOptions{Tensors: []string{"a1", "a2", "a3", "a4", "logits"}, Bins: 32}, 700},
		{"cnn all, every value alone", cnn, cnnData, CaptureOptions{Norms: []string{"c1"}, Grams: []string{"c2", "w3"},
			Tensors: []string{"a1", "a2", "a3"}, Bins: 8}, 1},
		{"decoder grams and histograms", dec, decData, CaptureOptions{Grams: decGrams, Tensors: decTensors, Bins: 16}, 4000},
		{"decoder norms, every value alone", dec, decData, CaptureOptions{Norms: decGrams}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ref := tc.opt
			ref.Batch, ref.MaxBatchBytes = 1, -1
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
					var largest int64
					for _, o := range outs {
						r.held += int64(len(o.Data))
						largest = max(largest, o.NumElements())
					}
					r.held += 8 * largest
					for _, a := range in {
						r.samples = a.Rows()
					}
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
				if r.samples != 1 {
					t.Fatalf("group run %d of %d samples, want 1", i, r.samples)
				}
				if r.values > 1 && r.held > tc.budget {
					t.Fatalf("group run %d of %d values holds %d bytes, over the budget %d", i, r.values, r.held, tc.budget)
				}
			}
			passes := int64(1)
			if tc.opt.Bins > 0 {
				passes = 2
			}
			groups = len(runs) / int(tc.ds.N*passes)
			if groups < 2 || int64(len(runs)) != int64(groups)*tc.ds.N*passes {
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
