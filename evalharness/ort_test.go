package evalharness

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

// requireORT skips the test when the ONNX Runtime library cannot be loaded.
func requireORT(t testing.TB) {
	t.Helper()
	if !cgoBuild {
		t.Skip("ONNX Runtime not available: built without cgo")
	}
	if err := Init(""); err != nil {
		if errors.Is(err, ErrNoLibrary) {
			t.Skipf("ONNX Runtime not available: %v", err)
		}
		t.Fatalf("ONNX Runtime failed to initialize: %v", err)
	}
}

func testdata(name string) string { return filepath.Join("testdata", name) }

func openSession(t testing.TB, name string, opt SessionOptions) *Session {
	t.Helper()
	requireORT(t)
	s, err := NewSessionFromFile(testdata(name), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func loadData(t testing.TB, name string) *Dataset {
	t.Helper()
	ds, err := LoadDataset(testdata(name))
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func TestSessionSmoke(t *testing.T) {
	s := openSession(t, "mlp.onnx", SessionOptions{Threads: 1})
	t.Logf("ORT %s from %s; inputs %+v outputs %+v", Version(), LibraryPath(), s.Inputs(), s.Outputs())
	ds := loadData(t, "mlp_data.npz")
	res, err := Evaluate(context.Background(), s, nil, ds, EvalOptions{Metrics: []string{"accuracy", "top5", "latency", "throughput"}, Batch: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
}
