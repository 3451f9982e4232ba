package evalharness

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

func randomLinear(rng *rand.Rand, in, out int, scale float64) *linearRunner {
	w := make([]float64, in*out)
	for i := range w {
		w[i] = rng.NormFloat64() * scale
	}
	return &linearRunner{in: in, out: out, w: w}
}

// TestEvaluateBatching checks Evaluate's metrics, for several batch sizes,
// against a direct computation over the whole dataset from the metric
// definitions.
func TestEvaluateBatching(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	const n, in, out = 23, 5, 7
	cand := randomLinear(rng, in, out, 1)
	ref := &linearRunner{in: in, out: out, w: append([]float64(nil), cand.w...)}
	for i := range ref.w {
		ref.w[i] += rng.NormFloat64() * 0.3
	}
	x := make([]float32, n*in)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	labels := make([]int64, n)
	for i := range labels {
		labels[i] = int64(rng.Intn(out))
	}
	ds, err := NewDataset(map[string]*Array{"x": FromFloat32([]int64{n, in}, x)}, labels)
	if err != nil {
		t.Fatal(err)
	}
	// Direct computation.
	all := map[string]*Array{"x": ds.Inputs["x"]}
	co, _ := cand.Run(all)
	ro, _ := ref.Run(all)
	cv, _ := co[0].Float64()
	rv, _ := ro[0].Float64()
	var correct, top5, agree, klSum, cosSum, sq, maxAbs float64
	for i := 0; i < n; i++ {
		c, r := cv[i*out:(i+1)*out], rv[i*out:(i+1)*out]
		// rank of the label among the candidate's scores
		greater := 0
		best, rbest := 0, 0
		for j := 0; j < out; j++ {
			if c[j] > c[labels[i]] {
				greater++
			}
			if c[j] > c[best] {
				best = j
			}
			if r[j] > r[rbest] {
				rbest = j
			}
		}
		if greater == 0 {
			correct++
		}
		if greater < 5 {
			top5++
		}
		if best == rbest {
			agree++
		}
		// softmax by definition
		var zc, zr float64
		for j := 0; j < out; j++ {
			zc += math.Exp(c[j])
			zr += math.Exp(r[j])
		}
		var dot, nc, nr float64
		for j := 0; j < out; j++ {
			p, q := math.Exp(r[j])/zr, math.Exp(c[j])/zc
			klSum += p * math.Log(p/q)
			dot += c[j] * r[j]
			nc += c[j] * c[j]
			nr += r[j] * r[j]
			sq += (c[j] - r[j]) * (c[j] - r[j])
			maxAbs = math.Max(maxAbs, math.Abs(c[j]-r[j]))
		}
		cosSum += dot / math.Sqrt(nc*nr)
	}
	want := map[string]float64{
		"accuracy": correct / n, "top5": top5 / n, "agreement": agree / n,
		"kl": klSum / n, "cosine": cosSum / n, "mse": sq / (n * out), "max_abs": maxAbs,
	}
	for _, b := range []int{1, 3, 7, 23, 100} {
		res, err := Evaluate(context.Background(), cand, ref, ds, EvalOptions{Metrics: []string{"accuracy", "top5", "agreement", "kl", "cosine", "mse", "max_abs"}, Batch: b})
		if err != nil {
			t.Fatal(err)
		}
		if res.Samples != n {
			t.Errorf("batch %d: samples %d", b, res.Samples)
		}
		for k, w := range want {
			if got, ok := res.Metrics[k]; !ok || !near(got, w, 1e-12) {
				t.Errorf("batch %d: %s = %v, want %v", b, k, got, w)
			}
		}
		if _, ok := res.Reference.Metrics["accuracy"]; !ok {
			t.Errorf("batch %d: reference accuracy missing", b)
		}
	}
}

