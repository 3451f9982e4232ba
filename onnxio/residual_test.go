package onnxio

import (
	"slices"
	"testing"
)

// TestResidualAdds: an Add whose input reaches its other input is
// residual (skip produced by a node, or a graph input); an Add of a bias
// initializer or of two unrelated values is not.
func TestResidualAdds(t *testing.T) {
	m := New("g", 17)
	for _, name := range []string{"W", "V", "b"} {
		wt, err := FromFloat32(name, Float, []int64{1}, []float32{1})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetInitializer(wt); err != nil {
			t.Fatal(err)
		}
	}
	m.AddInput(ValueInfo{Name: "x", DType: Float, Shape: []Dim{{Value: 1}}})
	m.AddInput(ValueInfo{Name: "z", DType: Float, Shape: []Dim{{Value: 1}}})
	m.AddOutput(ValueInfo{Name: "out", DType: Float, Shape: []Dim{{Value: 1}}})
	if err := m.InsertNodes(
		Node{Name: "mm0", OpType: "Mul", Inputs: []string{"x", "W"}, Outputs: []string{"h"}},
		Node{Name: "res0", OpType: "Add", Inputs: []string{"x", "h"}, Outputs: []string{"r0"}}, // skip: graph input x
		Node{Name: "mm1", OpType: "Mul", Inputs: []string{"r0", "V"}, Outputs: []string{"g"}},
		Node{Name: "res1", OpType: "Add", Inputs: []string{"g", "r0"}, Outputs: []string{"r1"}},   // skip r0, second input
		Node{Name: "bias", OpType: "Add", Inputs: []string{"r1", "b"}, Outputs: []string{"r2"}},   // bias: not residual
		Node{Name: "other", OpType: "Add", Inputs: []string{"r2", "z"}, Outputs: []string{"out"}}, // z reaches nothing
	); err != nil {
		t.Fatal(err)
	}
	got := m.ResidualAdds()
	want := []ResidualAdd{
		{Node: 1, Skip: "x", Branch: "h", Path: []int{0}},
		{Node: 3, Skip: "r0", Branch: "g", Path: []int{2}},
	}
	if len(got) != len(want) {
		t.Fatalf("residual Adds %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Node != want[i].Node || got[i].Skip != want[i].Skip || got[i].Branch != want[i].Branch || !slices.Equal(got[i].Path, want[i].Path) {
			t.Errorf("residual Add %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}
