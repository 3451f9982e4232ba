package onnxio_test

import (
	"fmt"
	"log"
	"os"

	"github.com/onnxpost/onnxpost/onnxio"
)

// WithInitializers returns a new model with a tensor replaced; the original
// is unchanged and the two share every other tensor.
func ExampleModel_WithInitializers() {
	m, err := onnxio.LoadFS(os.DirFS("testdata"), "kitchen.onnx")
	if err != nil {
		log.Fatal(err)
	}
	zero, err := onnxio.FromFloat32("b1", onnxio.Float, []int64{16}, make([]float32, 16))
	if err != nil {
		log.Fatal(err)
	}
	d, err := m.WithInitializers(zero)
	if err != nil {
		log.Fatal(err)
	}
	before, _ := m.Initializer("b1")
	after, _ := d.Initializer("b1")
	fmt.Println("original b1 zeros:", before.ZeroFraction(), "derived b1 zeros:", after.ZeroFraction())
	// Output:
	// original b1 zeros: 0 derived b1 zeros: 1
}

// EliminateDeadCode removes what no graph output needs.
func ExampleModel_WithoutDeadCode() {
	m, err := onnxio.Load("testdata/kitchen.onnx")
	if err != nil {
		log.Fatal(err)
	}
	// keep only output Y: the embedding and convolution branches die
	d := m.Derive()
	d.SetOutputs(m.Outputs()[:1])
	d, gone := d.WithoutDeadCode()
	fmt.Println("nodes", m.NumNodes(), "→", d.NumNodes(), "removed", gone.Nodes)
	// Output:
	// nodes 19 → 15 removed [gather conv bn convt]
}
