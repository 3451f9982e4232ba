package evalharness_test

import (
	"context"
	"fmt"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

// doubler is a stand-in Runner (y = 2x) so the example runs without ONNX
// Runtime; real code uses *evalharness.Session.
type doubler struct{ factor float32 }

func (d doubler) Inputs() []evalharness.TensorInfo {
	return []evalharness.TensorInfo{{Name: "x", DType: onnxio.Float, Shape: []int64{-1, 3}}}
}

func (d doubler) Outputs() []evalharness.TensorInfo {
	return []evalharness.TensorInfo{{Name: "y", DType: onnxio.Float, Shape: []int64{-1, 3}}}
}

func (d doubler) Run(in map[string]*evalharness.Array) ([]*evalharness.Array, error) {
	x, err := in["x"].Float64()
	if err != nil {
		return nil, err
	}
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = d.factor * float32(v)
	}
	return []*evalharness.Array{evalharness.FromFloat32(in["x"].Shape, y)}, nil
}

// Example evaluates a candidate against a reference and labels, then checks
// a gate, as `onnxpost eval --ref ... --gate ...` does.
func Example() {
	x := evalharness.FromFloat32([]int64{4, 3}, []float32{
		1, 0, 0,
		0, 2, 0,
		0, 0, 3,
		1, 2, 0,
	})
	ds, err := evalharness.NewDataset(map[string]*evalharness.Array{"x": x}, []int64{0, 1, 2, 0})
	if err != nil {
		panic(err)
	}
	res, err := evalharness.Evaluate(context.Background(), doubler{2}, doubler{1}, ds, evalharness.EvalOptions{
		Metrics: []string{"accuracy", "agreement", "cosine"},
		Batch:   2,
	})
	if err != nil {
		panic(err)
	}
	g, err := evalharness.ParseGate("accuracy_drop<=0.01,agreement>=0.99")
	if err != nil {
		panic(err)
	}
	fmt.Printf("accuracy %.2f (reference %.2f), agreement %.2f, cosine %.2f\n",
		res.Metrics["accuracy"], res.Reference.Metrics["accuracy"], res.Metrics["agreement"], res.Metrics["cosine"])
	fmt.Println("gate passed:", g.CheckResult(res).Passed)
	// Output:
	// accuracy 0.75 (reference 0.75), agreement 1.00, cosine 1.00
	// gate passed: true
}

// Example_onnxRuntime evaluates a model file with ONNX Runtime (found as
// FindLibrary describes) on a .npz dataset.
func Example_onnxRuntime() {
	ds, err := evalharness.LoadDataset("testdata/mlp_data.npz")
	if err != nil {
		panic(err)
	}
	s, err := evalharness.NewSessionFromFile("testdata/mlp.onnx", evalharness.SessionOptions{Threads: 1})
	if err != nil {
		fmt.Println(err) // e.g. the library is missing: run `make ort`
		return
	}
	defer s.Close()
	res, err := evalharness.Evaluate(context.Background(), s, nil, ds, evalharness.EvalOptions{Metrics: []string{"accuracy", "latency"}})
	if err != nil {
		panic(err)
	}
	fmt.Printf("accuracy %.2f on %d samples\n", res.Metrics["accuracy"], res.Samples)
}

// Example_capture accumulates calibration statistics: the input Gram of a
// MatMul weight and the range and histogram of an activation.
func Example_capture() {
	m, err := onnxio.Load("testdata/mlp.onnx")
	if err != nil {
		panic(err)
	}
	ds, err := evalharness.LoadDataset("testdata/mlp_data.npz")
	if err != nil {
		panic(err)
	}
	st, err := evalharness.Capture(context.Background(), m, ds, evalharness.CaptureOptions{
		Grams:   []string{"w1"}, // XᵀX of the MatMul consuming w1
		Tensors: []string{"h1"}, // min/max/histogram of an activation
		Bins:    64,
	})
	if err != nil {
		fmt.Println(err) // e.g. ONNX Runtime missing: run `make ort`
		return
	}
	xtx, d, n, _ := st.InputGram("w1")
	h1, _ := st.Tensor("h1")
	fmt.Println(len(xtx) == d*d, n, h1.Min <= h1.Max, h1.Hist.Quantile(0.999))
}

// Example_weightSession scores weight candidates with one session.
func Example_weightSession() {
	m, err := onnxio.Load("testdata/mlp.onnx")
	if err != nil {
		panic(err)
	}
	ds, err := evalharness.LoadDataset("testdata/mlp_data.npz")
	if err != nil {
		panic(err)
	}
	ws, err := evalharness.NewWeightSession(m, []string{"w1"}, evalharness.SessionOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ws.Close()
	w1, _ := m.Initializer("w1")
	v, _ := w1.Float32()
	for _, scale := range []float32{1, 0.5} {
		cand := make([]float32, len(v))
		for i := range v {
			cand[i] = scale * v[i]
		}
		r, err := ws.CandidateFloat32(map[string][]float32{"w1": cand})
		if err != nil {
			panic(err)
		}
		res, err := evalharness.Evaluate(context.Background(), r, nil, ds, evalharness.EvalOptions{Metrics: []string{"accuracy"}})
		if err != nil {
			panic(err)
		}
		fmt.Println(scale, res.Metrics["accuracy"])
	}
}
