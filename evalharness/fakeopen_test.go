package evalharness_test

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/evalharness/evaltest"
	"github.com/onnxpost/onnxpost/onnxio"
)

// zooMLP loads the zoo's MLP (Flatten, Gemm, Relu) and its validation set.
func zooMLP(t *testing.T) (*onnxio.Model, *evalharness.Dataset) {
	t.Helper()
	m, err := onnxio.Load(filepath.Join("..", "models", "zoo", "mlp", "base.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	ds, err := evalharness.LoadDataset(filepath.Join("..", "models", "data", "digits_clean_val.npz"))
	if err != nil {
		t.Fatal(err)
	}
	return m, ds
}

// hidden computes relu(flatten(x)·fc1ᵀ + b1), rounded to float32 as a
// session returns it, for every sample.
func hidden(t *testing.T, m *onnxio.Model, ds *evalharness.Dataset) ([]float64, int) {
	t.Helper()
	get := func(name string) []float64 {
		tt, err := m.Initializer(name)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := tt.Float64()
		return v
	}
	w, b := get("fc1.weight"), get("fc1.bias")
	x, err := ds.Inputs["image"].Float64()
	if err != nil {
		t.Fatal(err)
	}
	out, in := len(b), len(w)/len(b)
	n := int(ds.N)
	h := make([]float64, n*out)
	for s := 0; s < n; s++ {
		for j := 0; j < out; j++ {
			acc := b[j]
			for k := 0; k < in; k++ {
				acc += x[s*in+k] * w[j*in+k]
			}
			h[s*out+j] = float64(float32(math.Max(acc, 0)))
		}
	}
	return h, out
}

// TestCaptureWithFakeRunner: Capture opens its one session through
// SessionOptions.Open, closes it, and accumulates XᵀX and the range of the
// fetched activation exactly as computed here from the definition; no
// ONNX Runtime is needed.
func TestCaptureWithFakeRunner(t *testing.T) {
	m, ds := zooMLP(t)
	var rec evaltest.Recorder
	nodes := m.Nodes()
	act := ""
	for _, n := range nodes {
		if n.OpType == "Gemm" && n.Inputs[1] == "fc2.weight" {
			act = n.Inputs[0]
		}
	}
	st, err := evalharness.Capture(context.Background(), m, ds, evalharness.CaptureOptions{
		Grams: []string{"fc2.weight"}, Tensors: []string{act}, Batch: 50,
		Session: evalharness.SessionOptions{Open: rec.Open},
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rec.Requests()); n != 1 {
		t.Fatalf("%d sessions opened, want 1", n)
	}
	if rec.OpenSessions() != 0 {
		t.Fatal("the session was not closed")
	}
	// a run of one sample measures; then the data fits the default
	// MaxBatchBytes 50 samples at a time
	if want := int(1 + (ds.N+49)/50); rec.Runs() != want {
		t.Errorf("%d runs, want %d", rec.Runs(), want)
	}
	h, d := hidden(t, m, ds)
	g, dim, count, err := st.InputGram("fc2.weight")
	if err != nil {
		t.Fatal(err)
	}
	if dim != d || count != ds.N {
		t.Fatalf("dim %d count %d, want %d %d", dim, count, d, ds.N)
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range h {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	for i := 0; i < d; i++ {
		for j := 0; j < d; j++ {
			want := 0.0
			for s := 0; s < int(ds.N); s++ {
				want += h[s*d+i] * h[s*d+j]
			}
			if got := g[i*d+j]; math.Abs(got-want) > 1e-9*math.Max(1, math.Abs(want)) {
				t.Fatalf("XᵀX[%d,%d] = %g, want %g", i, j, got, want)
			}
		}
	}
	ts, ok := st.Tensor(act)
	if !ok || ts.Min != lo || ts.Max != hi || ts.Count != ds.N*int64(d) {
		t.Fatalf("%s: %+v, want min %g max %g count %d", act, ts, lo, hi, ds.N*int64(d))
	}
}

// TestEvaluateModelsWithFakeRunner: EvaluateModels opens both sessions
// through the hook; the candidate evaluated against itself agrees fully.
func TestEvaluateModelsWithFakeRunner(t *testing.T) {
	m, ds := zooMLP(t)
	var rec evaltest.Recorder
	r, err := evalharness.EvaluateModels(context.Background(), m, m, ds, evalharness.SessionOptions{Open: rec.Open},
		evalharness.EvalOptions{Metrics: []string{evalharness.MetricAgreement, evalharness.MetricAccuracy}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Requests()) != 2 || rec.OpenSessions() != 0 {
		t.Fatalf("%d sessions opened, %d left open", len(rec.Requests()), rec.OpenSessions())
	}
	if a := r.Metrics[evalharness.MetricAgreement]; a != 1 {
		t.Errorf("agreement with itself %v, want 1", a)
	}
	if acc := r.Metrics[evalharness.MetricAccuracy]; acc < 0.8 {
		t.Errorf("accuracy %v of the zoo MLP through the interpreter; the interpreter is wrong", acc)
	}
}
