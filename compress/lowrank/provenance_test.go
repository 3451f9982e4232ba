package lowrank

import (
	"context"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

// Apply records the factorization in the model's metadata.
func TestApplyRecordsProvenance(t *testing.T) {
	m := onnxio.New("tiny", 17)
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 1}, {Value: 16}}})
	w := make([]float32, 16*16)
	for i := range w {
		w[i] = float32((i*7)%11) - 5
	}
	tw, _ := onnxio.FromFloat32("W", onnxio.Float, []int64{16, 16}, w)
	if err := m.SetInitializer(tw); err != nil {
		t.Fatal(err)
	}
	if err := m.InsertNodes(onnxio.Node{Name: "fc", OpType: "MatMul", Inputs: []string{"x", "W"}, Outputs: []string{"y"}}); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float})
	rep, err := Apply(context.Background(), m, Options{Rule: Rule{ByRank, 2}, Force: true})
	if err != nil || rep.Factorized != 1 {
		t.Fatalf("factorized %v (%v)", rep, err)
	}
	got := m.Metadata()[MetaLowrank]
	if !strings.Contains(got, "1 layers factorized, 256 → 64 parameters") {
		t.Errorf("metadata %q", got)
	}
}
