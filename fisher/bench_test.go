package fisher_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/fisher"
	"github.com/onnxpost/onnxpost/internal/pyoracle"
)

// BenchmarkFisher measures the Fisher of the zoo CNN and transformer over
// the 359 examples of digits_clean_val with one thread, in examples per
// second:
//
//   - onnxpost: fisher.ComputeResult end to end (probe, gradient graph,
//     session creation, runs; ModeRows, 16 examples per run);
//
//   - onnxpost-loop: the same in ModeLoop (the fallback for large graphs
//     without per-example rows: one run per example and class);
//
//   - onnxpost-runs: ModeRows' runs alone, graph and session built once;
//
//   - pytorch: tools/fisher_oracle.py bench in the same run — PyTorch
//     autograd looping over examples and classes (loop) and functorch's
//     vmap(jacrev) (vmap), float32, one thread.
//
//     ONNXPOST_ORT_LIB=$PWD/.cache/onnxruntime/libonnxruntime.so.1 go test -run '^$' -bench Fisher -benchtime 1x ./fisher/
func BenchmarkFisher(b *testing.B) {
	requireORT(b)
	so := evalharness.SessionOptions{Threads: 1}
	for _, fam := range []string{"cnn", "transformer"} {
		m, ds := load(b, fam)
		n := float64(ds.N)
		b.Run(fam+"/onnxpost", func(b *testing.B) {
			t0 := time.Now()
			for i := 0; i < b.N; i++ {
				if _, err := fisher.ComputeResult(context.Background(), m, ds, fisher.Options{Session: so}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(n*float64(b.N)/time.Since(t0).Seconds(), "examples/s")
		})
		b.Run(fam+"/onnxpost-loop", func(b *testing.B) {
			t0 := time.Now()
			for i := 0; i < b.N; i++ {
				if _, err := fisher.ComputeResult(context.Background(), m, ds, fisher.Options{Session: so, Mode: fisher.ModeLoop}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(n*float64(b.N)/time.Since(t0).Seconds(), "examples/s")
		})
		b.Run(fam+"/onnxpost-runs", func(b *testing.B) {
			g, err := fisher.Build(m, ds, fisher.Options{})
			if err != nil {
				b.Fatal(err)
			}
			gb, err := g.Model.Bytes()
			if err != nil {
				b.Fatal(err)
			}
			s, err := evalharness.NewSession(gb, so)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.ResetTimer()
			t0 := time.Now()
			for i := 0; i < b.N; i++ {
				for j := int64(0); j < ds.N; j += 16 {
					if _, err := s.Run(ds.Batch(j, min(j+16, ds.N))); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(n*float64(b.N)/time.Since(t0).Seconds(), "examples/s")
		})
		b.Run(fam+"/pytorch", func(b *testing.B) {
			py := torchPython(b)
			dir := b.TempDir()
			wp := filepath.Join(dir, "w.npz")
			writeWeights(b, m, wp)
			cmd := exec.Command(py, filepath.Join(pyoracle.RepoRoot(), "tools", "fisher_oracle.py"), "bench",
				"--family", fam, "--weights", wp, "--data", zoo("data", "digits_clean_val.npz"), "--dtype", "float32")
			var out, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &stderr
			if err := cmd.Run(); err != nil {
				b.Fatalf("%v\n%s", err, stderr.String())
			}
			var r map[string]any
			if err := json.Unmarshal(out.Bytes(), &r); err != nil {
				b.Fatal(err)
			}
			for _, k := range []string{"loop", "vmap"} {
				if v, ok := r[k+"_examples_per_s"].(float64); ok {
					b.ReportMetric(v, k+"-examples/s")
				} else {
					b.Logf("%s: %v", k, r[k+"_error"])
				}
			}
		})
	}
}
