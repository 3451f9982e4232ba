package lowrank

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// randOrthonormal returns an m×k matrix with orthonormal columns
// (modified Gram–Schmidt on Gaussian columns, done twice for accuracy).
func randOrthonormal(rng *rand.Rand, m, k int) []float64 {
	q := make([]float64, m*k)
	for i := range q {
		q[i] = rng.NormFloat64()
	}
	for pass := 0; pass < 2; pass++ {
		for j := 0; j < k; j++ {
			for p := 0; p < j; p++ {
				var dot float64
				for i := 0; i < m; i++ {
					dot += q[i*k+j] * q[i*k+p]
				}
				for i := 0; i < m; i++ {
					q[i*k+j] -= dot * q[i*k+p]
				}
			}
			var nrm float64
			for i := 0; i < m; i++ {
				nrm += q[i*k+j] * q[i*k+j]
			}
			nrm = math.Sqrt(nrm)
			for i := 0; i < m; i++ {
				q[i*k+j] /= nrm
			}
		}
	}
	return q
}

// withSpectrum returns W = U·diag(s)·Vᵀ (m×n) for random orthonormal U, V.
func withSpectrum(rng *rand.Rand, m, n int, s []float64) []float64 {
	k := len(s)
	u := randOrthonormal(rng, m, k)
	v := randOrthonormal(rng, n, k)
	w := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var sum float64
			for p := 0; p < k; p++ {
				sum += u[i*k+p] * s[p] * v[j*k+p]
			}
			w[i*n+j] = sum
		}
	}
	return w
}

func matmul(a, b []float64, m, k, n int) []float64 {
	c := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for p := 0; p < k; p++ {
			x := a[i*k+p]
			for j := 0; j < n; j++ {
				c[i*n+j] += x * b[p*n+j]
			}
		}
	}
	return c
}

func sqDiff(a, b []float64) float64 {
	var s float64
	for i := range a {
		d := a[i] - b[i]
		s += d * d
	}
	return s
}

func decaying(k int, rate float64) []float64 {
	s := make([]float64, k)
	for i := range s {
		s[i] = 10 * math.Pow(rate, float64(i))
	}
	return s
}

// TestEckartYoung: against a matrix of known spectrum, the factors of rank r
// reproduce the best rank-r error Σ_{i>r} σᵢ² (relative 1e-5) and the
// singular values come out right.
func TestEckartYoung(t *testing.T) {
	cases := []struct {
		name string
		m, n int
		s    []float64
	}{
		{"tall", 60, 25, decaying(25, 0.8)},
		{"wide", 20, 70, decaying(20, 0.9)},
		{"square-flat", 40, 40, decaying(40, 0.99)},
		{"rank-deficient", 30, 30, append(decaying(10, 0.7), make([]float64, 20)...)},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := withSpectrum(rng, c.m, c.n, c.s)
			orig := slices.Clone(w)
			s, err := ExactSVD(w, c.m, c.n)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(w, orig) {
				t.Fatal("ExactSVD modified its input")
			}
			for i, want := range c.s {
				if math.Abs(s.S[i]-want) > 1e-9*c.s[0] {
					t.Errorf("σ%d = %g, want %g", i, s.S[i], want)
				}
			}
			for _, r := range []int{1, 3, 7, min(c.m, c.n)} {
				a, b := s.Factors(r)
				got := sqDiff(w, matmul(a, b, c.m, r, c.n))
				var want float64
				for _, v := range c.s[r:] {
					want += v * v
				}
				if math.Abs(got-want) > 1e-5*want+1e-18*s.Total {
					t.Errorf("rank %d: ‖W−AB‖² = %.10g, Σ_{i>r}σ² = %.10g", r, got, want)
				}
				if tail := s.Tail(r); math.Abs(tail-want) > 1e-9*s.Total {
					t.Errorf("rank %d: Tail = %g, want %g", r, tail, want)
				}
			}
		})
	}
}

func TestExactSVDNonFinite(t *testing.T) {
	w := []float64{1, 2, math.NaN(), 4}
	if _, err := ExactSVD(w, 2, 2); !errors.Is(err, ErrNonFinite) {
		t.Fatalf("err = %v, want ErrNonFinite", err)
	}
}

