package evalharness

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/onnxpost/onnxpost/internal/pyoracle"
)

// BenchmarkEvaluate measures evaluation throughput (accuracy over the
// digits test set, batch 64, one ONNX Runtime thread) of each zoo model;
// tools/bench_eval.py compares the same runs with ONNX Runtime's Python API.
func BenchmarkEvaluate(b *testing.B) {
	requireORT(b)
	root := pyoracle.RepoRoot()
	ds, err := LoadDataset(filepath.Join(root, "models", "data", "digits_union_test.npz"))
	if err != nil {
		b.Skip(err)
	}
	for _, fam := range []string{"mlp", "cnn", "transformer"} {
		path := filepath.Join(root, "models", "zoo", fam, "base.onnx")
		s, err := NewSessionFromFile(path, SessionOptions{Threads: 1})
		if err != nil {
			b.Logf("skipping %s: %v", fam, err)
			continue
		}
		b.Run(fam+"/batch64", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := Evaluate(context.Background(), s, nil, ds, EvalOptions{Metrics: []string{MetricAccuracy}, Batch: 64}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(ds.N)*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
		})
		s.Close()
	}
}
