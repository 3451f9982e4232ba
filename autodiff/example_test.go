package autodiff_test

import (
	"fmt"

	"github.com/onnxpost/onnxpost/autodiff"
	"github.com/onnxpost/onnxpost/onnxio"
)

// Gradients of Σ seed⊙(x·W + b) with respect to W and b: the result is an
// ONNX model that any runtime evaluates.
func ExampleGradients() {
	m := onnxio.New("linear", 17)
	w, _ := onnxio.FromFloat32("W", onnxio.Float, []int64{3, 2}, []float32{1, 2, 3, 4, 5, 6})
	b, _ := onnxio.FromFloat32("b", onnxio.Float, []int64{2}, []float32{0.5, -0.5})
	_ = m.SetInitializer(w)
	_ = m.SetInitializer(b)
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "batch"}, {Value: 3}}})
	_ = m.InsertNodes(
		onnxio.Node{Name: "mm", OpType: "MatMul", Inputs: []string{"x", "W"}, Outputs: []string{"xw"}},
		onnxio.Node{Name: "add", OpType: "Add", Inputs: []string{"xw", "b"}, Outputs: []string{"y"}},
	)
	m.SetOutputs([]onnxio.ValueInfo{{Name: "y", DType: onnxio.Float}})
	// Ranks and dtypes, as a probe run (ProbeModel, ProbeInfo) would report.
	info := map[string]autodiff.Info{
		"x":  {DType: onnxio.Float, Shape: []int64{1, 3}},
		"xw": {DType: onnxio.Float, Shape: []int64{1, 2}},
		"y":  {DType: onnxio.Float, Shape: []int64{1, 2}},
	}
	g, outs, err := autodiff.Gradients(m, "y", "seed", []string{"W", "b"}, autodiff.Options{Info: info})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, in := range g.Inputs() {
		fmt.Println("input", in.Name)
	}
	fmt.Println("outputs", outs)
	// Output:
	// input x
	// input seed
	// outputs [grad/W grad/b]
}