func TestFactorsPanicsOnBadRank(t *testing.T) {
	s, err := ExactSVD([]float64{1, 0, 0, 1}, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []int{0, 3} {
		func() {
			defer func() {
				if e, ok := recover().(error); !ok || !errors.Is(e, ErrShape) {
					t.Errorf("rank %d: recover() = %v, want ErrShape", r, e)
				}
			}()
			s.Factors(r)
		}()
	}
}

// TestRandomizedMatchesExact: with power iterations the randomized SVD finds
// the leading singular values and an error within a hair of the optimum.
func TestRandomizedMatchesExact(t *testing.T) {
	cases := []struct {
		name string
		m, n int
		rate float64
		r    int
		opt  RandomizedOptions
		tol  float64 // relative tolerance on σ and on the error
	}{
		{"tall-decay", 300, 120, 0.85, 10, RandomizedOptions{Seed: 1}, 1e-6},
		{"wide-decay", 80, 250, 0.8, 8, RandomizedOptions{Seed: 2}, 1e-6},
		{"slow-decay", 200, 200, 0.97, 16, RandomizedOptions{Seed: 3, PowerIters: 4}, 1e-2},
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := withSpectrum(rng, c.m, c.n, decaying(min(c.m, c.n), c.rate))
			ex, err := ExactSVD(w, c.m, c.n)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := RandomizedSVD(w, c.m, c.n, c.r, c.opt)
			if err != nil {
				t.Fatal(err)
			}
			if rs.K() != c.r || len(rs.U) != c.m*c.r || len(rs.VT) != c.r*c.n {
				t.Fatalf("randomized SVD holds %d triplets, want %d", rs.K(), c.r)
			}
			if math.Abs(rs.Total-ex.Total) > 1e-12*ex.Total {
				t.Errorf("Total %g, exact %g", rs.Total, ex.Total)
			}
			for i := 0; i < c.r; i++ {
				if math.Abs(rs.S[i]-ex.S[i]) > c.tol*ex.S[i] {
					t.Errorf("σ%d: randomized %g, exact %g", i, rs.S[i], ex.S[i])
				}
			}
			a, b := rs.Factors(c.r)
			got := sqDiff(w, matmul(a, b, c.m, c.r, c.n))
			best := ex.Tail(c.r)
			if got > best*(1+c.tol) {
				t.Errorf("randomized error %g, optimum %g", got, best)
			}
			again, _ := RandomizedSVD(w, c.m, c.n, c.r, c.opt)
			if !slices.Equal(again.S, rs.S) || !slices.Equal(again.U, rs.U) {
				t.Error("same seed gave a different result")
			}
		})
	}
}

func TestEnergyRank(t *testing.T) {
	sigma := []float64{3, 2, 1, 0} // σ² = 9, 4, 1, 0; total 14
	cases := []struct {
		e    float64
		want int
	}{
		{0.1, 1}, {9.0 / 14, 1}, {0.65, 2}, {13.0 / 14, 2}, {0.95, 3}, {1, 3},
	}
	for _, c := range cases {
		if got := EnergyRank(sigma, 14, c.e); got != c.want {
			t.Errorf("EnergyRank(E=%g) = %d, want %d", c.e, got, c.want)
		}
	}
	if got := EnergyRank([]float64{0, 0}, 0, 0.5); got != 1 {
		t.Errorf("zero matrix: rank %d, want 1", got)
	}
}

