package sparsity

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"runtime"
	"syscall"
	"testing"
	"time"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"

	"github.com/onnxpost/onnxpost/internal/linalg"
)

// cpuSeconds returns the process's user+system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// kmsHessian returns the d×d Kac–Murdock–Szegő matrix ρ^|i−j| (symmetric
// positive definite, correlated neighbouring columns), the stand-in XᵀX of
// the benchmarks; tools/bench_sparsegpt.py builds the same matrix.
func kmsHessian(d int, rho float64) []float64 {
	h := make([]float64, d*d)
	for i := 0; i < d; i++ {
		for j := 0; j < d; j++ {
			h[i*d+j] = math.Pow(rho, math.Abs(float64(i-j)))
		}
	}
	return h
}

// BenchmarkSparseGPT measures PruneSparseGPT (2:4, block 128, damp 0.01) on
// a d×d layer with a d×d Hessian; the 4096 size is the one compared with
// PyTorch by tools/bench_sparsegpt.py.
func BenchmarkSparseGPT(b *testing.B) {
	for _, d := range []int{256, 1024, 2048, 4096} {
		b.Run(fmt.Sprintf("%dx%d", d, d), func(b *testing.B) {
			rng := rand.New(rand.NewSource(1))
			w := randMat(rng, d*d)
			h := kmsHessian(d, 0.9)
			sh := Shape{Rows: d, Cols: d, Stride: 1}
			b.ResetTimer()
			cpu0 := cpuSeconds()
			for i := 0; i < b.N; i++ {
				if _, err := PruneSparseGPT(context.Background(), w, sh, h, Options{Pattern: Pattern{2, 4}}); err != nil {
					b.Fatal(err)
				}
			}
			// CPU time of all threads: comparable across runs on a loaded
			// machine, unlike wall time.
			b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "cpu-s/op")
		})
	}
}

// BenchmarkSparseGPTHinv isolates the Cholesky factor of H⁻¹ (the cubic
// setup cost) at 4096.
func BenchmarkSparseGPTHinv(b *testing.B) {
	d := 4096
	h := kmsHessian(d, 0.9)
	for j := 0; j < d; j++ {
		h[j*d+j] += 0.01
	}
	b.ResetTimer()
	cpu0 := cpuSeconds()
	for i := 0; i < b.N; i++ {
		if err := upperCholOfInverse(append([]float64(nil), h...), d); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "cpu-s/op")
}

// BenchmarkTrailing compares one block's lazy update of a 1024×4096 layer
// (128 columns of errors, half of them zero as with 2:4) done by
// trailingUpdate, which skips zero errors, with a dense gonum Sgemm.
func BenchmarkTrailing(b *testing.B) {
	rows, n, cnt := 1024, 4096, 128
	rng := rand.New(rand.NewSource(1))
	W := randMat(rng, rows*n)
	U := randMat(rng, n*n)
	E := randMat(rng, rows*cnt)
	for i := range E {
		if i%4 >= 2 {
			E[i] = 0
		}
	}
	b.Run("skip-zeros", func(b *testing.B) {
		cpu0 := cpuSeconds()
		for i := 0; i < b.N; i++ {
			trailingUpdate(W, E, U, rows, n, 0, cnt, runtime.GOMAXPROCS(0))
		}
		b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "cpu-s/op")
	})
	b.Run("linalg-sgemm", func(b *testing.B) {
		cpu0 := cpuSeconds()
		defer func() { b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "cpu-s/op") }()
		for i := 0; i < b.N; i++ {
			linalg.Sgemm(blas.NoTrans, blas.NoTrans, -1,
				blas32.General{Rows: rows, Cols: cnt, Stride: cnt, Data: E},
				blas32.General{Rows: cnt, Cols: n - cnt, Stride: n, Data: U[cnt:]},
				1, blas32.General{Rows: rows, Cols: n - cnt, Stride: n, Data: W[cnt:]})
		}
	})
	b.Run("sgemm", func(b *testing.B) {
		cpu0 := cpuSeconds()
		defer func() { b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "cpu-s/op") }()
		for i := 0; i < b.N; i++ {
			blas32.Gemm(blas.NoTrans, blas.NoTrans, -1,
				blas32.General{Rows: rows, Cols: cnt, Stride: cnt, Data: E},
				blas32.General{Rows: cnt, Cols: n - cnt, Stride: n, Data: U[cnt:]},
				1, blas32.General{Rows: rows, Cols: n - cnt, Stride: n, Data: W[cnt:]})
		}
	})
}
