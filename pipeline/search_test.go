package pipeline

import (
	"context"
	"math/rand"
	"path/filepath"
	"testing"

	"github.com/onnxpost/onnxpost/compress/search"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/internal/pyoracle"
	"github.com/onnxpost/onnxpost/onnxio"
)

func needORT(t *testing.T) {
	t.Helper()
	if err := evalharness.Init(""); err != nil {
		t.Skipf("ONNX Runtime not available (run `make ort`): %v", err)
	}
}

func zoo(parts ...string) string {
	return filepath.Join(append([]string{pyoracle.RepoRoot(), "models"}, parts...)...)
}

func TestSparsitySearchOnZoo(t *testing.T) {
	needORT(t)
	m, err := onnxio.Load(zoo("zoo", "mlp", "base.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	calib, err := evalharness.LoadDataset(zoo("data", "digits_clean_val.npz"))
	if err != nil {
		t.Fatal(err)
	}
	run := func(seed int64) (*onnxio.Model, *SearchReport) {
		out, rep, err := RunSparsitySearch(context.Background(), m, calib, SparsitySearch{
			Target: 0.8, Levels: 4, CacheDir: t.TempDir(),
			Search: search.Options{Generations: 15, Offspring: 8, Survivors: []int{2, 1}, Samples: []int{32, 128}, Rand: rand.New(rand.NewSource(seed))},
		})
		if err != nil {
			t.Fatal(err)
		}
		return out, rep
	}
	out, rep := run(1)
	t.Logf("uniform KL %.5f, per-layer-error KL %.5f, searched KL %.5f, %d evals, %.0f cand/s",
		rep.Uniform.KL, rep.Heuristic.KL, rep.Searched.KL, rep.Evaluations, rep.CandidatesPS)
	if rep.Searched.Zeros != rep.Uniform.Zeros || rep.Heuristic.Zeros != rep.Uniform.Zeros {
		t.Fatalf("budgets differ: %d %d %d", rep.Searched.Zeros, rep.Uniform.Zeros, rep.Heuristic.Zeros)
	}
	// the output really has the reported zeros
	var zeros int64
	for _, lc := range rep.Searched.Layers {
		tt, err := out.Initializer(lc.Name)
		if err != nil {
			t.Fatal(err)
		}
		zeros += int64(tt.ZeroFraction()*float64(tt.NumElements()) + 0.5)
	}
	if zeros < rep.Searched.Zeros {
		t.Errorf("output has %d zeros, report says %d", zeros, rep.Searched.Zeros)
	}
	if rep.Searched.KL > rep.Uniform.KL {
		t.Errorf("searched KL %.5f worse than uniform %.5f", rep.Searched.KL, rep.Uniform.KL)
	}
	out2, rep2 := run(1)
	b1, _ := out.Bytes()
	b2, _ := out2.Bytes()
	if string(b1) != string(b2) || rep2.Searched.KL != rep.Searched.KL {
		t.Error("same seed gave a different model")
	}
}
