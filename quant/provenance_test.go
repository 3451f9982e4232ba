package quant

import (
	"context"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

// Quantize records its scheme in the output's metadata, not in its input's.
func TestQuantizeRecordsProvenance(t *testing.T) {
	m := onnxio.New("tiny", 17)
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 1}, {Value: 4}}})
	w, _ := onnxio.FromFloat32("W", onnxio.Float, []int64{4, 2}, []float32{1, -2, 3, 4, -5, 6, 7, -8})
	if err := m.SetInitializer(w); err != nil {
		t.Fatal(err)
	}
	if err := m.InsertNodes(onnxio.Node{Name: "fc", OpType: "MatMul", Inputs: []string{"x", "W"}, Outputs: []string{"y"}}); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float})
	q, _, err := Quantize(context.Background(), m, Options{Weights: "int8"})
	if err != nil {
		t.Fatal(err)
	}
	if got := q.Metadata()[MetaQuant]; got != "int8 per-channel symmetric qdq, 1 weights" {
		t.Errorf("metadata %q", got)
	}
	if _, ok := m.Metadata()[MetaQuant]; ok {
		t.Error("the input model's metadata was changed")
	}
}
