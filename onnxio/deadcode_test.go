package onnxio

import (
	"strings"
	"testing"
)

// TestEliminateDeadCode: nodes that reach no graph output and the
// initializers only they read go; the rest stays in order; a model with a
// subgraph-holding node is refused.
func TestEliminateDeadCode(t *testing.T) {
	m := New("t", 17)
	m.AddInput(ValueInfo{Name: "x", DType: Float, Shape: []Dim{{Value: 2}}})
	for _, name := range []string{"live_w", "dead_w"} {
		w, err := FromFloat32(name, Float, []int64{2}, []float32{1, 2})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetInitializer(w); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.InsertNodes(
		Node{Name: "live", OpType: "Add", Inputs: []string{"x", "live_w"}, Outputs: []string{"y"}},
		Node{Name: "dead1", OpType: "Mul", Inputs: []string{"x", "dead_w"}, Outputs: []string{"d1"}},
		Node{Name: "dead2", OpType: "Relu", Inputs: []string{"d1"}, Outputs: []string{"d2"}},
		Node{Name: "live2", OpType: "Relu", Inputs: []string{"y"}, Outputs: []string{"z"}},
	); err != nil {
		t.Fatal(err)
	}
	m.SetOutputs([]ValueInfo{{Name: "z", DType: Float}})
	if err := m.EliminateDeadCode(); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range m.Nodes() {
		names = append(names, n.Name)
	}
	if got := strings.Join(names, ","); got != "live,live2" {
		t.Fatalf("nodes %s, want live,live2", got)
	}
	if got := strings.Join(m.Initializers(), ","); got != "live_w" {
		t.Fatalf("initializers %s, want live_w", got)
	}
	if err := m.InsertNodes(Node{Name: "loop", OpType: "Loop", Inputs: []string{"", ""}, Outputs: []string{"l"}}); err != nil {
		t.Fatal(err)
	}
	if err := m.EliminateDeadCode(); err == nil || !strings.Contains(err.Error(), `node "loop" has a subgraph`) {
		t.Fatalf("error %v, want the Loop refused", err)
	}
}
