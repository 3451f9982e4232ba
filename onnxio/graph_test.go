package onnxio

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/onnxpost/onnxpost/onnxio/internal/onnxpb"
)

// nodeList renders the main graph's nodes, one a line:
// "name: Op(in, ...) -> out, ...".
func nodeList(m *Model) string {
	var b strings.Builder
	for _, n := range m.Nodes() {
		fmt.Fprintf(&b, "%s: %s(%s) -> %s\n", n.Name, n.OpType, strings.Join(n.Inputs, ", "), strings.Join(n.Outputs, ", "))
	}
	return b.String()
}

// checkTopo fails the test if a node reads a value produced only later.
func checkTopo(t *testing.T, m *Model) {
	t.Helper()
	avail := map[string]bool{"": true}
	for _, name := range m.Initializers() {
		avail[name] = true
	}
	for _, v := range m.p.Graph.Input {
		avail[v.GetName()] = true
	}
	for _, n := range m.Nodes() {
		for _, in := range n.Inputs {
			if !avail[in] {
				t.Errorf("node %s reads %q before it is produced", n.Name, in)
			}
		}
		for _, o := range n.Outputs {
			avail[o] = true
		}
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s--- want\n%s", name, got, want)
	}
}

// TestReplaceNodeGolden rewrites MatMul X·W1 as the low-rank X·U·V, giving
// the two new nodes in the wrong order: ReplaceNode must sort them.
func TestReplaceNodeGolden(t *testing.T) {
	m := kitchenSink(t, fixtureOpts{})
	u, _ := FromFloat32("W1_U", Float, []int64{8, 2}, make([]float32, 16))
	v, _ := FromFloat32("W1_V", Float, []int64{2, 16}, make([]float32, 32))
	m.SetInitializer(u)
	m.SetInitializer(v)
	err := m.ReplaceNode("mm1", []Node{
		{Name: "mm1_v", OpType: "MatMul", Inputs: []string{"h1_lr", "W1_V"}, Outputs: []string{"h1"}},
		{Name: "mm1_u", OpType: "MatMul", Inputs: []string{"X", "W1_U"}, Outputs: []string{"h1_lr"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveInitializer("W1"); err != nil {
		t.Fatal(err)
	}
	checkTopo(t, m)
	golden(t, "rewrite_lowrank.golden", nodeList(m))
	ws, _ := m.WeightMap()
	if ws["W1_U"].Role != RoleMatMulB || ws["W1_V"].Role != RoleMatMulB || ws["b1"].Role != RoleBias {
		t.Errorf("roles after the rewrite: %+v %+v %+v", ws["W1_U"], ws["W1_V"], ws["b1"])
	}
	// the rewritten model survives a save and reload
	dir := t.TempDir()
	if err := m.Save(filepath.Join(dir, "m.onnx"), nil); err != nil {
		t.Fatal(err)
	}
	back, err := Load(filepath.Join(dir, "m.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if nodeList(back) != nodeList(m) || !m.Equal(back) {
		t.Error("the rewritten model changed through Save/Load")
	}
}

func TestReplaceNodeErrorsLeaveTheGraph(t *testing.T) {
	cases := []struct {
		name   string
		target string
		repl   []Node
		want   error
	}{
		{"unknown node", "nope", nil, ErrNotFound},
		{"empty name", "", nil, ErrNotFound},
		{"dangling input", "add1", []Node{{Name: "a", OpType: "Add", Inputs: []string{"h1", "missing"}, Outputs: []string{"h2"}}}, ErrFormat},
		{"cycle", "add1", []Node{
			{Name: "a", OpType: "Add", Inputs: []string{"h1", "loop_b"}, Outputs: []string{"loop_a"}},
			{Name: "b", OpType: "Relu", Inputs: []string{"loop_a"}, Outputs: []string{"loop_b"}},
			{Name: "c", OpType: "Identity", Inputs: []string{"loop_b"}, Outputs: []string{"h2"}},
		}, ErrFormat},
		{"attribute without data", "add1", []Node{{Name: "a", OpType: "Constant", Outputs: []string{"h2"}, Attrs: []Attr{{Name: "value", Type: KindTensor}}}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := kitchenSink(t, fixtureOpts{})
			before := m.Clone()
			err := m.ReplaceNode(c.target, c.repl)
			if err == nil {
				t.Fatal("no error")
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if !m.Equal(before) {
				t.Error("a failed ReplaceNode changed the model")
			}
		})
	}
}

func TestUpdateAndRemoveNode(t *testing.T) {
	m := kitchenSink(t, fixtureOpts{})
	n, err := m.Node("gemm_n")
	if err != nil {
		t.Fatal(err)
	}
	n.SetAttr(AttrInt("transB", 1))
	n.SetAttr(AttrFloatVal("alpha", 0.5))
	if err := m.UpdateNode(n); err != nil {
		t.Fatal(err)
	}
	got, _ := m.Node("gemm_n")
	if got.Int("transB", 0) != 1 || got.Float("alpha", 1) != 0.5 {
		t.Errorf("attributes not updated: %+v", got.Attrs)
	}
	ws, _ := m.WeightMap()
	if w := ws["W3"]; !w.TransB || w.OutAxis != 0 || w.InAxis != 1 {
		t.Errorf("W3 after transB=1: %+v", w)
	}
	// nodes returned by Nodes are copies
	ns := m.Nodes()
	ns[0].OpType = "Changed"
	if m.Nodes()[0].OpType == "Changed" {
		t.Error("editing a Node from Nodes changed the model")
	}
	m.RenameInput("h9", "h8")
	if err := m.RemoveNode("mm_dq"); err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveNode("dq"); err != nil {
		t.Fatal(err)
	}
	checkTopo(t, m)
	if _, err := m.Node("dq"); !errors.Is(err, ErrNotFound) {
		t.Errorf("removed node still found: %v", err)
	}
	if err := m.TopoSort(); err != nil {
		t.Error(err)
	}
}

func TestEnsureNodeNames(t *testing.T) {
	m := New("names", 21)
	m.AddInput(ValueInfo{Name: "x", DType: Float})
	err := m.InsertNodes(
		Node{OpType: "Relu", Inputs: []string{"x"}, Outputs: []string{"a"}},
		Node{Name: "dup", OpType: "Relu", Inputs: []string{"a"}, Outputs: []string{"b"}},
		Node{Name: "dup", OpType: "Relu", Inputs: []string{"b"}, Outputs: []string{"c"}},
		Node{Name: "Relu_0", OpType: "Relu", Inputs: []string{"c"}, Outputs: []string{"d"}}, // takes the name node 0 would get
		Node{OpType: "Relu", Inputs: []string{"d"}, Outputs: []string{"e"}},
	)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Node("dup"); err == nil {
		t.Error("Node found a duplicated name")
	}
	if got := m.EnsureNodeNames(); got != 3 {
		t.Errorf("renamed %d, want 3", got)
	}
	golden(t, "ensure_names.golden", nodeList(m))
	seen := map[string]bool{}
	for _, n := range m.Nodes() {
		if n.Name == "" || seen[n.Name] {
			t.Errorf("name %q empty or repeated", n.Name)
		}
		seen[n.Name] = true
	}
	if got := m.EnsureNodeNames(); got != 0 {
		t.Errorf("second call renamed %d", got)
	}
	if got := m.UniqueName("dup"); got != "dup_1" && seen[got] {
		t.Errorf("UniqueName gave a used name %q", got)
	}
	if got := m.UniqueName("fresh"); got != "fresh" {
		t.Errorf("UniqueName(fresh) = %q", got)
	}
}

func TestInitializersToInputs(t *testing.T) {
	m := kitchenSink(t, fixtureOpts{})
	orig, _ := m.Initializer("W1")
	origB := append([]byte(nil), orig.Bytes()...)
	if _, err := m.InitializersToInputs([]string{"W1", "nope"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown name: %v", err)
	}
	if !m.HasInitializer("W1") {
		t.Fatal("a failed InitializersToInputs removed an initializer")
	}
	ts, err := m.InitializersToInputs([]string{"W1", "b1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].Name != "W1" || !bytes.Equal(ts[0].Bytes(), origB) {
		t.Fatalf("returned tensors: %v", ts)
	}
	if m.HasInitializer("W1") || m.HasInitializer("b1") {
		t.Error("initializers still present")
	}
	var found int
	for _, in := range m.Inputs() {
		switch in.Name {
		case "W1":
			found++
			if in.DType != Float || len(in.Shape) != 2 || in.Shape[0].Value != 8 || in.Shape[1].Value != 16 {
				t.Errorf("W1 input: %+v", in)
			}
		case "b1":
			found++
		}
	}
	if found != 2 {
		t.Errorf("%d of 2 new inputs found", found)
	}
	if err := m.TopoSort(); err != nil {
		t.Errorf("graph no longer valid: %v", err)
	}
}

func TestFoldConstantWeights(t *testing.T) {
	m := kitchenSink(t, fixtureOpts{})
	var cn Node
	for _, n := range m.Nodes() {
		if n.OpType == "Constant" {
			cn = n
		}
	}
	want, err := m.NodeTensor(cn, "value")
	if err != nil {
		t.Fatal(err)
	}
	wantB := append([]byte(nil), want.Bytes()...)
	nodes := m.NumNodes()
	got, err := m.FoldConstantWeights()
	if err != nil || got != 1 {
		t.Fatalf("folded %d, %v; want 1", got, err)
	}
	if m.NumNodes() != nodes-1 || m.OpCounts()["Constant"] != 0 {
		t.Errorf("Constant node still there")
	}
	tt, err := m.Initializer("cW")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tt.Bytes(), wantB) || !slices.Equal(tt.Shape, []int64{6, 6}) {
		t.Error("folded initializer differs from the Constant's value")
	}
	ws, _ := m.WeightMap()
	if w := ws["cW"]; w.Constant || w.Role != RoleMatMulB {
		t.Errorf("cW after folding: %+v", w)
	}
	checkTopo(t, m)
	if n, _ := m.FoldConstantWeights(); n != 0 {
		t.Errorf("second fold: %d", n)
	}
}

// randomDAG returns nodes of a random DAG over graph input "x", each reading
// one or two earlier values, in a random order when shuffle is set.
func randomDAG(n int, seed int64, shuffle bool) []Node {
	r := rand.New(rand.NewSource(seed))
	nodes := make([]Node, n)
	for i := range nodes {
		in := []string{"x"}
		if i > 0 {
			in = []string{"v" + strconv.Itoa(r.Intn(i))}
			if r.Intn(2) == 0 {
				in = append(in, "v"+strconv.Itoa(r.Intn(i)))
			}
		}
		nodes[i] = Node{Name: "n" + strconv.Itoa(i), OpType: "Add", Inputs: in, Outputs: []string{"v" + strconv.Itoa(i)}}
	}
	if shuffle {
		r.Shuffle(n, func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	}
	return nodes
}

func TestTopoSortProperties(t *testing.T) {
	for seed := int64(0); seed < 20; seed++ {
		m := New("dag", 21)
		m.AddInput(ValueInfo{Name: "x", DType: Float})
		if err := m.InsertNodes(randomDAG(300, seed, true)...); err != nil {
			t.Fatal(err)
		}
		checkTopo(t, m)
		// an already valid order is kept as it is
		before := nodeList(m)
		if err := m.TopoSort(); err != nil {
			t.Fatal(err)
		}
		if nodeList(m) != before {
			t.Fatal("TopoSort changed a valid order")
		}
	}
	// a valid order given to InsertNodes is kept
	m := New("dag", 21)
	m.AddInput(ValueInfo{Name: "x", DType: Float})
	nodes := randomDAG(300, 7, false)
	if err := m.InsertNodes(nodes...); err != nil {
		t.Fatal(err)
	}
	for i, n := range m.Nodes() {
		if n.Name != nodes[i].Name {
			t.Fatalf("node %d is %s, want %s", i, n.Name, nodes[i].Name)
		}
	}
}

// BenchmarkTopoSort50k sorts a 50,000-node graph given in reverse order
// with 25,000 Constant nodes ready at once (as in large exported models).
func BenchmarkTopoSort50k(b *testing.B) {
	m := New("big", 21)
	m.AddInput(ValueInfo{Name: "x", DType: Float})
	var nodes []Node
	prev := "x"
	for i := 0; i < 25000; i++ {
		c := "c" + strconv.Itoa(i)
		out := "v" + strconv.Itoa(i)
		nodes = append(nodes,
			Node{Name: "const" + strconv.Itoa(i), OpType: "Constant", Outputs: []string{c}},
			Node{Name: "add" + strconv.Itoa(i), OpType: "Add", Inputs: []string{prev, c}, Outputs: []string{out}})
		prev = out
	}
	for i, j := 0, len(nodes)-1; i < j; i, j = i+1, j-1 {
		nodes[i], nodes[j] = nodes[j], nodes[i]
	}
	ps := make([]*pb.NodeProto, len(nodes))
	for i := range nodes {
		ps[i], _ = nodes[i].toProto()
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m.p.Graph.Node = append(m.p.Graph.Node[:0], ps...)
		if err := m.TopoSort(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestUpdateNodeKeepsNodeExtras(t *testing.T) {
	m := kitchenSink(t, fixtureOpts{})
	raw := m.p.Graph.Node[0]
	raw.MetadataProps = []*pb.StringStringEntryProto{{Key: proto.String("k"), Value: proto.String("v")}}
	raw.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 9001, protowire.VarintType), 7))
	n, _ := m.Node(raw.GetName())
	n.SetAttr(AttrStr("note", "x"))
	if err := m.UpdateNode(n); err != nil {
		t.Fatal(err)
	}
	got := m.p.Graph.Node[0]
	if got.GetName() != raw.GetName() || len(got.MetadataProps) != 1 || len(got.ProtoReflect().GetUnknown()) == 0 {
		t.Errorf("UpdateNode lost the node's metadata or unknown fields: %v", got)
	}
}
