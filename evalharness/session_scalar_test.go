package evalharness

import (
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

// onnxruntime_go cannot wrap 0-d outputs and leaves typed nils behind;
// Run must report that as an error (or succeed), never panic.
func TestScalarOutputIsAnErrorNotAPanic(t *testing.T) {
	if err := Init(""); err != nil {
		t.Skip(err)
	}
	m := onnxio.New("g", 17)
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 3}}})
	if err := m.InsertNodes(onnxio.Node{Name: "r", OpType: "ReduceSum", Inputs: []string{"x"}, Outputs: []string{"y"}, Attrs: []onnxio.Attr{onnxio.AttrInt("keepdims", 0)}}); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float, Shape: []onnxio.Dim{}})
	b, _ := m.Bytes()
	s, err := NewSession(b, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.Run(map[string]*Array{"x": FromFloat32([]int64{3}, []float32{1, 2, 3})})
	t.Logf("out=%v err=%v", out, err)
	if err == nil && (len(out) != 1 || len(out[0].Data) != 4) {
		t.Fatal("bad scalar output")
	}
}
