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
	m, calib := zooMLP(t)
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
		rep.Uniform.Loss, rep.Heuristic.Loss, rep.Searched.Loss, rep.Evaluations, rep.CandidatesPS)
	if rep.Fitness != FitnessKL {
		t.Errorf("fitness %q for a classifier, want kl", rep.Fitness)
	}
	if rep.Searched.Cost != rep.Uniform.Cost || rep.Heuristic.Cost != rep.Uniform.Cost {
		t.Fatalf("budgets differ: %d %d %d", rep.Searched.Cost, rep.Uniform.Cost, rep.Heuristic.Cost)
	}
	// the output really has the reported zeros
	zeros, want := reportedZeros(t, out, rep)
	if zeros < want || rep.TotalWeights-rep.Searched.Cost != want {
		t.Errorf("output has %d zeros, report says %d (cost %d of %d)", zeros, want, rep.Searched.Cost, rep.TotalWeights)
	}
	if rep.Searched.Loss > rep.Uniform.Loss {
		t.Errorf("searched KL %.5f worse than uniform %.5f", rep.Searched.Loss, rep.Uniform.Loss)
	}
	out2, rep2 := run(1)
	b1, _ := out.Bytes()
	b2, _ := out2.Bytes()
	if string(b1) != string(b2) || rep2.Searched.Loss != rep.Searched.Loss {
		t.Error("same seed gave a different model")
	}
}
