package sparsity

import (
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

// TestRowActivation checks which captured tensors may lose rows (padded
// token positions): the data input of MatMul and of Gemm without transA,
// not of a Conv or a transposed Gemm, and not a tensor no node reads.
func TestRowActivation(t *testing.T) {
	m := onnxio.New("g", 17)
	for _, in := range []string{"a", "b", "c", "d", "w1", "w2", "w3", "w4", "w5"} {
		m.AddInput(onnxio.ValueInfo{Name: in, DType: onnxio.Float})
	}
	err := m.InsertNodes(
		onnxio.Node{Name: "mm", OpType: "MatMul", Inputs: []string{"a", "w1"}, Outputs: []string{"y1"}},
		onnxio.Node{Name: "gemm", OpType: "Gemm", Inputs: []string{"a", "w2"}, Outputs: []string{"y2"}},
		onnxio.Node{Name: "gemmT", OpType: "Gemm", Inputs: []string{"b", "w3"}, Outputs: []string{"y3"}, Attrs: []onnxio.Attr{onnxio.AttrInt("transA", 1)}},
		onnxio.Node{Name: "conv", OpType: "Conv", Inputs: []string{"c", "w4"}, Outputs: []string{"y4"}},
		onnxio.Node{Name: "mm2", OpType: "MatMul", Inputs: []string{"c", "w5"}, Outputs: []string{"y5"}},
	)
	if err != nil {
		t.Fatal(err)
	}
	for tensor, want := range map[string]bool{"a": true, "b": false, "c": false, "d": false} {
		if got := RowActivation(m, tensor); got != want {
			t.Errorf("RowActivation(%q) = %v, want %v", tensor, got, want)
		}
	}
}
