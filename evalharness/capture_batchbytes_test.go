package evalharness_test

import (
	"context"
	"slices"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/evalharness/evaltest"
)

// run records one Run of a session: the samples fed and the bytes Capture
// holds for them (the fetched values and a float64 copy of the largest).
type run struct {
	samples int64
	held    int64
}

// measured wraps the fake sessions and records every run.
type measured struct {
	evalharness.SessionRunner
	runs *[]run
}

func (s measured) Run(in map[string]*evalharness.Array) ([]*evalharness.Array, error) {
	outs, err := s.SessionRunner.Run(in)
	if err != nil {
		return nil, err
	}
	r := run{samples: in[s.Inputs()[0].Name].Rows()}
	var largest int64
	for _, o := range outs {
		r.held += int64(len(o.Data))
		largest = max(largest, o.NumElements())
	}
	r.held += 8 * largest
	*s.runs = append(*s.runs, r)
	return outs, nil
}

// measuring returns an Opener of fake sessions that record their runs in
// runs.
func measuring(runs *[]run) evalharness.Opener {
	return func(req evalharness.OpenRequest, opt evalharness.SessionOptions) (evalharness.SessionRunner, error) {
		s, err := evaltest.Open(req, opt)
		if err != nil {
			return nil, err
		}
		return measured{SessionRunner: s, runs: runs}, nil
	}
}

// mlpRequest asks for a Gram, column norms of a graph input and of a
// computed value, and histograms of two computed values of the zoo MLP.
func mlpRequest(open evalharness.Opener) evalharness.CaptureOptions {
	return evalharness.CaptureOptions{
		Grams:   []string{"fc2.weight"},
		Norms:   []string{"fc1.weight", "fc3.weight"},
		Tensors: []string{"/Relu_output_0", "/fc2/Gemm_output_0", "image"},
		Bins:    16,
		Session: evalharness.SessionOptions{Open: open},
	}
}

// TestCaptureBatchingKeepsStatistics: however Capture cuts the data into
// runs (one run of every sample, Batch alone, the MaxBatchBytes sizing with
// one sample per run or several, a partial last batch), every statistic is
// bit for bit the same; the runs are the sizes the options ask for.
func TestCaptureBatchingKeepsStatistics(t *testing.T) {
	m, ds := zooMLP(t)
	var refRuns []run
	opt := mlpRequest(measuring(&refRuns))
	opt.Batch, opt.MaxBatchBytes = int(ds.N), -1
	ref, err := evalharness.Capture(context.Background(), m, ds, opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(refRuns) != 2 || refRuns[0].samples != ds.N || refRuns[1].samples != ds.N {
		t.Fatalf("unbounded capture: runs %v, want one of %d samples per pass (ranges, histograms)", refRuns, ds.N)
	}
	perSample := refRuns[0].held / ds.N
	cases := []struct {
		name       string
		batch      int
		batchBytes int64
		want       int64 // samples per run after the first
	}{
		{"Batch 7 unbounded", 7, -1, 7},
		{"default budget", 64, 0, 64},
		{"one sample per run", 64, 1, 1},
		{"5 samples fit", 64, 5*perSample + perSample/2, 5},
		{"Batch caps the budget", 3, 1 << 40, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var runs []run
			opt := mlpRequest(measuring(&runs))
			opt.Batch, opt.MaxBatchBytes = tc.batch, tc.batchBytes
			st, err := evalharness.Capture(context.Background(), m, ds, opt)
			if err != nil {
				t.Fatal(err)
			}
			// two passes (ranges, then histograms), after a run of one
			// sample that measures when MaxBatchBytes ≥ 0
			var want []int64
			if tc.batchBytes >= 0 {
				want = append(want, 1)
			}
			for range 2 {
				for i := int64(0); i < ds.N; i += tc.want {
					want = append(want, min(tc.want, ds.N-i))
				}
			}
			got := make([]int64, len(runs))
			for i, r := range runs {
				got[i] = r.samples
			}
			if !slices.Equal(got, want) {
				t.Fatalf("runs of %v samples, want %v", got, want)
			}
			compareStats(t, ref, st)
		})
	}
}

// compareStats fails unless got equals want in every statistic of
// mlpRequest, bit for bit.
func compareStats(t *testing.T, want, got *evalharness.Stats) {
	t.Helper()
	if got.Samples != want.Samples {
		t.Fatalf("%d samples, want %d", got.Samples, want.Samples)
	}
	g, d, n, err := got.InputGram("fc2.weight")
	wg, wd, wn, werr := want.InputGram("fc2.weight")
	if err != nil || werr != nil || d != wd || n != wn || !slices.Equal(g, wg) {
		t.Fatalf("Gram of fc2.weight differs (d %d/%d, n %d/%d, %v %v)", d, wd, n, wn, err, werr)
	}
	for _, w := range []string{"fc1.weight", "fc2.weight", "fc3.weight"} {
		c, n, err := got.SquaredColumnNorms(w)
		wc, wn, werr := want.SquaredColumnNorms(w)
		if err != nil || werr != nil || n != wn || !slices.Equal(c, wc) {
			t.Fatalf("column norms of %s differ (n %d/%d, %v %v)", w, n, wn, err, werr)
		}
	}
	for _, name := range []string{"/Relu_output_0", "/fc2/Gemm_output_0", "image"} {
		a, _ := got.Tensor(name)
		b, _ := want.Tensor(name)
		if a == nil || b == nil || a.Count != b.Count || a.NaNs != b.NaNs || a.Infs != b.Infs || a.Min != b.Min || a.Max != b.Max ||
			a.Mean != b.Mean || a.Std != b.Std || a.Hist == nil || b.Hist == nil || !slices.Equal(a.Hist.Counts, b.Hist.Counts) {
			t.Fatalf("statistics of %s differ: %+v, want %+v", name, a, b)
		}
	}
}

// TestCaptureMaxBatchBytesBound: with MaxBatchBytes set, every run of more than
// one sample holds at most that many bytes (fetched values and the
// float64 copy of the largest), and each full run takes as many samples
// as fit; a budget below one sample runs one sample at a time.
func TestCaptureMaxBatchBytesBound(t *testing.T) {
	m, ds := zooMLP(t)
	var probe []run
	opt := mlpRequest(measuring(&probe))
	opt.Batch, opt.MaxBatchBytes = 1, -1
	if _, err := evalharness.Capture(context.Background(), m, ds, opt); err != nil {
		t.Fatal(err)
	}
	perSample := probe[0].held
	for _, budget := range []int64{perSample / 2, perSample*7/2 + 1, perSample * 40} {
		var runs []run
		opt := mlpRequest(measuring(&runs))
		opt.MaxBatchBytes = budget
		if _, err := evalharness.Capture(context.Background(), m, ds, opt); err != nil {
			t.Fatal(err)
		}
		fit := max(1, budget/perSample)
		for i, r := range runs {
			if r.samples > 1 && r.held > budget {
				t.Fatalf("budget %d: run %d of %d samples holds %d bytes", budget, i, r.samples, r.held)
			}
		}
		// runs[0] measures one sample; the others are full batches but
		// the last of each pass
		var seen int64
		for i, r := range runs[1:] {
			seen += r.samples
			if last := seen%ds.N == 0; !last && r.samples != fit {
				t.Fatalf("budget %d (%d bytes per sample): run %d of %d samples, want %d", budget, perSample, i+1, r.samples, fit)
			}
		}
		if seen != 2*ds.N {
			t.Fatalf("budget %d: runs fed %d samples, want %d (two passes)", budget, seen, 2*ds.N)
		}
	}
}
