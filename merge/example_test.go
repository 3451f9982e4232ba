package merge_test

import (
	"context"
	"fmt"

	"github.com/onnxpost/onnxpost/merge"
	"github.com/onnxpost/onnxpost/onnxio"
)

// A TIES merge of two task vectors on plain slices.
func ExampleTIESTo() {
	base := []float32{0, 0, 0, 0}
	a := []float32{1, -2, 0.1, 3}
	b := []float32{2, 1, -0.1, -1}
	// per-model thresholds: keep |τ| ≥ 0.5
	dst := make([]float32, 4)
	merge.TIESTo(dst, base, [][]float32{a, b}, []float64{1, 1}, []float64{0.5, 0.5}, 1)
	fmt.Println(dst)
	// Output: [1.5 -2 0 3]
}

// Merging two in-memory models with task arithmetic.
func ExampleNew() {
	// a one-weight model: y = x · W
	model := func(w ...float32) *onnxio.Model {
		m := onnxio.New("tiny", 17)
		m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 1}, {Value: 2}}})
		t, _ := onnxio.FromFloat32("W", onnxio.Float, []int64{2, 1}, w)
		m.SetInitializer(t)
		m.InsertNodes(onnxio.Node{Name: "mm", OpType: "MatMul", Inputs: []string{"x", "W"}, Outputs: []string{"y"}})
		m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float})
		return m
	}
	base, a, b := model(1, 1), model(2, 1), model(1, 3)
	lambda := 0.5
	mg, err := merge.New(context.Background(),
		merge.Inputs{Base: base, Models: []*onnxio.Model{a, b}},
		merge.Options{Method: merge.TaskArithmetic, Lambda: &lambda}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	out, err := mg.Model(context.Background(), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	w, _ := out.Initializer("W")
	v, _ := w.Float32()
	fmt.Println(v)
	// Output: [1.5 2]
}
