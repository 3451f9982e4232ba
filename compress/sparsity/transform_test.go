package sparsity

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/transform"
)

// The magnitude transform prunes the weights an If's branches hold, as the
// sparsify command does: half of all 768 weights of the fixture, not only
// the 256 of the main graph.
func TestMagnitudeTransformPrunesSubgraphWeights(t *testing.T) {
	m, err := onnxio.Load(filepath.Join("..", "..", "onnxio", "testdata", "weights", "if.onnx"))
	if err != nil {
		t.Skipf("fixture: %v", err)
	}
	tr, args, err := Command.Check(map[string]any{"sparsity": 0.5})
	if err != nil {
		t.Fatal(err)
	}
	_, rep, err := tr.Run(context.Background(), transform.Input{Models: []*onnxio.Model{m}, Args: args})
	if err != nil {
		t.Fatal(err)
	}
	if r := rep.(Report); r.Zeros != 384 || r.Params != 768 {
		t.Errorf("%d of %d weights zero, want 384 of 768", r.Zeros, r.Params)
	}
}