func TestEvaluateTiming(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	r := randomLinear(rng, 3, 2, 1)
	ds, _ := NewDataset(map[string]*Array{"x": FromFloat32([]int64{10, 3}, make([]float32, 30))}, nil)
	res, err := Evaluate(context.Background(), r, nil, ds, EvalOptions{Metrics: []string{"latency", "throughput"}, Batch: 4, Warmup: 2, MinTimedRuns: 9})
	if err != nil {
		t.Fatal(err)
	}
	// 2 warm-up runs + 9 timed runs (3 batches of the pass, 6 more).
	if r.calls != 11 {
		t.Errorf("%d runs, want 11", r.calls)
	}
	for _, k := range []string{"latency_p50_ms", "latency_p90_ms", "throughput"} {
		if v, ok := res.Metrics[k]; !ok || !(v > 0) {
			t.Errorf("%s = %v", k, v)
		}
	}
	if res.Metrics["latency_p90_ms"] < res.Metrics["latency_p50_ms"] {
		t.Error("p90 < p50")
	}
}

func TestEvaluateMetricAvailability(t *testing.T) {
	r := randomLinear(rand.New(rand.NewSource(3)), 3, 2, 1)
	ds, _ := NewDataset(map[string]*Array{"x": FromFloat32([]int64{4, 3}, make([]float32, 12))}, nil)
	for _, c := range []struct{ metric, want string }{
		{"accuracy", "needs labels"}, {"top5", "needs labels"}, {"kl", "compares with a reference: pass a reference model"}, {"agreement", "compares with a reference: pass a reference model"}, {"f1", "unknown metric"},
	} {
		_, err := Evaluate(context.Background(), r, nil, ds, EvalOptions{Metrics: []string{c.metric}})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.metric, err, c.want)
		}
		if refMetrics[c.metric] != errors.Is(err, ErrNeedsReference) {
			t.Errorf("%s: errors.Is(%v, ErrNeedsReference) = %v", c.metric, err, !refMetrics[c.metric])
		}
	}
	// Nothing to compare: the result says so and shows output statistics
	// and latency instead of an empty table.
	res, err := Evaluate(context.Background(), r, nil, ds, EvalOptions{MinTimedRuns: 2, Warmup: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Note, "nothing to compare") || res.Stats["y"] == nil || res.Stats["y"].Mean == nil {
		t.Errorf("no labels, no reference: note %q, stats %+v", res.Note, res.Stats)
	}
	if _, ok := res.Metrics[MetricLatencyP50]; !ok || len(res.Metrics) != 2 {
		t.Errorf("no labels, no reference: metrics %v, want latency only", res.Metrics)
	}
}

