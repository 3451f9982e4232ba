package evalharness

import (
	"context"
	"errors"
	"os"
	"testing"
)

// TestCUDA checks the error of --ep cuda with a CPU-only ONNX
// Runtime (the default library). With ONNXPOST_TEST_CUDA=1 (a GPU build and
// a GPU), it checks instead that a CUDA session gives the CPU's outputs.
func TestCUDA(t *testing.T) {
	requireORT(t)
	if os.Getenv("ONNXPOST_TEST_CUDA") == "" {
		_, err := NewSessionFromFile(testdata("mlp.onnx"), SessionOptions{EP: "cuda"})
		if err == nil {
			t.Skip("this ONNX Runtime has a working CUDA EP; set ONNXPOST_TEST_CUDA=1 to test it")
		}
		if !errors.Is(err, ErrNoCUDA) {
			t.Errorf("error %v, want ErrNoCUDA", err)
		}
		t.Logf("%v", err)
		return
	}
	ds := loadData(t, "mlp_data.npz")
	gpu := openSession(t, "mlp.onnx", SessionOptions{EP: "cuda"})
	cpu := openSession(t, "mlp.onnx", SessionOptions{})
	res, err := Evaluate(context.Background(), gpu, cpu, ds, EvalOptions{Metrics: []string{MetricMaxAbs, MetricLatency}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Metrics[MetricMaxAbs] > 1e-4 {
		t.Errorf("CUDA outputs differ from the CPU's by %g", res.Metrics[MetricMaxAbs])
	}
	t.Logf("CUDA: %+v", res.Metrics)
}

func TestUnknownEP(t *testing.T) {
	requireORT(t)
	if _, err := NewSessionFromFile(testdata("mlp.onnx"), SessionOptions{EP: "tpu"}); err == nil {
		t.Error("unknown EP accepted")
	}
}
