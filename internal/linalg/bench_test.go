package linalg

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"gonum.org/v1/gonum/blas/blas64"
)

// benchSizes returns the square sizes to benchmark: $ONNXPOST_BENCH_SVD_SIZES
// (comma-separated, e.g. "1024,2048") or 256 and 512.
func benchSizes(b *testing.B) []int {
	s := os.Getenv("ONNXPOST_BENCH_SVD_SIZES")
	if s == "" {
		return []int{256, 512}
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("ONNXPOST_BENCH_SVD_SIZES: %q", f)
		}
		out = append(out, n)
	}
	return out
}

// benchBackends returns the backends named by $ONNXPOST_BENCH_BACKENDS
// ("openblas,go" by default) that are available.
func benchBackends() []Backend {
	names := os.Getenv("ONNXPOST_BENCH_BACKENDS")
	if names == "" {
		names = "openblas,go"
	}
	var out []Backend
	for _, n := range strings.Split(names, ",") {
		switch strings.TrimSpace(n) {
		case "go":
			out = append(out, Pure())
		case "openblas":
			if ob, err := OpenBLAS(); err == nil {
				out = append(out, ob)
			}
		}
	}
	return out
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// BenchmarkSVD is the exact thin SVD (with both singular vector sets) of a
// seeded n×n Gaussian matrix per backend; cpu-s/op is the process's user +
// system CPU time per decomposition. tools/bench_svd.py runs it beside
// numpy.linalg.svd.
func BenchmarkSVD(b *testing.B) {
	for _, be := range benchBackends() {
		for _, n := range benchSizes(b) {
			b.Run(fmt.Sprintf("%s/%dx%d", be.Name(), n, n), func(b *testing.B) {
				rng := rand.New(rand.NewPCG(uint64(n), 1))
				src := make([]float64, n*n)
				for i := range src {
					src[i] = rng.NormFloat64()
				}
				s := make([]float64, n)
				u := blas64.General{Rows: n, Cols: n, Stride: n, Data: make([]float64, n*n)}
				vt := blas64.General{Rows: n, Cols: n, Stride: n, Data: make([]float64, n*n)}
				a := blas64.General{Rows: n, Cols: n, Stride: n, Data: make([]float64, n*n)}
				// Warm up: the library's thread pool starts on the first call.
				w := blas64.General{Rows: 16, Cols: 16, Stride: 16, Data: append([]float64(nil), src[:256]...)}
				be.SVD(w, s[:16], blas64.General{Rows: 16, Cols: 16, Stride: 16, Data: u.Data[:256]}, blas64.General{Rows: 16, Cols: 16, Stride: 16, Data: vt.Data[:256]})
				var cpu float64
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					copy(a.Data, src)
					c0 := cpuSeconds()
					b.StartTimer()
					if !be.SVD(a, s, u, vt) {
						b.Fatal("no convergence")
					}
					b.StopTimer()
					cpu += cpuSeconds() - c0
					b.StartTimer()
				}
				b.ReportMetric(cpu/float64(b.N), "cpu-s/op")
			})
		}
	}
}