// TestBadDatasets checks that each kind of bad dataset gives one clear
// error naming the problem.
func TestBadDatasets(t *testing.T) {
	model := []TensorInfo{{Name: "x", DType: onnxio.Float, Shape: []int64{-1, 4}}}
	f32 := func(shape ...int64) *Array {
		n, _ := numElements(shape, 1<<30)
		return FromFloat32(shape, make([]float32, n))
	}
	cases := []struct {
		name   string
		arrays map[string]*Array
		want   string
	}{
		{"missing input", map[string]*Array{"image": f32(3, 4), "labels": FromInt64([]int64{3}, []int64{0, 1, 2})}, `has no array for model input "x" (it holds: image, labels)`},
		{"wrong dtype", map[string]*Array{"x": FromFloat64([]int64{3, 4}, make([]float64, 12))}, `array "x" is float64 but model input "x" is float32`},
		{"wrong rank", map[string]*Array{"x": f32(3, 4, 1)}, `(rank 3) but model input "x" has rank 2`},
		{"wrong size", map[string]*Array{"x": f32(3, 5)}, `needs [?,4] (axis 1 differs)`},
		{"labels length", map[string]*Array{"x": f32(3, 4), "labels": FromInt64([]int64{2}, []int64{0, 1})}, `"labels" has 2 entries but the inputs have 3 samples`},
		{"float labels", map[string]*Array{"x": f32(3, 4), "labels": FromFloat32([]int64{3}, []float32{0, 1, 2})}, `must hold integer class ids`},
		{"negative label", map[string]*Array{"x": f32(3, 4), "labels": FromInt64([]int64{3}, []int64{0, -1, 2})}, `is negative`},
		{"3-D labels", map[string]*Array{"x": f32(3, 4), "labels": FromInt64([]int64{3, 2, 1}, make([]int64, 6))}, `must be a 1-D array`},
		{"empty file", map[string]*Array{}, "is empty: it holds no arrays"},
		{"zero samples", map[string]*Array{"x": f32(0, 4)}, "0 samples"},
		{"only labels", map[string]*Array{"labels": FromInt64([]int64{1}, []int64{0})}, "holds only"},
		{"scalar", map[string]*Array{"x": FromFloat32(nil, []float32{1})}, `has shape [] (rank 0) but model input "x" has rank 2`},
	}
	dir := t.TempDir()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, fmtInt(i)+".npz")
			if err := WriteNPZ(p, c.arrays); err != nil {
				t.Fatal(err)
			}
			ds, err := LoadDataset(p)
			if err == nil {
				err = ds.Check(model)
			}
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			if !errors.Is(err, ErrDataset) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
				t.Errorf("error %q, want ErrDataset naming the file and containing %q", err, c.want)
			}
			if strings.Count(err.Error(), "evalharness:") != 1 {
				t.Errorf("error %q is not one clear sentence", err)
			}
		})
	}
	for _, c := range []struct{ name, content, want string }{
		{"not npz", "hello", "not a .npz"},
		{"missing", "", "no such file"},
	} {
		p := filepath.Join(dir, c.name+".npz")
		if c.content != "" {
			os.WriteFile(p, []byte(c.content), 0o644)
		}
		if _, err := LoadDataset(p); err == nil || !errors.Is(err, ErrDataset) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}

// TestTestDataDir builds an ONNX test-data folder (two sets, unnamed
// tensors) and checks loading, concatenation and the use of its expected
// outputs as the reference.
func TestTestDataDir(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	r := randomLinear(rng, 3, 4, 1)
	dir := t.TempDir()
	var all []float32
	for s := 0; s < 2; s++ {
		sd := filepath.Join(dir, "test_data_set_"+fmtInt(s))
		os.MkdirAll(sd, 0o755)
		x := make([]float32, 2*3)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		all = append(all, x...)
		out, _ := r.Run(map[string]*Array{"x": FromFloat32([]int64{2, 3}, x)})
		yv, _ := out[0].Float64()
		for i := range yv {
			yv[i] += 0.01 // expected outputs slightly off
		}
		for name, tt := range map[string]func() (*onnxio.Tensor, error){
			"input_0.pb":  func() (*onnxio.Tensor, error) { return onnxio.FromFloat32("", onnxio.Float, []int64{2, 3}, x) },
			"output_0.pb": func() (*onnxio.Tensor, error) { return onnxio.FromFloat64("", onnxio.Float, []int64{2, 4}, yv) },
		} {
			tensor, err := tt()
			if err != nil {
				t.Fatal(err)
			}
			b, err := onnxio.MarshalTensor(tensor)
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(sd, name), b, 0o644)
		}
	}
	ds, err := LoadDataset(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ds.N != 4 {
		t.Fatalf("N = %d, want 4", ds.N)
	}
	res, err := Evaluate(context.Background(), r, nil, ds, EvalOptions{Metrics: []string{"max_abs"}, Batch: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Metrics["max_abs"]; !near(got, 0.01, 1e-6) {
		t.Errorf("max_abs against the expected outputs = %v, want 0.01", got)
	}
	xv, _ := ds.Inputs["x"].Float64()
	for i := range all {
		if float32(xv[i]) != all[i] {
			t.Fatalf("input %d = %v, want %v", i, xv[i], all[i])
		}
	}
	if _, err := LoadDataset(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no test_data_set_") {
		t.Errorf("empty folder: %v", err)
	}
}
