package evalharness

import (
	"context"
	"math/rand"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/internal/pyoracle"
	"github.com/onnxpost/onnxpost/onnxio"
)

// perturbed returns float32 copies of the named initializers with seeded
// noise added.
func perturbed(t testing.TB, m *onnxio.Model, names []string, rng *rand.Rand, scale float32) map[string][]float32 {
	out := map[string][]float32{}
	for _, n := range names {
		tensor, err := m.Initializer(n)
		if err != nil {
			t.Fatal(err)
		}
		v, err := tensor.Float32()
		if err != nil {
			t.Fatal(err)
		}
		for i := range v {
			v[i] += scale * float32(rng.NormFloat64())
		}
		out[n] = v
	}
	return out
}

// withWeights returns a copy of m with the given initializer values.
func withWeights(t testing.TB, m *onnxio.Model, vals map[string][]float32) *onnxio.Model {
	c := m.Clone()
	for n, v := range vals {
		_, shape, err := c.InitializerInfo(n)
		if err != nil {
			t.Fatal(err)
		}
		tensor, err := onnxio.FromFloat32(n, onnxio.Float, shape, v)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SetInitializer(tensor); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func TestWeightSessionMatchesRebuiltModel(t *testing.T) {
	requireORT(t)
	m, err := onnxio.Load(testdata("mlp.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	ds := loadData(t, "mlp_data.npz")
	names := []string{"w1", "b1", "w2"}
	ws, err := NewWeightSession(m, names, SessionOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if got := len(ws.Weights()); got != 3 {
		t.Fatalf("%d weight inputs, want 3", got)
	}
	rng := rand.New(rand.NewSource(5))
	for k := 0; k < 3; k++ {
		vals := perturbed(t, m, names, rng, 0.1)
		if k == 0 {
			vals = map[string][]float32{} // the defaults: the original model
		}
		cand, err := ws.CandidateFloat32(vals)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Predict(cand, ds, 16)
		if err != nil {
			t.Fatal(err)
		}
		rebuilt, err := SessionFromModel(withWeights(t, m, vals), SessionOptions{Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		want, err := Predict(rebuilt, ds, 16)
		rebuilt.Close()
		if err != nil {
			t.Fatal(err)
		}
		g, _ := got[0].Float64()
		w, _ := want[0].Float64()
		for i := range g {
			if !near(g[i], w[i], 1e-5) {
				t.Fatalf("candidate %d: output %d = %v, rebuilt model %v", k, i, g[i], w[i])
			}
		}
	}
	// Bad candidates.
	for _, c := range []struct {
		vals map[string]*Array
		want string
	}{
		{map[string]*Array{"b2": FromFloat32([]int64{10}, make([]float32, 10))}, "not one of the session's weight inputs"},
		{map[string]*Array{"w1": FromFloat32([]int64{16, 31}, make([]float32, 16*31))}, "want float32[16 32]"},
		{map[string]*Array{"w1": FromFloat64([]int64{16, 32}, make([]float64, 16*32))}, "got float64"},
	} {
		if _, err := ws.Candidate(c.vals); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want %q", err, c.want)
		}
	}
}

// BenchmarkCandidates compares two ways of evaluating weight candidates
// (accuracy over 64 samples each): feeding the weights as inputs of one
// session, and re-serializing the model and creating a session per
// candidate. The metric candidates/s is the figure to compare.
func BenchmarkCandidates(b *testing.B) {
	requireORT(b)
	root := pyoracle.RepoRoot()
	for _, fam := range []string{"mlp", "cnn", "transformer"} {
		path := filepath.Join(root, "models", "zoo", fam, "base.onnx")
		m, err := onnxio.Load(path)
		if err != nil {
			b.Logf("skipping %s: %v", fam, err)
			continue
		}
		ds, err := LoadDataset(filepath.Join(root, "models", "data", "digits_clean_val.npz"))
		if err != nil {
			b.Skip(err)
		}
		ds = ds.Head(64)
		ws, _ := m.Weights()
		var names []string
		for _, w := range ws {
			if w.DType == onnxio.Float && !w.Constant {
				names = append(names, w.Name)
			}
		}
		rng := rand.New(rand.NewSource(1))
		cands := make([]map[string][]float32, 4)
		for i := range cands {
			cands[i] = perturbed(b, m, names, rng, 0.01)
		}
		opt := EvalOptions{Metrics: []string{MetricAccuracy}, Batch: 64}
		so := SessionOptions{Threads: 1}
		b.Run(fam+"/weights-as-inputs", func(b *testing.B) {
			wsess, err := NewWeightSession(m, names, so)
			if err != nil {
				b.Fatal(err)
			}
			defer wsess.Close()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				cand, err := wsess.CandidateFloat32(cands[i%len(cands)])
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Evaluate(context.Background(), cand, nil, ds, opt); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "candidates/s")
		})
		b.Run(fam+"/session-per-candidate", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				s, err := SessionFromModel(withWeights(b, m, cands[i%len(cands)]), so)
				if err != nil {
					b.Fatal(err)
				}
				_, err = Evaluate(context.Background(), s, nil, ds, opt)
				s.Close()
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "candidates/s")
		})
	}
}
