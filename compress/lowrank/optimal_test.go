package lowrank

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/internal/linalg"
	"github.com/onnxpost/onnxpost/internal/pyoracle"
	"github.com/onnxpost/onnxpost/onnxio"
)

// initializerF64 reads a float initializer of m.
func initializerF64(t *testing.T, m *onnxio.Model, name string) ([]float64, []int64) {
	t.Helper()
	ts, err := m.Initializer(name)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ts.Float64()
	if err != nil {
		t.Fatal(err)
	}
	return v, ts.Shape
}

// composite returns the weight that the two factor tensors of a rewritten
// layer compute together, in the original weight's layout: the product of
// the two matrices for MatMul/Gemm, the 1×…×1 conv after the k… conv
// (channel), the 1×kw conv after the kh×1 conv (spatial).
func composite(t *testing.T, l LayerReport, t1 []float64, s1 []int64, t2 []float64, s2 []int64) []float64 {
	t.Helper()
	r := l.Rank
	switch {
	case l.Op == "MatMul" || (l.Op == "Gemm" && s1[0] != int64(r)):
		// t1 [K, r] · t2 [r, N] = B [K, N].
		return matmul(t1, t2, int(s1[0]), r, int(s2[1]))
	case l.Op == "Gemm":
		// transB: t2 [N, r] · t1 [r, K] = B [N, K].
		return matmul(t2, t1, int(s2[0]), r, int(s1[1]))
	case l.Scheme == "channel":
		// second [O, r] · first [r, C·∏k].
		inner := len(t1) / r
		return matmul(t2, t1, int(s2[0]), r, inner)
	case l.Scheme == "spatial":
		// vert [r, C, kh, 1], horiz [O, r, 1, kw]:
		// W[o, c, h, w] = Σ_j horiz[o, j, w]·vert[j, c, h].
		o, c, kh, kw := int(s2[0]), int(s1[1]), int(s1[2]), int(s2[3])
		out := make([]float64, o*c*kh*kw)
		for oi := 0; oi < o; oi++ {
			for ci := 0; ci < c; ci++ {
				for h := 0; h < kh; h++ {
					for w := 0; w < kw; w++ {
						var s float64
						for j := 0; j < r; j++ {
							s += t2[(oi*r+j)*kw+w] * t1[(j*c+ci)*kh+h]
						}
						out[((oi*c+ci)*kh+h)*kw+w] = s
					}
				}
			}
		}
		return out
	}
	t.Fatalf("%s: no composite for op %s scheme %s", l.Node, l.Op, l.Scheme)
	return nil
}

