package evalharness

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/onnxpost/onnxpost/internal/llmgen"
	"github.com/onnxpost/onnxpost/onnxio"
)

// TestCaptureGramBudget checks Capture with MaxGramBytes: the Grams are
// computed on demand in groups (more than one pass), equal bit for bit
// those accumulated at once, whatever the order they are asked in; weights
// that read the same input share one Gram; a decoder with external data is
// captured through a session that maps its data (MapAbove 0) with the same
// result; an edit of the model after Capture changes no Gram.
func TestCaptureGramBudget(t *testing.T) {
	requireORT(t)
	m, ds, grams := tinyDecoder(t, llmgen.Config{Layers: 2, Hidden: 32, Heads: 2, FF: 48, Vocab: 40}, 5, 3, 6, 1)
	if len(grams) != 2*7+1 {
		t.Fatalf("%d MatMul weights, want 15", len(grams))
	}
	ctx := context.Background()
	all, err := Capture(ctx, m, ds, CaptureOptions{Grams: grams, Batch: 2})
	if err != nil {
		t.Fatal(err)
	}
	if all.GramPasses() != 0 {
		t.Fatalf("eager capture made %d on-demand passes", all.GramPasses())
	}
	defer func(v int64) { MapAbove = v }(MapAbove)
	for _, mapAbove := range []int64{1 << 40, 0} {
		MapAbove = mapAbove
		// 32² float64s (q, k, v, o, gate, up share three inputs) + 48²:
		// a budget of 10 KB holds one or two Grams
		lm := m.Derive()
		lazy, err := Capture(ctx, lm, ds, CaptureOptions{Grams: grams, Batch: 2, MaxGramBytes: 10 << 10})
		if err != nil {
			t.Fatal(err)
		}
		// editing the model after Capture (a transform pruning in place)
		// changes none of the Grams computed later
		q, err := lm.Initializer("model.layers.0.self_attn.q_proj.weight")
		if err != nil {
			t.Fatal(err)
		}
		zero, err := onnxio.NewTensor(q.Name, q.DType, q.Shape, make([]byte, len(q.Bytes())))
		if err != nil {
			t.Fatal(err)
		}
		if err := lm.SetInitializer(zero); err != nil {
			t.Fatal(err)
		}
		order := append([]string(nil), grams...)
		slices.Reverse(order[len(order)/2:]) // in order, then backwards
		for _, w := range order {
			want, d, n, err := all.InputGram(w)
			if err != nil {
				t.Fatal(err)
			}
			got, gd, gn, err := lazy.InputGram(w)
			if err != nil {
				t.Fatalf("MapAbove %d: %s: %v", mapAbove, w, err)
			}
			if gd != d || gn != n || !slices.Equal(got, want) {
				t.Fatalf("MapAbove %d: Gram of %s on demand (d %d, n %d) differs from the one-pass Gram (d %d, n %d)", mapAbove, w, gd, gn, d, n)
			}
			wn, _, _ := all.SquaredColumnNorms(w)
			gnorm, _, err := lazy.SquaredColumnNorms(w)
			if err != nil || !slices.Equal(wn, gnorm) {
				t.Fatalf("column norms of %s on demand differ: %v", w, err)
			}
		}
		// 2 layers × 4 distinct inputs + lm_head = 9 Grams, one or two per pass
		if p := lazy.GramPasses(); p < 5 {
			t.Fatalf("MapAbove %d: %d on-demand passes, want at least 5 (one group at a time)", mapAbove, p)
		}
	}
	q, _, _, _ := all.InputGram("model.layers.0.self_attn.q_proj.weight")
	k, _, _, _ := all.InputGram("model.layers.0.self_attn.k_proj.weight")
	if !slices.Equal(q, k) {
		t.Fatal("q and k read the same input but their Grams differ")
	}
}

// TestCaptureMeasuringRunLeavesStatistics: the run of one sample that
// sizes the batches (MaxBatchBytes) is not accumulated: ONNX Runtime's activations of the zoo transformer's head differ in
// the last bits between a batch of one and a batch of 17, and the
// statistics under the default budget equal, bit for bit, those of
// unbounded 17-sample runs.
func TestCaptureMeasuringRunLeavesStatistics(t *testing.T) {
	requireORT(t)
	root := filepath.Join("..", "models")
	m, err := onnxio.Load(filepath.Join(root, "zoo", "transformer", "base.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	ds, err := LoadDataset(filepath.Join(root, "data", "digits_clean_test.npz"))
	if err != nil {
		t.Fatal(err)
	}
	ds = ds.Head(40)
	var grams []string
	ws, err := m.Weights()
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		if w.Role == onnxio.RoleMatMulB || w.Role == onnxio.RoleGemmB {
			grams = append(grams, w.Name)
		}
	}
	ctx := context.Background()
	capture := func(batchBytes int64) *Stats {
		st, err := Capture(ctx, m, ds, CaptureOptions{Grams: grams, Batch: 17, MaxBatchBytes: batchBytes, Session: SessionOptions{Threads: 1}})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	want, got := capture(-1), capture(0)
	for _, w := range grams {
		a, _, _, _ := got.InputGram(w)
		b, _, _, _ := want.InputGram(w)
		if !slices.Equal(a, b) {
			t.Errorf("%s: Gram under the default budget differs from unbounded 17-sample runs", w)
		}
	}
}
