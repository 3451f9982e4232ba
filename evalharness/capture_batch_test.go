package evalharness

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/onnxpost/onnxpost/internal/llmgen"
	"github.com/onnxpost/onnxpost/onnxio"
)

func TestBatchWithin(t *testing.T) {
	for _, tc := range []struct{ batch, per, budget, want int64 }{
		{64, 1 << 20, 256 << 20, 64},  // fits
		{64, 8 << 20, 256 << 20, 32},  // lowered
		{64, 300 << 20, 256 << 20, 1}, // one sample over the budget: one
		{5, 0, 1, 5},                  // nothing fetched
		{64, 10, 25, 2},
	} {
		if got := batchWithin(tc.batch, tc.per, tc.budget); got != tc.want {
			t.Errorf("batchWithin(%d, %d, %d) = %d, want %d", tc.batch, tc.per, tc.budget, got, tc.want)
		}
	}
}

// TestCaptureBatchBudget: with MaxBatchBytes below one batch's activations
// the capture runs smaller batches: its Grams and ranges are those of a
// capture with that batch size, bit for bit; a budget that holds the batch
// changes nothing.
func TestCaptureBatchBudget(t *testing.T) {
	requireORT(t)
	m, ds, grams := tinyDecoder(t, llmgen.Config{Layers: 1, Hidden: 16, Heads: 2, FF: 24, Vocab: 30}, 3, 5, 7, 2)
	tensor := m.Nodes()[len(m.Nodes())-1].Outputs[0]
	// batch sizes of the runs (the first input's first axis)
	var runs []int64
	open := func(req OpenRequest, o SessionOptions) (SessionRunner, error) {
		o.Open = nil
		s, err := OpenSession(req, o)
		if err != nil {
			return nil, err
		}
		return batchRecorder{s, &runs}, nil
	}
	capture := func(batch int, budget int64, want []int64) *Stats {
		t.Helper()
		runs = nil
		st, err := Capture(context.Background(), m, ds, CaptureOptions{Grams: grams, Tensors: []string{tensor}, Batch: batch,
			MaxBatchBytes: budget, Session: SessionOptions{Open: open}})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(runs, want) {
			t.Fatalf("batch %d, budget %d: runs of %v samples, want %v", batch, budget, runs, want)
		}
		return st
	}
	same := func(a, b *Stats) bool {
		for _, w := range grams {
			ga, _, na, _ := a.InputGram(w)
			gb, _, nb, _ := b.InputGram(w)
			if na != nb || !slices.Equal(ga, gb) {
				return false
			}
		}
		ta, _ := a.Tensor(tensor)
		tb, _ := b.Tensor(tensor)
		return ta.Count == tb.Count && ta.Min == tb.Min && ta.Max == tb.Max && ta.Mean == tb.Mean && ta.Std == tb.Std
	}
	// 7 tokens × (16 + 24 + … fetched values) × 12 bytes: far over 1 byte;
	// a probe of one sample, then batches that fit
	if !same(capture(4, 1, []int64{1, 1, 1, 1, 1, 1}), capture(1, -1, []int64{1, 1, 1, 1, 1})) {
		t.Fatal("a 1-byte batch budget: the statistics differ from a capture of one sample a batch")
	}
	if !same(capture(4, 1<<30, []int64{1, 4, 1}), capture(4, -1, []int64{4, 1})) {
		t.Fatal("a budget that holds the batch changed the statistics")
	}
}

// tinyDecoder generates a decoder (llmgen, seed) and a calibration set of
// samples × seq tokens (tokenSeed), and lists its MatMul weights.
func tinyDecoder(t *testing.T, cfg llmgen.Config, seed uint64, samples, seq int, tokenSeed uint64) (*onnxio.Model, *Dataset, []string) {
	t.Helper()
	dir := t.TempDir()
	p, err := llmgen.Generate(dir, "dec.onnx", cfg, seed)
	if err != nil {
		t.Fatal(err)
	}
	calib := filepath.Join(dir, "calib.npz")
	if err := llmgen.WriteTokens(calib, cfg.Vocab, samples, seq, tokenSeed); err != nil {
		t.Fatal(err)
	}
	m, err := onnxio.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := LoadDatasetFor(calib, DatasetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var grams []string
	ws, err := m.Weights()
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		if w.Role == onnxio.RoleMatMulB {
			grams = append(grams, w.Name)
		}
	}
	return m, ds, grams
}

// batchRecorder records the batch size of every run of a session.
type batchRecorder struct {
	SessionRunner
	runs *[]int64
}

func (b batchRecorder) Run(inputs map[string]*Array) ([]*Array, error) {
	for _, in := range b.Inputs() {
		if a, ok := inputs[in.Name]; ok && len(a.Shape) > 0 {
			*b.runs = append(*b.runs, a.Shape[0])
			break
		}
	}
	return b.SessionRunner.Run(inputs)
}