// TestZooRank8IsOptimal: `lowrank --rank 8` with the default --svd (Auto)
// gives every layer of every zoo model its best rank-8 approximation: the
// squared error of the written factors (in float32, read back from the
// model) equals the Eckart–Young optimum Σ_{i≥8} σᵢ², computed with gonum's
// pure-Go SVD, within 1e-5 relative (plus float32 rounding). Dense layers
// through the svd scheme, convolutions through both conv schemes. With
// Method Randomized the kept energy must be within 1e-4 of the optimum.
func TestZooRank8IsOptimal(t *testing.T) {
	root := pyoracle.RepoRoot()
	paths, err := filepath.Glob(filepath.Join(root, "models", "zoo", "*", "*.onnx"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no zoo models under %s: %v", filepath.Join(root, "models", "zoo"), err)
	}
	all := regexp.MustCompile(`.`)
	layers := 0
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(filepath.Dir(path))+"/"+filepath.Base(path), ".onnx")
		for _, scheme := range []Scheme{SchemeSVD, SchemeChannel, SchemeSpatial} {
			for _, meth := range []Method{Auto, Randomized} {
				t.Run(fmt.Sprintf("%s/%v/%v", name, scheme, meth), func(t *testing.T) {
					orig, err := onnxio.Load(path)
					if err != nil {
						t.Fatal(err)
					}
					if cands, _ := Candidates(orig, Options{Scheme: scheme, Rule: Rule{ByRank, 8}, Include: all}); len(cands) == 0 {
						t.Skipf("no %v layers", scheme)
					}
					m, err := onnxio.Load(path)
					if err != nil {
						t.Fatal(err)
					}
					rep, err := Apply(context.Background(), m, Options{Scheme: scheme, Rule: Rule{ByRank, 8}, Include: all, Force: true, Method: meth, Randomized: RandomizedOptions{Seed: 1}})
					if err != nil {
						t.Fatal(err)
					}
					for _, l := range rep.Layers {
						if !l.Factorized {
							if min(l.M, l.N) > 8 {
								t.Errorf("%s: not factorized: %s", l.Node, l.Reason)
							}
							continue
						}
						layers++
						w, shape := initializerF64(t, orig, l.Weight)
						t1, s1 := initializerF64(t, m, l.Weight+"_lowrank_a")
						t2, s2 := initializerF64(t, m, l.Weight+"_lowrank_b")
						got := sqDiff(w, composite(t, l, t1, s1, t2, s2))
						// The optimum from the pure-Go SVD of the layer's
						// matrix (any orientation: the norm is the same).
						mat, rows, cols := w, int(shape[0]), len(w)/int(shape[0])
						if l.Scheme == "spatial" {
							mat = SpatialMatrix(w, int(shape[0]), int(shape[1]), int(shape[2]), int(shape[3]))
							rows, cols = int(shape[1]*shape[2]), int(shape[0]*shape[3])
						}
						ex, err := exactSVD(linalg.Pure(), mat, rows, cols)
						if err != nil {
							t.Fatal(err)
						}
						opt, kept := ex.Tail(l.Rank), ex.Kept(l.Rank)
						if l.Rank != min(8, ex.K()) {
							t.Fatalf("%s: rank %d, want %d", l.Node, l.Rank, min(8, ex.K()))
						}
						f32 := 1e-6*math.Sqrt(opt*ex.Total) + 1e-12*ex.Total // float32 storage of the factors
						switch meth {
						case Auto:
							if got > opt*(1+1e-5)+f32 {
								t.Errorf("%s (%d×%d): error %.10g, Eckart–Young optimum %.10g (rel excess %.3g)", l.Node, l.M, l.N, got, opt, got/opt-1)
							}
						case Randomized:
							if keptGot := ex.Total - got; keptGot < kept*(1-1e-4)-f32 {
								t.Errorf("%s (%d×%d): kept energy %.10g, optimum %.10g (rel %.3g)", l.Node, l.M, l.N, keptGot, kept, 1-keptGot/kept)
							}
						}
					}
				})
			}
		}
	}
	if layers == 0 {
		t.Fatal("no layer was checked")
	}
}

// TestRandomizedAdaptive: the adaptive randomized SVD keeps, at the default
// tolerance, the optimal energy within 1e-4 relative on spectra from steep
// to flat: it stops after few iterations where σ_r stands above σ_l, and
// computes the exact SVD where the spectrum is too flat to converge within
// MaxPowerIters (σᵢ₊₁/σᵢ = 0.999).
// With Tol < 0 it runs exactly PowerIters iterations (the old behaviour).
func TestRandomizedAdaptive(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	cases := []struct {
		name     string
		m, n, r  int
		w        []float64
		opt      RandomizedOptions
		how      string
		maxIters int // upper bound on the power iterations run (randomized)
		minIters int
	}{
		{"steep", 300, 200, 10, withSpectrum(rng, 300, 200, decaying(200, 0.7)), RandomizedOptions{Seed: 1}, "randomized", 4, 2},
		{"slow", 300, 300, 16, withSpectrum(rng, 300, 300, decaying(300, 0.97)), RandomizedOptions{Seed: 2}, "randomized", DefaultMaxPowerIters, 3},
		{"gaussian", 256, 256, 8, randVec(rng, 256*256), RandomizedOptions{Seed: 3}, "", DefaultMaxPowerIters, 2},
		{"flat", 256, 256, 8, withSpectrum(rng, 256, 256, decaying(256, 0.999)), RandomizedOptions{Seed: 3}, "exact", 0, 0},
		{"fixed", 300, 300, 16, withSpectrum(rng, 300, 300, decaying(300, 0.97)), RandomizedOptions{Seed: 4, PowerIters: 1, Tol: -1}, "randomized", 1, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ex, err := exactSVD(linalg.Pure(), c.w, c.m, c.n)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := RandomizedSVD(c.w, c.m, c.n, c.r, c.opt)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s, %d iterations", rs.how, rs.iters)
			if c.how != "" && rs.how != c.how {
				t.Fatalf("ran %s, want %s", rs.how, c.how)
			}
			if rs.how == "randomized" && (rs.iters < c.minIters || rs.iters > c.maxIters) {
				t.Errorf("%d power iterations, want %d..%d", rs.iters, c.minIters, c.maxIters)
			}
			a, b := rs.Factors(c.r)
			kept := ex.Total - sqDiff(c.w, matmul(a, b, c.m, c.r, c.n))
			rel := 1 - kept/ex.Kept(c.r)
			t.Logf("%s after %d iterations: kept energy %.3g relative below the optimum", rs.how, rs.iters, rel)
			if c.opt.Tol >= 0 && rel > 1e-4 {
				t.Errorf("kept energy %.12g, optimum %.12g: %.3g relative below", kept, ex.Kept(c.r), rel)
			}
		})
	}
}

