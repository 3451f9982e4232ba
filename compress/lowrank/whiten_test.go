package lowrank

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// gram returns XᵀX of the n×d matrix x.
func gram(x []float64, n, d int) []float64 {
	g := make([]float64, d*d)
	for r := 0; r < n; r++ {
		row := x[r*d : (r+1)*d]
		for i := 0; i < d; i++ {
			for j := 0; j < d; j++ {
				g[i*d+j] += row[i] * row[j]
			}
		}
	}
	return g
}

// anisotropic returns n samples of d features with very different scales
// and correlations, so whitening matters.
func anisotropic(rng *rand.Rand, n, d int) []float64 {
	mix := randVec(rng, d*d)
	x := make([]float64, n*d)
	for r := 0; r < n; r++ {
		z := randVec(rng, d)
		for j := range z {
			z[j] *= math.Pow(0.7, float64(j))
		}
		for i := 0; i < d; i++ {
			var s float64
			for j := 0; j < d; j++ {
				s += z[j] * mix[j*d+i]
			}
			x[r*d+i] = s
		}
	}
	return x
}

// outErr returns ‖(W−Ŵ)·Xᵀ‖²_F for W, Ŵ m×d and X n×d.
func outErr(w, wh, x []float64, m, d, n int) float64 {
	diff := make([]float64, m*d)
	for i := range diff {
		diff[i] = w[i] - wh[i]
	}
	y := matmul(diff, Transpose(x, n, d), m, d, n)
	return sumSquares(y)
}

// TestWhitenedSVDOptimalOutputError: without damping, the whitened rank-r
// factors' output error equals the whitened spectrum's tail (the optimum
// over rank-r matrices in the data norm) and beats plain SVD.
func TestWhitenedSVDOptimalOutputError(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	m, d, n := 24, 16, 200
	w := randVec(rng, m*d)
	x := anisotropic(rng, n, d)
	wh, err := NewWhitener(gram(x, n, d), d, 0)
	if err != nil {
		t.Fatal(err)
	}
	sw, err := Decompose(w, m, d, wh, 0, Exact, RandomizedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := ExactSVD(w, m, d)
	for _, r := range []int{2, 5, 10} {
		a, b := Factorize(sw, r, wh)
		got := outErr(w, matmul(a, b, m, r, d), x, m, d, n)
		want := sw.Tail(r)
		if math.Abs(got-want) > 1e-6*want {
			t.Errorf("rank %d: whitened output error %g, whitened tail %g", r, got, want)
		}
		pa, pb := sp.Factors(r)
		plain := outErr(w, matmul(pa, pb, m, r, d), x, m, d, n)
		if got > plain {
			t.Errorf("rank %d: whitened error %g > plain SVD error %g", r, got, plain)
		}
	}
	// Full rank reproduces W.
	a, b := Factorize(sw, sw.K(), wh)
	if diff := maxAbsDiff(matmul(a, b, m, sw.K(), d), w); diff > 1e-9 {
		t.Errorf("full rank whitened: max abs diff %g", diff)
	}
}

func TestWhitenerRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	d := 12
	x := anisotropic(rng, 50, d)
	wh, err := NewWhitener(gram(x, 50, d), d, DefaultDamp)
	if err != nil {
		t.Fatal(err)
	}
	w := randVec(rng, 5*d)
	back := wh.Unwhiten(wh.Whiten(w, 5), 5)
	if diff := maxAbsDiff(back, w); diff > 1e-10 {
		t.Errorf("Unwhiten(Whiten(W)) differs by %g", diff)
	}
	for i := 0; i < d; i++ {
		for j := i + 1; j < d; j++ {
			if wh.L[i*d+j] != 0 {
				t.Fatalf("L[%d,%d] = %g above the diagonal", i, j, wh.L[i*d+j])
			}
		}
	}
}

// TestWhitenerDamping: a singular Gram (a feature that is always zero, like
// a border pixel of the digits) factorizes with damping, and refusals are
// clear.
func TestWhitenerDamping(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	n, d := 40, 6
	x := randVec(rng, n*d)
	for r := 0; r < n; r++ {
		x[r*d+2] = 0
	}
	g := gram(x, n, d)
	wh, err := NewWhitener(g, d, 0)
	if err != nil {
		t.Fatalf("singular Gram with auto damping: %v", err)
	}
	if wh.Lambda <= 0 {
		t.Errorf("λ = %g, want > 0 for a singular Gram", wh.Lambda)
	}
	cases := []struct {
		name string
		g    []float64
		d    int
		damp float64
		want error
	}{
		{"zeros", make([]float64, 9), 3, DefaultDamp, ErrCalibration},
		{"nan", []float64{1, math.NaN(), math.NaN(), 1}, 2, DefaultDamp, ErrCalibration},
		{"wrong size", make([]float64, 8), 3, DefaultDamp, ErrCalibration},
		{"negative damp", g, d, -1, ErrOption},
	}
	for _, c := range cases {
		if _, err := NewWhitener(c.g, c.d, c.damp); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := Decompose(randVec(rng, 4*5), 4, 5, wh, 0, Exact, RandomizedOptions{}); !errors.Is(err, ErrCalibration) {
		t.Errorf("Gram size mismatch: err = %v, want ErrCalibration", err)
	}
}
