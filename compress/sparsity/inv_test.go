package sparsity

import (
	"math"
	"math/rand"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack/lapack64"
)

func randLower(rng *rand.Rand, n int) []float64 {
	l := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j < i; j++ {
			l[i*n+j] = rng.NormFloat64() / math.Sqrt(float64(n))
		}
		l[i*n+i] = 1 + rng.Float64()
	}
	return l
}

func TestInvertLower(t *testing.T) {
	rng := rand.New(rand.NewSource(12))
	for _, n := range []int{1, 5, 128, 129, 300} {
		l := randLower(rng, n)
		x := append([]float64(nil), l...)
		for i := 0; i < n; i++ { // junk above the diagonal: ignored, zeroed
			for j := i + 1; j < n; j++ {
				x[i*n+j] = rng.NormFloat64()
			}
		}
		if !invertLower(x, n) {
			t.Fatal("not ok")
		}
		want := append([]float64(nil), l...)
		lapack64.Trtri(blas64.Triangular{Uplo: blas.Lower, Diag: blas.NonUnit, N: n, Stride: n, Data: want})
		for i := 0; i < n; i++ {
			for j := 0; j <= i; j++ {
				if d := math.Abs(x[i*n+j] - want[i*n+j]); d > 1e-10 {
					t.Fatalf("n=%d: X[%d,%d] off by %v", n, i, j, d)
				}
			}
			for j := i + 1; j < n; j++ {
				if x[i*n+j] != 0 {
					t.Fatalf("n=%d: X not lower", n)
				}
			}
		}
	}
}

func BenchmarkInvertLower(b *testing.B) {
	n := 1024
	l := randLower(rand.New(rand.NewSource(1)), n)
	b.Run("blocked", func(b *testing.B) {
		cpu0 := cpuSeconds()
		for i := 0; i < b.N; i++ {
			invertLower(append([]float64(nil), l...), n)
		}
		b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "cpu-s/op")
	})
	b.Run("dtrtri", func(b *testing.B) {
		cpu0 := cpuSeconds()
		for i := 0; i < b.N; i++ {
			a := append([]float64(nil), l...)
			lapack64.Trtri(blas64.Triangular{Uplo: blas.Lower, Diag: blas.NonUnit, N: n, Stride: n, Data: a})
		}
		b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "cpu-s/op")
	})
}

// TestNarrow: narrowing in place gives float32(u[i]) for every element,
// including values that round, signs, zeros and odd lengths.
func TestNarrow(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 7, 1000} {
		u := make([]float64, n)
		for i := range u {
			u[i] = math.Pow(-1.7, float64(i%40)) / 3
		}
		want := make([]float32, n)
		for i, v := range u {
			want[i] = float32(v)
		}
		got := narrow(u)
		if len(got) != n {
			t.Fatalf("n=%d: %d values", n, len(got))
		}
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("n=%d: element %d is %v, want %v", n, i, got[i], want[i])
			}
		}
	}
}
