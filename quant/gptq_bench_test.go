package quant

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// benchCPUSeconds returns the process's user+system CPU time.
func benchCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// BenchmarkGPTQLarge runs GPTQ (4 bits, block 128) on a d×d weight with the
// d×d Kac–Murdock–Szegő matrix 0.9^|i−j| as XᵀX, d from
// $ONNXPOST_BENCH_GPTQ_SIZE (default 1024; tools/bench_svd.py uses 2048 and
// 4096). cpu-s/op is user+system time of all threads. Run it once with
// ONNXPOST_LINALG=go and once without to compare the backends
// (internal/linalg).
func BenchmarkGPTQLarge(b *testing.B) {
	d := 1024
	if s := os.Getenv("ONNXPOST_BENCH_GPTQ_SIZE"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			b.Fatalf("ONNXPOST_BENCH_GPTQ_SIZE=%q", s)
		}
		d = v
	}
	b.Run(fmt.Sprintf("%dx%d", d, d), func(b *testing.B) {
		rng := rand.New(rand.NewSource(1))
		w := randWeights(rng, d*d, 1)
		h := make([]float64, d*d)
		for i := 0; i < d; i++ {
			for j := 0; j < d; j++ {
				h[i*d+j] = math.Pow(0.9, math.Abs(float64(i-j)))
			}
		}
		b.ResetTimer()
		cpu0 := benchCPUSeconds()
		for i := 0; i < b.N; i++ {
			if _, _, err := GPTQ(context.Background(), w, d, d, h, GPTQOptions{Block: BlockOptions{Bits: 4, BlockSize: 128}}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric((benchCPUSeconds()-cpu0)/float64(b.N), "cpu-s/op")
	})
}

// BenchmarkGPTQHinv isolates GPTQ's cubic setup, the upper Cholesky factor
// of H⁻¹ (Cholesky plus triangular inverse), at the same size.
func BenchmarkGPTQHinv(b *testing.B) {
	d := 1024
	if s := os.Getenv("ONNXPOST_BENCH_GPTQ_SIZE"); s != "" {
		d, _ = strconv.Atoi(s)
	}
	h := make([]float64, d*d)
	for i := 0; i < d; i++ {
		for j := 0; j < d; j++ {
			h[i*d+j] = math.Pow(0.9, math.Abs(float64(i-j)))
		}
	}
	b.ResetTimer()
	cpu0 := benchCPUSeconds()
	for i := 0; i < b.N; i++ {
		if !hinvUpper(append([]float64(nil), h...), d, 0.01) {
			b.Fatal("not positive definite")
		}
	}
	b.ReportMetric((benchCPUSeconds()-cpu0)/float64(b.N), "cpu-s/op")
}
