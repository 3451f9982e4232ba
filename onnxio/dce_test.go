package onnxio

import (
	"fmt"
	"strings"
	"testing"
)

// dceState renders what EliminateDeadCode decides about: nodes,
// initializers, graph inputs and value_info.
func dceState(m *Model, e Eliminated) string {
	var b strings.Builder
	b.WriteString(nodeList(m))
	fmt.Fprintf(&b, "initializers: %s\n", strings.Join(m.Initializers(), ", "))
	var ins, infos []string
	for _, v := range m.p.Graph.Input {
		ins = append(ins, v.GetName())
	}
	for _, v := range m.p.Graph.ValueInfo {
		infos = append(infos, v.GetName())
	}
	fmt.Fprintf(&b, "inputs: %s\nvalue_info: %s\n", strings.Join(ins, ", "), strings.Join(infos, ", "))
	fmt.Fprintf(&b, "removed nodes: %s\nremoved initializers: %s\n", strings.Join(e.Nodes, ", "), strings.Join(e.Initializers, ", "))
	return b.String()
}

// deadIfModel is if.onnx (its If branches read h and Wo from the main
// graph) with dead code added: a dead chain, a dead copy of the If, an
// initializer only a dead node reads, one nothing reads, an unread
// initializer that is also a graph input, and an initializer that is a
// graph output.
func deadIfModel(t *testing.T) *Model {
	t.Helper()
	m := loadWeightsFixture(t, "if.onnx")
	f := func(name string, n int) {
		w, _ := FromFloat32(name, Float, []int64{int64(n)}, make([]float32, n))
		if err := m.SetInitializer(w); err != nil {
			t.Fatal(err)
		}
	}
	f("D", 16)
	f("U", 2)
	f("G", 3)
	f("Out", 4)
	m.AddInput(ValueInfo{Name: "G", DType: Float, Shape: []Dim{{Value: 3}}})
	m.AddOutput(ValueInfo{Name: "Out", DType: Float})
	iff, err := m.Node("if0")
	if err != nil {
		t.Fatal(err)
	}
	iff.Name, iff.Outputs = "if_dead", []string{"z_dead"}
	if err := m.InsertNodes(
		Node{Name: "dead1", OpType: "Relu", Inputs: []string{"x"}, Outputs: []string{"d1"}},
		Node{Name: "dead2", OpType: "Add", Inputs: []string{"d1", "D"}, Outputs: []string{"d2"}},
		Node{Name: "dead_wo", OpType: "Relu", Inputs: []string{"Wo"}, Outputs: []string{"d3"}},
		iff,
	); err != nil {
		t.Fatal(err)
	}
	m.p.Graph.ValueInfo = append(m.p.Graph.ValueInfo, valueInfoProto(ValueInfo{Name: "d2", DType: Float}), valueInfoProto(ValueInfo{Name: "h", DType: Float}))
	return m
}

// TestEliminateDeadCodeGolden: dead nodes and the initializers only they
// read go; values read only inside If branches or a Loop body stay.
func TestEliminateDeadCodeGolden(t *testing.T) {
	m := deadIfModel(t)
	e := m.EliminateDeadCode()
	got := "# if.onnx with dead code\n" + dceState(m, e)
	checkTopo(t, m)
	if again := m.EliminateDeadCode(); len(again.Nodes)+len(again.Initializers) > 0 {
		t.Errorf("a second pass removed %+v", again)
	}

	l := loadWeightsFixture(t, "loop.onnx")
	if err := l.InsertNodes(Node{Name: "dead", OpType: "Relu", Inputs: []string{"x"}, Outputs: []string{"d"}}); err != nil {
		t.Fatal(err)
	}
	got += "# loop.onnx with a dead node\n" + dceState(l, l.EliminateDeadCode())
	golden(t, "dce.golden", got)
}

// TestEliminateDeadCodeAnyOrder: the result does not depend on the graph's
// node order.
func TestEliminateDeadCodeAnyOrder(t *testing.T) {
	want := deadIfModel(t)
	want.EliminateDeadCode()
	m := deadIfModel(t)
	nodes := m.p.Graph.Node
	for i, j := 0, len(nodes)-1; i < j; i, j = i+1, j-1 {
		nodes[i], nodes[j] = nodes[j], nodes[i]
	}
	m.EliminateDeadCode()
	if err := m.TopoSort(); err != nil {
		t.Fatal(err)
	}
	if nodeList(m) != nodeList(want) || strings.Join(m.Initializers(), ",") != strings.Join(want.Initializers(), ",") {
		t.Fatalf("reversed graph:\n%s\nwant\n%s", nodeList(m), nodeList(want))
	}
}

// TestWithoutDeadCode: the derived form leaves its input as it was.
func TestWithoutDeadCode(t *testing.T) {
	m := deadIfModel(t)
	before := mustBytes(t, m)
	d, e := m.WithoutDeadCode()
	if len(e.Nodes) == 0 || d.NumNodes() >= m.NumNodes() {
		t.Fatalf("nothing removed: %+v", e)
	}
	if string(mustBytes(t, m)) != string(before) {
		t.Fatal("WithoutDeadCode changed its input")
	}
}