func TestRuleValidate(t *testing.T) {
	cases := []struct {
		r  Rule
		ok bool
	}{
		{Rule{ByEnergy, 1}, true},
		{Rule{ByEnergy, 0.5}, true},
		{Rule{ByEnergy, 0}, false},
		{Rule{ByEnergy, 1.01}, false},
		{Rule{ByEnergy, math.NaN()}, false},
		{Rule{ByRankRatio, 0.25}, true},
		{Rule{ByRankRatio, -1}, false},
		{Rule{ByRank, 8}, true},
		{Rule{ByRank, 0}, false},
		{Rule{ByRank, 2.5}, false},
		{Rule{ByParamsRatio, 0.5}, true},
		{Rule{ByParamsRatio, 2}, false},
		{Rule{}, false},
	}
	for _, c := range cases {
		err := c.r.Validate()
		if (err == nil) != c.ok {
			t.Errorf("%v: Validate() = %v, want ok=%v", c.r, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrOption) {
			t.Errorf("%v: error %v does not wrap ErrOption", c.r, err)
		}
	}
}

func TestPriorRank(t *testing.T) {
	cases := []struct {
		r    Rule
		m, n int
		want int
	}{
		{Rule{ByRankRatio, 0.25}, 64, 32, 8},
		{Rule{ByRankRatio, 0.01}, 64, 32, 1},
		{Rule{ByRankRatio, 1}, 10, 12, 10},
		{Rule{ByRank, 5}, 64, 32, 5},
		{Rule{ByRank, 500}, 64, 32, 32},
		{Rule{ByEnergy, 0.9}, 64, 32, 0},
	}
	for _, c := range cases {
		if got := c.r.Prior(c.m, c.n); got != c.want {
			t.Errorf("%v on %d×%d: %d, want %d", c.r, c.m, c.n, got, c.want)
		}
	}
}

func TestSavesAndBreakEven(t *testing.T) {
	cases := []struct{ m, n, be int }{
		{64, 64, 31}, {10, 10, 4}, {1, 100, 0}, {3, 6, 1}, {128, 64, 42},
	}
	for _, c := range cases {
		if got := BreakEven(c.m, c.n); got != c.be {
			t.Errorf("BreakEven(%d,%d) = %d, want %d", c.m, c.n, got, c.be)
		}
		if c.be > 0 && !Saves(c.m, c.n, c.be) {
			t.Errorf("Saves(%d,%d,%d) = false", c.m, c.n, c.be)
		}
		if Saves(c.m, c.n, c.be+1) {
			t.Errorf("Saves(%d,%d,%d) = true", c.m, c.n, c.be+1)
		}
	}
}

func budgetCost(layers []BudgetLayer, ranks []int) (after, before int) {
	for i, l := range layers {
		before += l.M * l.N
		if ranks[i] == Dense {
			after += l.M * l.N
		} else {
			after += ranks[i] * (l.M + l.N)
		}
	}
	return after, before
}

func TestBudget(t *testing.T) {
	flat := make([]float64, 32)
	for i := range flat {
		flat[i] = 1
	}
	peaked := append([]float64{100}, make([]float64, 31)...)
	for i := 1; i < 32; i++ {
		peaked[i] = 0.01
	}
	same := []BudgetLayer{{M: 32, N: 32, Sigma: decaying(32, 0.9)}, {M: 32, N: 32, Sigma: scale(decaying(32, 0.9), 7)}}
	cases := []struct {
		name   string
		layers []BudgetLayer
		p      float64
		check  func(t *testing.T, ranks []int)
	}{
		{"same spectra shape, different scale: ranks within one", same, 0.3, func(t *testing.T, r []int) {
			if r[0]-r[1] > 1 || r[1]-r[0] > 1 {
				t.Errorf("ranks %v, want equal up to one step", r)
			}
		}},
		{"peaked layer needs rank 1, flat one gets the rest", []BudgetLayer{{M: 32, N: 32, Sigma: peaked}, {M: 32, N: 32, Sigma: flat}}, 0.4, func(t *testing.T, r []int) {
			if r[0] != 1 || r[1] <= 1 {
				t.Errorf("ranks %v, want [1, >1]", r)
			}
		}},
		{"full budget keeps everything dense", same, 1, func(t *testing.T, r []int) {
			if r[0] != Dense || r[1] != Dense {
				t.Errorf("ranks %v, want dense", r)
			}
		}},
		{"1×n layer stays dense", []BudgetLayer{{M: 1, N: 50, Sigma: []float64{3}}, {M: 20, N: 20, Sigma: decaying(20, 0.5)}}, 0.9, func(t *testing.T, r []int) {
			if r[0] != Dense {
				t.Errorf("ranks %v, want the 1×50 layer dense", r)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ranks, err := Budget(c.layers, c.p)
			if err != nil {
				t.Fatal(err)
			}
			after, before := budgetCost(c.layers, ranks)
			if float64(after) > c.p*float64(before)+1e-9 {
				t.Errorf("%d parameters after, budget %g×%d", after, c.p, before)
			}
			for i, r := range ranks {
				if r != Dense && (r < 1 || r > BreakEven(c.layers[i].M, c.layers[i].N)) {
					t.Errorf("layer %d rank %d outside [1, BreakEven]", i, r)
				}
			}
			c.check(t, ranks)
		})
	}
	if _, err := Budget(same, 0.01); !errors.Is(err, ErrBudget) {
		t.Errorf("tiny budget: err = %v, want ErrBudget", err)
	}
	if _, err := Budget(same, 0); !errors.Is(err, ErrOption) {
		t.Errorf("p=0: err = %v, want ErrOption", err)
	}
}

// TestBudgetSpendsIt: the greedy leaves less than one step of budget unused
// when no layer is stopped by break-even.
func TestBudgetSpendsIt(t *testing.T) {
	layers := []BudgetLayer{
		{M: 64, N: 32, Sigma: decaying(32, 0.9)},
		{M: 48, N: 48, Sigma: decaying(48, 0.95)},
		{M: 16, N: 100, Sigma: decaying(16, 0.7)},
	}
	for _, p := range []float64{0.2, 0.35, 0.5} {
		ranks, err := Budget(layers, p)
		if err != nil {
			t.Fatal(err)
		}
		after, before := budgetCost(layers, ranks)
		if slack := p*float64(before) - float64(after); slack < 0 || slack >= 116 {
			t.Errorf("p=%g: ranks %v use %d of %g", p, ranks, after, p*float64(before))
		}
	}
}

func scale(s []float64, f float64) []float64 {
	out := make([]float64, len(s))
	for i, v := range s {
		out[i] = v * f
	}
	return out
}
