package merge

import (
	"encoding/json"
	"math"
	"os"
	"testing"
)

// golden.json holds small merges computed by the numpy reference
// (testdata/make_golden.py), so the kernels are checked against an
// independent implementation even without Python.
type goldenDoc struct {
	Names  []string
	Base   map[string][]float32
	Models []map[string][]float32
	Fisher []map[string][]float32
	Cases  []struct {
		Name, Method    string
		Weights         []float64
		Densities       []float64
		Lambda          float64
		Scope           string
		Seed            int64
		T               float64
		Normalize       bool
		Floor           float64
		FisherNormalize bool `json:"fisher_normalize"`
		Want            map[string][]float64
	}
	Uniform struct {
		Seed   int64
		Tensor string
		Model  int
		Values []float64
	}
}

func TestGolden(t *testing.T) {
	b, err := os.ReadFile("testdata/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g goldenDoc
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	t.Run("uniform", func(t *testing.T) {
		key := StreamKey(g.Uniform.Seed, g.Uniform.Tensor, g.Uniform.Model)
		for j, want := range g.Uniform.Values {
			if got := Uniform(key, int64(j)); got != want {
				t.Fatalf("Uniform #%d = %v, numpy gives %v", j, got, want)
			}
		}
	})
	xs := func(n string) [][]float32 {
		var out [][]float32
		for _, m := range g.Models {
			out = append(out, m[n])
		}
		return out
	}
	for _, c := range g.Cases {
		t.Run(c.Name, func(t *testing.T) {
			// per-model global thresholds / Fisher norms over all tensors
			thr := make([]float64, len(g.Models))
			coeffs := append([]float64(nil), c.Weights...)
			if c.Method == "ties" && c.Scope == "global" {
				var total int64
				for _, n := range g.Names {
					total += int64(len(g.Base[n]))
				}
				for i := range g.Models {
					s := NewSelector(TrimCount(c.Densities[i], total))
					for !s.Done() {
						p := s.NewPass()
						for _, n := range g.Names {
							feedAbs(p, g.Base[n], g.Models[i][n])
						}
						if err := s.EndPass(p); err != nil {
							t.Fatal(err)
						}
					}
					thr[i] = s.Threshold()
				}
			}
			if c.FisherNormalize {
				for i := range coeffs {
					sq := 0.0
					for _, n := range g.Names {
						for _, f := range g.Fisher[i][n] {
							sq += float64(f) * float64(f)
						}
					}
					coeffs[i] /= math.Sqrt(sq)
				}
			}
			for _, n := range g.Names {
				dst := make([]float32, len(g.Base[n]))
				switch c.Method {
				case "linear":
					LinearTo(dst, xs(n), c.Weights, c.Normalize)
				case "task-arithmetic":
					TaskArithmeticTo(dst, g.Base[n], xs(n), c.Weights, c.Lambda)
				case "ties":
					th := thr
					if c.Scope == "tensor" {
						th = make([]float64, len(g.Models))
						for i, x := range xs(n) {
							v, err := tensorThreshold(g.Base[n], x, c.Densities[i])
							if err != nil {
								t.Fatal(err)
							}
							th[i] = v
						}
					}
					TIESTo(dst, g.Base[n], xs(n), c.Weights, th, c.Lambda)
				case "dare", "dare-ties":
					keys := make([]uint64, len(g.Models))
					for i := range keys {
						keys[i] = StreamKey(c.Seed, n, i)
					}
					DARETo(dst, g.Base[n], xs(n), DAREParams{Weights: c.Weights, Densities: c.Densities, Keys: keys, Lambda: c.Lambda, TIES: c.Method == "dare-ties"})
				case "slerp":
					SLERPTo(dst, g.Models[0][n], g.Models[1][n], c.T)
				case "fisher":
					var fs [][]float32
					for _, f := range g.Fisher {
						fs = append(fs, f[n])
					}
					FisherTo(dst, xs(n), fs, coeffs, c.Floor)
				default:
					t.Fatalf("unknown method %s", c.Method)
				}
				want := c.Want[n]
				scale := 0.0
				for _, w := range want {
					scale = math.Max(scale, math.Abs(w))
				}
				for j := range want {
					if math.Abs(float64(dst[j])-want[j]) > 1e-6*scale {
						t.Fatalf("%s[%d] = %v, numpy gives %v", n, j, dst[j], want[j])
					}
				}
			}
		})
	}
}
