// Command sparsityheap measures the heap of sparsity.PruneModel's step on
// one wide layer, an lm_head-like MatMul weight [K, N] of float32 read
// from external data, without ONNX Runtime (a fixed XᵀX: 0.5 everywhere
// plus 1–2 on the diagonal). The first run writes the model into -dir; the
// next runs prune it (nothing is written back) and print the peak of the
// Go heap in use, sampled every 20 ms, beside the weight's size:
//
//	go run ./tools/sparsityheap -k 1024 -n 32000           # writes the model
//	/usr/bin/time -v go run ./tools/sparsityheap -method sparsegpt
//
// (docs/BENCHMARKS.md, "Per-layer memory at 1 B").
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/compress/sparsity"
	"github.com/onnxpost/onnxpost/onnxio"
)

type stats struct {
	calib.Missing
	k int
}

func (s stats) InputGram(string) ([]float64, int, int64, error) {
	g := make([]float64, s.k*s.k)
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < s.k; i++ {
		for j := 0; j < s.k; j++ {
			g[i*s.k+j] = 0.5
		}
		g[i*s.k+i] += 1 + rng.Float64()
	}
	return g, s.k, 100, nil
}

func (s stats) SquaredColumnNorms(string) ([]float64, int64, error) {
	g := make([]float64, s.k)
	rng := rand.New(rand.NewSource(1))
	for i := range g {
		g[i] = 1.5 + rng.Float64()
	}
	return g, 100, nil
}

func main() {
	k := flag.Int("k", 1024, "reduction size K of the weight [K, N]")
	n := flag.Int("n", 32000, "outputs N of the weight [K, N]")
	method := flag.String("method", "sparsegpt", "sparsegpt (2:4) or wanda (50 %)")
	dir := flag.String("dir", filepath.Join(os.TempDir(), "sparsityheap"), "folder of the model")
	flag.Parse()
	path := filepath.Join(*dir, "p.onnx")
	if _, err := os.Stat(path); err != nil {
		if err := os.MkdirAll(*dir, 0o755); err != nil {
			fail(err)
		}
		m := onnxio.New("probe", 17)
		m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 1}, {Value: int64(*k)}}})
		v := make([]float32, *k**n)
		rng := rand.New(rand.NewSource(2))
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		w, err := onnxio.FromFloat32("W", onnxio.Float, []int64{int64(*k), int64(*n)}, v)
		if err != nil {
			fail(err)
		}
		if err := m.SetInitializer(w); err != nil {
			fail(err)
		}
		if err := m.InsertNodes(onnxio.Node{Name: "mm", OpType: "MatMul", Inputs: []string{"x", "W"}, Outputs: []string{"y"}}); err != nil {
			fail(err)
		}
		m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float})
		if err := m.Save(path, &onnxio.SaveOptions{External: onnxio.ExternalAlways, Threshold: 64}); err != nil {
			fail(err)
		}
		fmt.Println("wrote", path)
		return
	}
	m, err := onnxio.Load(path)
	if err != nil {
		fail(err)
	}
	dt, shape, err := m.InitializerInfo("W")
	if err != nil {
		fail(err)
	}
	*k, *n = int(shape[0]), int(shape[1])
	opt := sparsity.Options{Method: sparsity.Method(*method), Pattern: sparsity.Pattern{N: 2, M: 4}}
	if *method == "wanda" {
		opt = sparsity.Options{Method: sparsity.Wanda, Sparsity: 0.5}
	}
	start := time.Now()
	peak := uint64(0)
	done := make(chan bool)
	go func() {
		var ms runtime.MemStats
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak {
					peak = ms.HeapInuse
				}
			}
		}
	}()
	rep, err := sparsity.PruneModel(context.Background(), m, opt, sparsity.Selection{}, stats{k: *k})
	close(done)
	if err != nil {
		fail(err)
	}
	fmt.Printf("%s %v K=%d N=%d weight %.0f MiB: peak heap in use %.0f MiB (sampled 20 ms), %.1fs, loss %v zeros %d\n", *method, dt, *k, *n, float64(4**k**n)/(1<<20), float64(peak)/(1<<20), time.Since(start).Seconds(), rep.Layers[0].Loss, rep.Zeros)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "sparsityheap:", err)
	os.Exit(1)
}
