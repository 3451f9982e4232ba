package fisher_test

import (
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/fisher"
	"github.com/onnxpost/onnxpost/onnxio"
)

// TestDefaultOutputIsTheFirstFloat: with an int64 copy of an input as the
// first output, the Fisher is taken on the logits, not the copy.
func TestDefaultOutputIsTheFirstFloat(t *testing.T) {
	requireORT(t)
	m, ds := load(t, "mlp")
	logits := m.Outputs()[0].Name
	batch := onnxio.Dim{Value: -1, Param: "batch"}
	if sh := m.Inputs()[0].Shape; len(sh) > 0 && sh[0].Param != "" {
		batch = sh[0]
	}
	m.AddInput(onnxio.ValueInfo{Name: "ids", DType: onnxio.Int64, Shape: []onnxio.Dim{batch, {Value: 1}}})
	if err := m.InsertNodes(onnxio.Node{Name: "ids_copy_node", OpType: "Identity", Inputs: []string{"ids"}, Outputs: []string{"ids_copy"}}); err != nil {
		t.Fatal(err)
	}
	m.SetOutputs(append([]onnxio.ValueInfo{{Name: "ids_copy", DType: onnxio.Int64, Shape: []onnxio.Dim{batch, {Value: 1}}}}, m.Outputs()...))
	inputs := map[string]*evalharness.Array{"ids": evalharness.FromInt64([]int64{ds.N, 1}, make([]int64, ds.N))}
	for k, a := range ds.Inputs {
		inputs[k] = a.Slice(0, 4)
	}
	inputs["ids"] = inputs["ids"].Slice(0, 4)
	small, err := evalharness.NewDataset(inputs, nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := fisher.Build(m, small, fisher.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if g.Output != logits {
		t.Errorf("Fisher output %q, want %q (the first float output)", g.Output, logits)
	}
}
