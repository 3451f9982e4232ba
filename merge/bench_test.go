package merge

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/onnxpost/onnxpost/onnxio"
)

func randSlices(n, m int, seed uint64) (base []float32, xs [][]float32) {
	r := rand.New(rand.NewPCG(seed, 1))
	base = make([]float32, n)
	for j := range base {
		base[j] = float32(r.NormFloat64())
	}
	for range m {
		x := make([]float32, n)
		for j := range x {
			x[j] = base[j] + float32(0.01*r.NormFloat64())
		}
		xs = append(xs, x)
	}
	return base, xs
}

// BenchmarkTIESKernel768x3072 merges three 768×3072 deltas (thresholds
// given); bytes are the input bytes read (base + 3 models).
func BenchmarkTIESKernel768x3072(b *testing.B) {
	base, xs := randSlices(768*3072, 3, 1)
	dst := make([]float32, len(base))
	b.SetBytes(int64(4 * len(base) * 4))
	start := cpuTime()
	for b.Loop() {
		TIESTo(dst, base, xs, []float64{1, 1, 1}, []float64{0.01, 0.01, 0.01}, 1)
	}
	reportCPU(b, start, int64(4*len(base)*4))
}

// BenchmarkDARETIESKernel768x3072 is the same with random drops.
func BenchmarkDARETIESKernel768x3072(b *testing.B) {
	base, xs := randSlices(768*3072, 3, 1)
	dst := make([]float32, len(base))
	p := DAREParams{Weights: []float64{1, 1, 1}, Densities: []float64{0.5, 0.5, 0.5}, Keys: []uint64{1, 2, 3}, Lambda: 1, TIES: true}
	b.SetBytes(int64(4 * len(base) * 4))
	start := cpuTime()
	for b.Loop() {
		DARETo(dst, base, xs, p)
	}
	reportCPU(b, start, int64(4*len(base)*4))
}

// BenchmarkSelectorPass768x3072 is one histogram pass of the global-trim
// selection over one tensor's |τ|.
func BenchmarkSelectorPass768x3072(b *testing.B) {
	base, xs := randSlices(768*3072, 1, 2)
	b.SetBytes(int64(8 * len(base)))
	for b.Loop() {
		s := NewSelector(1000)
		p := s.NewPass()
		feedAbs(p, base, xs[0])
		if err := s.EndPass(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMemoryCopy256MB is the memory-bandwidth probe the merge
// throughput is compared with (docs/ARCHITECTURE.md §7).
func BenchmarkMemoryCopy256MB(b *testing.B) {
	src := make([]byte, 256<<20)
	for i := range src {
		src[i] = byte(i)
	}
	dst := make([]byte, len(src))
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		copy(dst, src)
	}
}

// BenchmarkMergeTIESLarge merges the synthetic models of
// $ONNXPOST_BENCH_MERGE_DIR (base.onnx, ft1..3.onnx, made by
// `go run ./merge/internal/synth/gen`; see tools/bench_merge.sh) with TIES,
// global trim, to an external-data output. Bytes are the input bytes
// (base + models). Skipped when the variable is unset.
func BenchmarkMergeTIESLarge(b *testing.B) {
	dir := os.Getenv("ONNXPOST_BENCH_MERGE_DIR")
	if dir == "" {
		b.Skip("set ONNXPOST_BENCH_MERGE_DIR to a folder made by merge/internal/synth/gen")
	}
	load := func(n string) *onnxio.Model {
		m, err := onnxio.Load(filepath.Join(dir, n+".onnx"))
		if err != nil {
			b.Fatal(err)
		}
		return m
	}
	in := Inputs{Base: load("base"), Models: []*onnxio.Model{load("ft1"), load("ft2"), load("ft3")}}
	out := filepath.Join(b.TempDir(), "merged.onnx")
	opt := Options{Method: TIES}
	if s := os.Getenv("ONNXPOST_BENCH_MERGE_SCOPE"); s != "" {
		opt.TrimScope = TrimScope(s)
	}
	start := cpuTime()
	var bytes int64
	for b.Loop() {
		mg, err := New(context.Background(), in, opt, nil)
		if err != nil {
			b.Fatal(err)
		}
		bytes = 4 * 4 * mg.Elements()
		b.SetBytes(bytes)
		if err := mg.Save(context.Background(), mg.Output(), out, &onnxio.SaveOptions{External: onnxio.ExternalAlways}); err != nil {
			b.Fatal(err)
		}
		if err := mg.Close(); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start, bytes)
}

// BenchmarkMergekitKernels768x3072 runs each mergekit method on one
// 768×3072 tensor of a base and three models (two for the two-model
// methods, one for nearswap and arcee_fusion); bytes are the input bytes.
func BenchmarkMergekitKernels768x3072(b *testing.B) {
	base, xs := randSlices(768*3072, 3, 1)
	shape := []int64{768, 3072}
	for _, tc := range mergekitCases() {
		b.Run(tc.name, func(b *testing.B) {
			opt := tc.opt
			if err := opt.Validate(tc.models, tc.base); err != nil {
				b.Fatal(err)
			}
			var bb []float32
			if tc.base {
				bb = base
			}
			in := xs[:tc.models]
			dst := make([]float32, len(base))
			b.SetBytes(int64(4 * len(base) * (len(in) + 1)))
			for b.Loop() {
				if err := computeMergekit(&opt, &TensorPlan{Out: "w", Shape: shape}, dst, bb, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// cpuTime returns the process's user + system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time per operation and the input throughput
// per CPU second since start (a figure less sensitive than wall time to
// other processes on a shared machine).
func reportCPU(b *testing.B, start time.Duration, bytesPerOp int64) {
	cpu := cpuTime() - start
	if b.N == 0 || cpu <= 0 {
		return
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(bytesPerOp)*float64(b.N)/cpu.Seconds()/1e6, "MB/cpu-s")
}

// BenchmarkLinearAccumulation compares the linear kernel's float64
// accumulation (the kernels' choice) with a float32 Kahan-compensated sum
// on three 768×3072 models; bytes are the input bytes.
func BenchmarkLinearAccumulation(b *testing.B) {
	_, xs := randSlices(768*3072, 3, 1)
	dst := make([]float32, len(xs[0]))
	bytes := int64(4 * len(dst) * 3)
	b.Run("float64", func(b *testing.B) {
		b.SetBytes(bytes)
		start := cpuTime()
		for b.Loop() {
			LinearTo(dst, xs, []float64{1, 1, 1}, true)
		}
		reportCPU(b, start, bytes)
	})
	b.Run("float32-kahan", func(b *testing.B) {
		b.SetBytes(bytes)
		start := cpuTime()
		c := float32(1) / 3
		for b.Loop() {
			linearKahan32(dst, xs, []float32{c, c, c})
		}
		reportCPU(b, start, bytes)
	})
}
