package onnxio_test

import (
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/onnxio/internal/benchgen"
)

// benchShape is 12 layers of d=256 (38 MB) unless ONNXIO_BENCH_LAYERS and
// ONNXIO_BENCH_D say otherwise; ONNXIO_BENCH_LARGE=1 selects 24 layers of
// d=1024 (BERT-large shaped, 1.2 GB):
//
//	ONNXIO_BENCH_LARGE=1 go test ./onnxio -run '^$' -bench LoadSaveExternal -benchtime 3x
func benchShape(b *testing.B) benchgen.Shape {
	s := benchgen.Shape{Layers: 12, D: 256}
	if os.Getenv("ONNXIO_BENCH_LARGE") == "1" {
		s = benchgen.Shape{Layers: 24, D: 1024}
	}
	if v, err := strconv.Atoi(os.Getenv("ONNXIO_BENCH_LAYERS")); err == nil && v > 0 {
		s.Layers = v
	}
	if v, err := strconv.Atoi(os.Getenv("ONNXIO_BENCH_D")); err == nil && v > 0 {
		s.D = v
	}
	return s
}

func maxRSSMB() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Maxrss) / 1024
}

// BenchmarkLoadSaveExternal compares, on the same files in the same run, a
// plain copy (io.Copy between files + fsync), Load + Save with external
// data of an unchanged model, and the same with an identity Transform (each
// tensor read into memory). MB/s is over model + data bytes; maxrss-MB is
// the process's peak RSS so far (internal/benchmain measures each phase in
// its own process).
func BenchmarkLoadSaveExternal(b *testing.B) {
	s := benchShape(b)
	dir := b.TempDir()
	src, err := benchgen.Generate(dir, s, 1)
	if err != nil {
		b.Fatal(err)
	}
	total, err := onnxio.DiskSize(src)
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		b.Fatal(err)
	}
	name := strconv.Itoa(s.Layers) + "x" + strconv.Itoa(s.D)
	b.Run("copy/"+name, func(b *testing.B) {
		b.SetBytes(total)
		for i := 0; i < b.N; i++ {
			if _, err := benchgen.CopyModel(src, out); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(maxRSSMB(), "maxrss-MB")
	})
	for _, tr := range []bool{false, true} {
		label := "loadsave/"
		if tr {
			label = "loadsave-transform/"
		}
		b.Run(label+name, func(b *testing.B) {
			b.SetBytes(total)
			for i := 0; i < b.N; i++ {
				if err := benchgen.LoadSave(src, filepath.Join(out, "model.onnx"), tr); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(maxRSSMB(), "maxrss-MB")
		})
	}
}

func benchTensor(b *testing.B, dt onnxio.DType) *onnxio.Tensor {
	v := make([]float32, 768*3072)
	r := rand.New(rand.NewSource(1))
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	t, err := onnxio.FromFloat32("w", dt, []int64{768, 3072}, v)
	if err != nil {
		b.Fatal(err)
	}
	return t
}

// BenchmarkDecode768x3072 measures Tensor.Float32 on a BERT-base
// feed-forward weight of each storage type.
func BenchmarkDecode768x3072(b *testing.B) {
	for _, dt := range []onnxio.DType{onnxio.Float, onnxio.Float16, onnxio.BFloat16, onnxio.Float8E4M3FN, onnxio.Int8, onnxio.Int4} {
		b.Run(dt.String(), func(b *testing.B) {
			t := benchTensor(b, dt)
			b.SetBytes(4 * 768 * 3072)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := t.Float32(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncode768x3072 measures FromFloat32 into each storage type.
func BenchmarkEncode768x3072(b *testing.B) {
	v := make([]float32, 768*3072)
	r := rand.New(rand.NewSource(1))
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	for _, dt := range []onnxio.DType{onnxio.Float16, onnxio.BFloat16, onnxio.Float8E4M3FN, onnxio.Int8, onnxio.Int4} {
		b.Run(dt.String(), func(b *testing.B) {
			b.SetBytes(4 * 768 * 3072)
			for i := 0; i < b.N; i++ {
				if _, err := onnxio.FromFloat32("w", dt, []int64{768, 3072}, v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWeightsBERTLargeGraph measures Load of the 24-layer graph (data
// external, not read) plus Weights and Match.
func BenchmarkWeightsBERTLargeGraph(b *testing.B) {
	src, err := benchgen.Generate(b.TempDir(), benchgen.Shape{Layers: 24, D: 16}, 1)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m, err := onnxio.Load(src)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.Weights(); err != nil {
			b.Fatal(err)
		}
		if _, err := onnxio.Match(m, m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeriveVsClone compares, on one inline model (benchShape, its
// weights held in memory), deriving a model and replacing one tensor with
// deep-copying it (Clone) and replacing the same tensor:
//
//	go test ./onnxio -run '^$' -bench DeriveVsClone
func BenchmarkDeriveVsClone(b *testing.B) {
	src, err := benchgen.Generate(b.TempDir(), benchShape(b), 1)
	if err != nil {
		b.Fatal(err)
	}
	ext, err := onnxio.Load(src)
	if err != nil {
		b.Fatal(err)
	}
	raw, err := ext.Bytes()
	if err != nil {
		b.Fatal(err)
	}
	m, err := onnxio.LoadBytes(raw, "")
	if err != nil {
		b.Fatal(err)
	}
	name := m.Initializers()[0]
	t, err := m.Initializer(name)
	if err != nil {
		b.Fatal(err)
	}
	repl := t.Clone()
	b.Run("clone", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for i := 0; i < b.N; i++ {
			c := m.Clone()
			if err := c.SetInitializer(repl); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("derive", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for i := 0; i < b.N; i++ {
			if _, err := m.WithInitializers(repl); err != nil {
				b.Fatal(err)
			}
		}
	})
}