// TestAutoChoice pins the cost model's decisions: the exact SVD for small
// layers (the 128×128 rank-8 case of issue #18 among them), for an unknown
// rank and for a rank near min(m, n); the randomized one for a small rank
// of a large matrix, with an iteration cap that fits half the exact time.
func TestAutoChoice(t *testing.T) {
	opt := RandomizedOptions{}
	cases := []struct {
		m, n, r int
		want    bool
	}{
		{128, 128, 8, false},
		{96, 384, 8, false},
		{4096, 4096, 0, false},
		{4096, 4096, 4000, false},
		{4096, 4096, 8, true},
		{4096, 11008, 64, true},
	}
	for _, c := range cases {
		got, q := AutoChoice(c.m, c.n, c.r, opt)
		if got != c.want {
			t.Errorf("%d×%d rank %d: randomized %v, want %v", c.m, c.n, c.r, got, c.want)
		}
		if got {
			rt := rates()
			l := c.r + 10
			if q < 2 || randomizedSeconds(rt, c.m, c.n, c.r, l, q) > exactSeconds(rt, c.m, c.n)/2 {
				t.Errorf("%d×%d rank %d: cap %d iterations does not fit half the exact time", c.m, c.n, c.r, q)
			}
		}
	}
}

// TestExactSVDBackendsAgree compares ExactSVD through OpenBLAS with gonum's
// pure-Go one: singular values within 1e-10 relative, both reconstructing
// the input.
func TestExactSVDBackendsAgree(t *testing.T) {
	ob, err := linalg.OpenBLAS()
	if err != nil {
		t.Skipf("no OpenBLAS: %v", err)
	}
	rng := rand.New(rand.NewPCG(13, 14))
	for _, sh := range [][2]int{{64, 64}, {300, 120}, {96, 384}} {
		m, n := sh[0], sh[1]
		w := withSpectrum(rng, m, n, decaying(min(m, n), 0.95))
		sp, err := exactSVD(linalg.Pure(), w, m, n)
		if err != nil {
			t.Fatal(err)
		}
		so, err := exactSVD(ob, w, m, n)
		if err != nil {
			t.Fatal(err)
		}
		for i := range sp.S {
			if math.Abs(so.S[i]-sp.S[i]) > 1e-10*sp.S[i] {
				t.Errorf("%d×%d σ%d: openblas %.17g, go %.17g", m, n, i, so.S[i], sp.S[i])
			}
		}
		k := sp.K()
		for _, s := range []*SVD{sp, so} {
			a, b := s.Factors(k)
			if d := sqDiff(w, matmul(a, b, m, k, n)); d > 1e-24*s.Total*float64(m*n) {
				t.Errorf("%d×%d: reconstruction error %g", m, n, d)
			}
		}
	}
}
