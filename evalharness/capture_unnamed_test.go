package evalharness

import (
	"context"
	"math"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

// Exported graphs may leave nodes unnamed: the Gram of a weight must still
// come from its own consumer's input. Two unnamed MatMuls read different
// inputs (x and relu(x)·0.5 shifted), so a mix-up shows.
func TestCaptureUnnamedNodes(t *testing.T) {
	if err := Init(""); err != nil {
		t.Skipf("ONNX Runtime not available (run `make ort`): %v", err)
	}
	m := onnxio.New("g", 17)
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "n"}, {Value: 2}}})
	w1, _ := onnxio.FromFloat32("w1", onnxio.Float, []int64{2, 2}, []float32{1, 0, 0, 1})
	w2, _ := onnxio.FromFloat32("w2", onnxio.Float, []int64{2, 2}, []float32{1, 2, 3, 4})
	c, _ := onnxio.FromFloat32("c", onnxio.Float, []int64{2}, []float32{10, -3})
	for _, tt := range []*onnxio.Tensor{w1, w2, c} {
		if err := m.SetInitializer(tt); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.InsertNodes(
		onnxio.Node{OpType: "MatMul", Inputs: []string{"x", "w1"}, Outputs: []string{"h"}},
		onnxio.Node{OpType: "Add", Inputs: []string{"h", "c"}, Outputs: []string{"h2"}},
		onnxio.Node{OpType: "MatMul", Inputs: []string{"h2", "w2"}, Outputs: []string{"y"}},
	); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float})
	x := []float32{1, 2, 3, 4, 5, 6}
	ds, err := NewDataset(map[string]*Array{"x": FromFloat32([]int64{3, 2}, x)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Capture(context.Background(), m, ds, CaptureOptions{Grams: []string{"w1", "w2"}})
	if err != nil {
		t.Fatal(err)
	}
	gram := func(rows [][2]float64) []float64 {
		g := make([]float64, 4)
		for _, r := range rows {
			for i := 0; i < 2; i++ {
				for j := 0; j < 2; j++ {
					g[2*i+j] += r[i] * r[j]
				}
			}
		}
		return g
	}
	want := map[string][]float64{
		"w1": gram([][2]float64{{1, 2}, {3, 4}, {5, 6}}),
		"w2": gram([][2]float64{{11, -1}, {13, 1}, {15, 3}}),
	}
	for name, w := range want {
		g, d, n, err := st.InputGram(name)
		if err != nil {
			t.Fatal(err)
		}
		if d != 2 || n != 3 {
			t.Fatalf("%s: d=%d n=%d", name, d, n)
		}
		for i := range w {
			if math.Abs(g[i]-w[i]) > 1e-9 {
				t.Fatalf("%s: Gram %v, want %v", name, g, w)
			}
		}
	}
}
