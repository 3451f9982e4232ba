package onnxio

import "testing"

func TestSameGraph(t *testing.T) {
	build := func(name string, w float32) *Model {
		m := New("g", 17)
		wt, err := FromFloat32("W", Float, []int64{1}, []float32{w})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetInitializer(wt); err != nil {
			t.Fatal(err)
		}
		m.AddInput(ValueInfo{Name: "x", DType: Float, Shape: []Dim{{Value: 1}}})
		m.AddOutput(ValueInfo{Name: "y", DType: Float, Shape: []Dim{{Value: 1}}})
		if err := m.InsertNodes(Node{Name: name, OpType: "Mul", Inputs: []string{"x", "W"}, Outputs: []string{"y"}}); err != nil {
			t.Fatal(err)
		}
		return m
	}
	a := build("", 1)
	named := a.Clone()
	named.EnsureNodeNames()
	meta := a.Clone()
	meta.SetMetadata("k", "v")
	opset := a.Clone()
	opset.SetOpset("", 18)
	for _, tc := range []struct {
		name string
		b    *Model
		want bool
	}{
		{"itself", a.Clone(), true},
		{"names given to unnamed nodes", named, true},
		{"metadata", meta, true},
		{"other weight", build("", 2), false},
		{"other weight and name", build("n", 2).withName(t, "m"), false},
		{"opset", opset, false},
	} {
		if got := a.SameGraph(tc.b); got != tc.want {
			t.Errorf("%s: SameGraph %v, want %v", tc.name, got, tc.want)
		}
	}
	if build("n", 1).SameGraph(build("m", 1)) {
		t.Error("two different names compare equal")
	}
}

// withName renames the model's only node (a test helper).
func (m *Model) withName(t *testing.T, name string) *Model {
	t.Helper()
	m.p.Graph.Node[0].Name = &name
	return m
}
