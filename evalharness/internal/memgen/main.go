// Command memgen writes the model and dataset that measure eval's peak
// memory: a chain of float32 MatMul layers [d, d] holding about -mb
// megabytes of weights inline in one .onnx file, and a .npz with -n samples
// of its input x [n, d]:
//
//	go run ./evalharness/internal/memgen -mb 300 -out /tmp/evalmem
//	/usr/bin/time -v onnxpost eval /tmp/evalmem/model.onnx --data /tmp/evalmem/data.npz
//	/usr/bin/time -v python evalharness/internal/memgen/ort_eval.py /tmp/evalmem/model.onnx /tmp/evalmem/data.npz
//
// (the second is ONNX Runtime's own peak on the same file, for comparison).
//
// Weights are small (scaled so activations stay finite) and vary per layer.
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

func main() {
	mb := flag.Int("mb", 300, "megabytes of weights")
	d := flag.Int("d", 1024, "layer width")
	n := flag.Int("n", 8, "samples in the dataset")
	out := flag.String("out", "evalmem", "output folder")
	external := flag.Bool("external", false, "store the weights in an external data file")
	flag.Parse()
	if err := run(*mb, *d, *n, *out, *external); err != nil {
		fmt.Fprintln(os.Stderr, "memgen:", err)
		os.Exit(1)
	}
}

func run(mb, d, n int, out string, external bool) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	layers := (mb << 20) / (4 * d * d)
	if layers < 1 {
		layers = 1
	}
	m := onnxio.New("evalmem", 17)
	dims := []onnxio.Dim{{Param: "N"}, {Value: int64(d)}}
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: dims})
	prev := "x"
	scale := float32(1 / math.Sqrt(float64(d)))
	w := make([]float32, d*d)
	for l := 0; l < layers; l++ {
		for i := range w {
			w[i] = scale * float32((i*7+l*13)%17-8) / 8
		}
		name := fmt.Sprintf("W%d", l)
		t, err := onnxio.FromFloat32(name, onnxio.Float, []int64{int64(d), int64(d)}, w)
		if err != nil {
			return err
		}
		if err := m.SetInitializer(t); err != nil {
			return err
		}
		y := fmt.Sprintf("h%d", l)
		if l == layers-1 {
			y = "y"
		}
		if err := m.InsertNodes(onnxio.Node{Name: fmt.Sprintf("mm%d", l), OpType: "MatMul", Inputs: []string{prev, name}, Outputs: []string{y}}); err != nil {
			return err
		}
		prev = y
	}
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float, Shape: dims})
	ext := onnxio.ExternalNever
	if external {
		ext = onnxio.ExternalAlways
	}
	if err := m.Save(filepath.Join(out, "model.onnx"), &onnxio.SaveOptions{External: ext}); err != nil {
		return err
	}
	x := make([]float32, n*d)
	for i := range x {
		x[i] = float32(i%13) / 13
	}
	ds := map[string]*evalharness.Array{"x": evalharness.FromFloat32([]int64{int64(n), int64(d)}, x)}
	if err := evalharness.WriteNPZ(filepath.Join(out, "data.npz"), ds); err != nil {
		return err
	}
	fmt.Printf("%s: %d layers of [%d,%d], %d MB of weights\n", out, layers, d, d, layers*4*d*d>>20)
	return nil
}
