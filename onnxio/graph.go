package onnxio

import (
	"fmt"
	"slices"
	"strconv"

	"google.golang.org/protobuf/proto"

	pb "github.com/onnxpost/onnxpost/onnxio/internal/onnxpb"
)

// AttrType is the type of a node attribute.
type AttrType int

// Attribute types (subgraph attributes are kept on unchanged nodes but not
// exposed).
const (
	KindUndefined AttrType = iota
	KindFloat
	KindInt
	KindString
	KindTensor
	KindFloats
	KindInts
	KindStrings
	KindOther
)

// Attr is a node attribute.
type Attr struct {
	Name    string
	Type    AttrType
	F       float32
	I       int64
	S       string
	T       *Tensor
	Floats  []float32
	Ints    []int64
	Strings []string
}

// AttrInt returns an integer attribute.
func AttrInt(name string, v int64) Attr { return Attr{Name: name, Type: KindInt, I: v} }

// AttrIntList returns an integer-list attribute.
func AttrIntList(name string, v ...int64) Attr { return Attr{Name: name, Type: KindInts, Ints: v} }

// AttrFloatVal returns a float attribute.
func AttrFloatVal(name string, v float32) Attr { return Attr{Name: name, Type: KindFloat, F: v} }

// AttrFloatList returns a float-list attribute.
func AttrFloatList(name string, v ...float32) Attr {
	return Attr{Name: name, Type: KindFloats, Floats: v}
}

// AttrStr returns a string attribute.
func AttrStr(name, v string) Attr { return Attr{Name: name, Type: KindString, S: v} }

// AttrTensorVal returns a tensor attribute (e.g. Constant's value).
func AttrTensorVal(name string, t *Tensor) Attr { return Attr{Name: name, Type: KindTensor, T: t} }

// Node is a graph node. Nodes returned by Model.Nodes are copies: editing
// them does not change the model; use ReplaceNode, InsertNodes, ...
type Node struct {
	Name    string
	OpType  string
	Domain  string
	Inputs  []string
	Outputs []string
	Attrs   []Attr
	raw     *pb.NodeProto // the original, reused when the node is unchanged
}

// Attr returns the attribute called name.
func (n *Node) Attr(name string) (Attr, bool) {
	for _, a := range n.Attrs {
		if a.Name == name {
			return a, true
		}
	}
	return Attr{}, false
}

// Int returns an integer attribute or def when absent.
func (n *Node) Int(name string, def int64) int64 {
	if a, ok := n.Attr(name); ok && a.Type == KindInt {
		return a.I
	}
	return def
}

// Float returns a float attribute or def when absent.
func (n *Node) Float(name string, def float32) float32 {
	if a, ok := n.Attr(name); ok && a.Type == KindFloat {
		return a.F
	}
	return def
}

// Str returns a string attribute or def when absent.
func (n *Node) Str(name, def string) string {
	if a, ok := n.Attr(name); ok && a.Type == KindString {
		return a.S
	}
	return def
}

// Ints returns an integer-list attribute (nil when absent).
func (n *Node) Ints(name string) []int64 {
	if a, ok := n.Attr(name); ok && a.Type == KindInts {
		return a.Ints
	}
	return nil
}

// SetAttr sets or replaces an attribute.
func (n *Node) SetAttr(a Attr) {
	for i := range n.Attrs {
		if n.Attrs[i].Name == a.Name {
			n.Attrs[i] = a
			return
		}
	}
	n.Attrs = append(n.Attrs, a)
}

// Input returns input i or "" when absent (optional inputs).
func (n *Node) Input(i int) string {
	if i < len(n.Inputs) {
		return n.Inputs[i]
	}
	return ""
}

func nodeFromProto(p *pb.NodeProto) Node {
	n := Node{
		Name: p.GetName(), OpType: p.GetOpType(), Domain: p.GetDomain(),
		Inputs: append([]string{}, p.Input...), Outputs: append([]string{}, p.Output...),
		raw: p,
	}
	for _, a := range p.Attribute {
		at := Attr{Name: a.GetName()}
		switch a.GetType() {
		case pb.AttributeProto_FLOAT:
			at.Type, at.F = KindFloat, a.GetF()
		case pb.AttributeProto_INT:
			at.Type, at.I = KindInt, a.GetI()
		case pb.AttributeProto_STRING:
			at.Type, at.S = KindString, string(a.GetS())
		case pb.AttributeProto_FLOATS:
			at.Type, at.Floats = KindFloats, append([]float32{}, a.Floats...)
		case pb.AttributeProto_INTS:
			at.Type, at.Ints = KindInts, append([]int64{}, a.Ints...)
		case pb.AttributeProto_STRINGS:
			at.Type = KindStrings
			for _, s := range a.Strings {
				at.Strings = append(at.Strings, string(s))
			}
		case pb.AttributeProto_TENSOR:
			at.Type = KindTensor
			if a.T != nil {
				at.T = &Tensor{Name: a.T.GetName(), DType: DType(a.T.GetDataType()), Shape: append([]int64{}, a.T.Dims...)}
			}
		default:
			at.Type = KindOther
		}
		n.Attrs = append(n.Attrs, at)
	}
	return n
}

func (n *Node) toProto() (*pb.NodeProto, error) {
	p := &pb.NodeProto{
		OpType: proto.String(n.OpType),
		Input:  append([]string{}, n.Inputs...),
		Output: append([]string{}, n.Outputs...),
	}
	if n.Name != "" {
		p.Name = proto.String(n.Name)
	}
	if n.Domain != "" {
		p.Domain = proto.String(n.Domain)
	}
	var old map[string]*pb.AttributeProto
	if n.raw != nil {
		old = map[string]*pb.AttributeProto{}
		for _, a := range n.raw.Attribute {
			old[a.GetName()] = a
		}
		p.DocString = n.raw.DocString
		p.MetadataProps = n.raw.MetadataProps
		if n.OpType == n.raw.GetOpType() && n.Domain == n.raw.GetDomain() {
			p.Overload = n.raw.Overload
			if u := n.raw.ProtoReflect().GetUnknown(); len(u) > 0 {
				p.ProtoReflect().SetUnknown(u)
			}
		}
	}
	for _, a := range n.Attrs {
		ap := &pb.AttributeProto{Name: proto.String(a.Name)}
		switch a.Type {
		case KindFloat:
			ap.Type, ap.F = pb.AttributeProto_FLOAT.Enum(), proto.Float32(a.F)
		case KindInt:
			ap.Type, ap.I = pb.AttributeProto_INT.Enum(), proto.Int64(a.I)
		case KindString:
			ap.Type, ap.S = pb.AttributeProto_STRING.Enum(), []byte(a.S)
		case KindFloats:
			ap.Type, ap.Floats = pb.AttributeProto_FLOATS.Enum(), a.Floats
		case KindInts:
			ap.Type, ap.Ints = pb.AttributeProto_INTS.Enum(), a.Ints
		case KindStrings:
			ap.Type = pb.AttributeProto_STRINGS.Enum()
			for _, s := range a.Strings {
				ap.Strings = append(ap.Strings, []byte(s))
			}
		case KindTensor:
			if a.T != nil && (a.T.data != nil || a.T.DType == String) {
				ap.Type, ap.T = pb.AttributeProto_TENSOR.Enum(), tensorProto(a.T)
			} else if o, ok := old[a.Name]; ok {
				ap = o
			} else {
				return nil, fmt.Errorf("node %q: tensor attribute %q has no data", n.Name, a.Name)
			}
		default:
			o, ok := old[a.Name]
			if !ok {
				return nil, fmt.Errorf("node %q: attribute %q of unsupported type", n.Name, a.Name)
			}
			ap = o
		}
		p.Attribute = append(p.Attribute, ap)
	}
	return p, nil
}

// NodeTensor returns the data of a node's tensor attribute (e.g. a Constant
// node's value).
func (m *Model) NodeTensor(n Node, attr string) (*Tensor, error) {
	if n.raw == nil {
		if a, ok := n.Attr(attr); ok && a.T != nil && a.T.data != nil {
			return a.T, nil
		}
		return nil, fmt.Errorf("%w: node %q has no tensor attribute %q", ErrNotFound, n.Name, attr)
	}
	for _, a := range n.raw.Attribute {
		if a.GetName() == attr && a.T != nil {
			return m.tensorFromProto(a.T)
		}
	}
	return nil, fmt.Errorf("%w: node %q has no tensor attribute %q", ErrNotFound, n.Name, attr)
}

// Nodes returns copies of the main graph's nodes in graph order.
func (m *Model) Nodes() []Node {
	ns := m.p.GetGraph().GetNode()
	out := make([]Node, len(ns))
	for i, p := range ns {
		out[i] = nodeFromProto(p)
	}
	return out
}

// NumNodes returns the number of nodes of the main graph.
func (m *Model) NumNodes() int { return len(m.p.GetGraph().GetNode()) }

// OpCounts returns how many nodes of each op type the main graph has
// (domain-qualified for non-default domains: "com.microsoft.MatMulNBits").
func (m *Model) OpCounts() map[string]int {
	out := map[string]int{}
	for _, n := range m.p.GetGraph().GetNode() {
		k := n.GetOpType()
		if d := n.GetDomain(); d != "" && d != "ai.onnx" {
			k = d + "." + k
		}
		out[k]++
	}
	return out
}

func (m *Model) findNode(name string) (int, error) {
	if name == "" {
		return -1, fmt.Errorf("%w: empty node name (call EnsureNodeNames first)", ErrNotFound)
	}
	idx := -1
	for i, n := range m.p.GetGraph().GetNode() {
		if n.GetName() == name {
			if idx >= 0 {
				return -1, fmt.Errorf("node name %q is not unique (call EnsureNodeNames first)", name)
			}
			idx = i
		}
	}
	if idx < 0 {
		return -1, fmt.Errorf("%w: node %q", ErrNotFound, name)
	}
	return idx, nil
}

// Node returns a copy of the node called name.
func (m *Model) Node(name string) (Node, error) {
	i, err := m.findNode(name)
	if err != nil {
		return Node{}, err
	}
	return nodeFromProto(m.p.Graph.Node[i]), nil
}

// EnsureNodeNames gives every unnamed or duplicate-named node of the main
// graph a unique name (OpType_index) and reports how many it renamed.
func (m *Model) EnsureNodeNames() int {
	seen := map[string]bool{}
	for _, n := range m.p.GetGraph().GetNode() {
		if n.GetName() != "" {
			if seen[n.GetName()] {
				continue
			}
			seen[n.GetName()] = true
		}
	}
	used := map[string]bool{}
	renamed := 0
	for i, n := range m.p.GetGraph().GetNode() {
		if n.GetName() != "" && !used[n.GetName()] {
			used[n.GetName()] = true
			continue
		}
		base := n.GetOpType() + "_" + strconv.Itoa(i)
		name := base
		for k := 1; seen[name] || used[name]; k++ {
			name = base + "_" + strconv.Itoa(k)
		}
		c := shallowClone(n) // n may be shared with a derived model
		c.Name = proto.String(name)
		m.p.Graph.Node[i] = c
		used[name] = true
		renamed++
	}
	return renamed
}

// UniqueName returns a name starting with prefix that no value, node or
// initializer of the main graph uses yet.
func (m *Model) UniqueName(prefix string) string {
	used := m.names()
	if !used[prefix] {
		return prefix
	}
	for k := 1; ; k++ {
		s := prefix + "_" + strconv.Itoa(k)
		if !used[s] {
			return s
		}
	}
}

func (m *Model) names() map[string]bool {
	used := map[string]bool{}
	g := m.p.GetGraph()
	for _, n := range g.GetNode() {
		used[n.GetName()] = true
		for _, s := range n.Input {
			used[s] = true
		}
		for _, s := range n.Output {
			used[s] = true
		}
	}
	for _, t := range g.GetInitializer() {
		used[t.GetName()] = true
	}
	for _, v := range g.GetInput() {
		used[v.GetName()] = true
	}
	for _, v := range g.GetOutput() {
		used[v.GetName()] = true
	}
	return used
}

// ReplaceNode replaces the node called name by repl (in that order, at
// its position) and re-sorts the graph topologically. New initializers the
// subgraph needs are added with SetInitializer.
func (m *Model) ReplaceNode(name string, repl []Node) error {
	i, err := m.findNode(name)
	if err != nil {
		return err
	}
	ps := make([]*pb.NodeProto, 0, len(repl))
	for k := range repl {
		p, err := repl[k].toProto()
		if err != nil {
			return err
		}
		ps = append(ps, p)
	}
	g := m.p.Graph
	nodes := append([]*pb.NodeProto{}, g.Node[:i]...)
	nodes = append(nodes, ps...)
	nodes = append(nodes, g.Node[i+1:]...)
	old := g.Node
	g.Node = nodes
	if err := m.TopoSort(); err != nil {
		g.Node = old
		return err
	}
	return nil
}

// UpdateNode replaces the node called n.Name by n (attributes and
// connections as given).
func (m *Model) UpdateNode(n Node) error { return m.ReplaceNode(n.Name, []Node{n}) }

// InsertNodes adds nodes to the main graph and re-sorts it topologically.
func (m *Model) InsertNodes(nodes ...Node) error {
	g := m.p.Graph
	old := g.Node
	for k := range nodes {
		p, err := nodes[k].toProto()
		if err != nil {
			return err
		}
		g.Node = append(g.Node, p)
	}
	if err := m.TopoSort(); err != nil {
		g.Node = old
		return err
	}
	return nil
}

// RemoveNode deletes the node called name; its outputs must be unused.
func (m *Model) RemoveNode(name string) error {
	i, err := m.findNode(name)
	if err != nil {
		return err
	}
	g := m.p.Graph
	g.Node = append(g.Node[:i:i], g.Node[i+1:]...)
	return nil
}

// RenameInput replaces every use of value old by value new in the main
// graph's node inputs and graph outputs.
func (m *Model) RenameInput(old, new string) {
	g := m.p.GetGraph()
	for i, n := range g.GetNode() {
		if !slices.Contains(n.Input, old) {
			continue
		}
		c := shallowClone(n) // n may be shared with a derived model
		c.Input = slices.Clone(n.Input)
		for k, s := range c.Input {
			if s == old {
				c.Input[k] = new
			}
		}
		g.Node[i] = c
	}
	for i, o := range g.GetOutput() {
		if o.GetName() == old {
			c := shallowClone(o)
			c.Name = proto.String(new)
			g.Output[i] = c
		}
	}
}

// TopoSort orders the main graph's nodes topologically, keeping the current
// order where it is already valid. It fails on cycles or on inputs that no
// node, initializer or graph input provides.
func (m *Model) TopoSort() error {
	g := m.p.Graph
	avail := map[string]bool{"": true}
	for _, t := range g.Initializer {
		avail[t.GetName()] = true
	}
	for _, v := range g.Input {
		avail[v.GetName()] = true
	}
	for _, t := range g.SparseInitializer {
		avail[t.GetValues().GetName()] = true
	}
	producer := map[string]int{}
	for i, n := range g.Node {
		for _, o := range n.Output {
			producer[o] = i
		}
	}
	// A node depends on its inputs and on the names its subgraphs (If
	// branches, Loop and Scan bodies) read from this graph.
	indeg := make([]int, len(g.Node))
	users := make([][]int, len(g.Node))
	for i, n := range g.Node {
		for _, in := range n.Input {
			if avail[in] {
				continue
			}
			p, ok := producer[in]
			if !ok {
				return fmt.Errorf("%w: node %q (%s) reads %q, which nothing produces", ErrFormat, n.GetName(), n.GetOpType(), in)
			}
			indeg[i]++
			users[p] = append(users[p], i)
		}
		for _, sub := range subgraphs(n) {
			for _, in := range freeNames(sub.g) {
				if p, ok := producer[in]; ok && !avail[in] && p != i {
					indeg[i]++
					users[p] = append(users[p], i)
				}
			}
		}
	}
	// Kahn's algorithm with the original index as priority (a min-heap, so
	// large graphs with many ready nodes, e.g. Constants, sort in
	// O(n log n)).
	ready := &intHeap{}
	for i := range g.Node {
		if indeg[i] == 0 {
			ready.push(i)
		}
	}
	order := make([]*pb.NodeProto, 0, len(g.Node))
	for len(*ready) > 0 {
		i := ready.pop()
		order = append(order, g.Node[i])
		for _, u := range users[i] {
			indeg[u]--
			if indeg[u] == 0 {
				ready.push(u)
			}
		}
	}
	if len(order) != len(g.Node) {
		return fmt.Errorf("%w: the graph has a cycle", ErrFormat)
	}
	g.Node = order
	return nil
}

// intHeap is a binary min-heap of ints.
type intHeap []int

func (h *intHeap) push(v int) {
	a := append(*h, v)
	for i := len(a) - 1; i > 0; {
		p := (i - 1) / 2
		if a[p] <= a[i] {
			break
		}
		a[p], a[i] = a[i], a[p]
		i = p
	}
	*h = a
}

func (h *intHeap) pop() int {
	a := *h
	top := a[0]
	n := len(a) - 1
	a[0] = a[n]
	a = a[:n]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && a[l] < a[m] {
			m = l
		}
		if r < n && a[r] < a[m] {
			m = r
		}
		if m == i {
			break
		}
		a[i], a[m] = a[m], a[i]
		i = m
	}
	*h = a
	return top
}

// Dim is one dimension of a value's shape: a fixed size, a symbolic name,
// or unknown (Value < 0 and Param == "").
type Dim struct {
	Value int64
	Param string
}

// ValueInfo describes a graph input or output.
type ValueInfo struct {
	Name  string
	DType DType
	Shape []Dim // nil when the rank is unknown
}

func valueInfoFromProto(v *pb.ValueInfoProto) ValueInfo {
	out := ValueInfo{Name: v.GetName()}
	tt := v.GetType().GetTensorType()
	if tt == nil {
		return out
	}
	out.DType = DType(tt.GetElemType())
	if tt.Shape != nil {
		out.Shape = []Dim{}
		for _, d := range tt.Shape.Dim {
			switch {
			case d.GetDimParam() != "":
				out.Shape = append(out.Shape, Dim{Value: -1, Param: d.GetDimParam()})
			case d.Value != nil:
				out.Shape = append(out.Shape, Dim{Value: d.GetDimValue()})
			default:
				out.Shape = append(out.Shape, Dim{Value: -1})
			}
		}
	}
	return out
}

func valueInfoProto(v ValueInfo) *pb.ValueInfoProto {
	p := &pb.ValueInfoProto{Name: proto.String(v.Name)}
	if v.DType == Undefined {
		return p
	}
	tt := &pb.TypeProto_Tensor{ElemType: proto.Int32(int32(v.DType))}
	if v.Shape != nil {
		tt.Shape = &pb.TensorShapeProto{}
		for _, d := range v.Shape {
			dp := &pb.TensorShapeProto_Dimension{}
			switch {
			case d.Param != "":
				dp.Value = &pb.TensorShapeProto_Dimension_DimParam{DimParam: d.Param}
			case d.Value >= 0:
				dp.Value = &pb.TensorShapeProto_Dimension_DimValue{DimValue: d.Value}
			}
			tt.Shape.Dim = append(tt.Shape.Dim, dp)
		}
	}
	p.Type = &pb.TypeProto{Value: &pb.TypeProto_TensorType{TensorType: tt}}
	return p
}

// Inputs returns the graph inputs that are not initializers.
func (m *Model) Inputs() []ValueInfo {
	var out []ValueInfo
	for _, v := range m.p.GetGraph().GetInput() {
		if _, isInit := m.index[v.GetName()]; isInit {
			continue
		}
		out = append(out, valueInfoFromProto(v))
	}
	return out
}

// Outputs returns the graph outputs.
func (m *Model) Outputs() []ValueInfo {
	var out []ValueInfo
	for _, v := range m.p.GetGraph().GetOutput() {
		out = append(out, valueInfoFromProto(v))
	}
	return out
}

// ValueInfo returns what the graph declares about value name (graph inputs,
// outputs and value_info), if anything.
func (m *Model) ValueInfo(name string) (ValueInfo, bool) {
	g := m.p.GetGraph()
	for _, list := range [][]*pb.ValueInfoProto{g.GetInput(), g.GetOutput(), g.GetValueInfo()} {
		for _, v := range list {
			if v.GetName() == name {
				return valueInfoFromProto(v), true
			}
		}
	}
	return ValueInfo{}, false
}

// AddOutput exposes value v.Name as a graph output (v.DType Undefined leaves
// the type to the runtime's inference). Already-exposed values are kept.
func (m *Model) AddOutput(v ValueInfo) {
	for _, o := range m.p.GetGraph().GetOutput() {
		if o.GetName() == v.Name {
			return
		}
	}
	m.p.Graph.Output = append(m.p.Graph.Output, valueInfoProto(v))
}

// SetOutputs replaces the graph outputs.
func (m *Model) SetOutputs(vs []ValueInfo) {
	m.p.Graph.Output = nil
	for _, v := range vs {
		m.p.Graph.Output = append(m.p.Graph.Output, valueInfoProto(v))
	}
}

// AddInput adds a graph input.
func (m *Model) AddInput(v ValueInfo) {
	m.p.Graph.Input = append(m.p.Graph.Input, valueInfoProto(v))
}

// InitializersToInputs turns the named initializers into graph inputs of
// the same type and shape, so that a single runtime session can be fed
// different values for them. It returns the removed tensors.
func (m *Model) InitializersToInputs(names []string) ([]*Tensor, error) {
	var out []*Tensor
	for _, name := range names {
		t, err := m.Initializer(name)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	for _, t := range out {
		if err := m.RemoveInitializer(t.Name); err != nil {
			return nil, err
		}
		g := m.p.Graph
		// drop an existing graph-input entry for it (IR < 4 style)
		kept := g.Input[:0]
		for _, v := range g.Input {
			if v.GetName() != t.Name {
				kept = append(kept, v)
			}
		}
		g.Input = kept
		shape := make([]Dim, len(t.Shape))
		for i, d := range t.Shape {
			shape[i] = Dim{Value: d}
		}
		m.AddInput(ValueInfo{Name: t.Name, DType: t.DType, Shape: shape})
	}
	return out, nil
}

// FoldConstantWeights turns Constant nodes holding a tensor (`value`) into
// initializers of the same name, so weights kept in Constant nodes can be
// transformed like any other. It returns how many it folded.
func (m *Model) FoldConstantWeights() (int, error) {
	g := m.p.Graph
	kept := make([]*pb.NodeProto, 0, len(g.Node))
	folded := 0
	for _, n := range g.Node {
		if n.GetOpType() != "Constant" || (n.GetDomain() != "" && n.GetDomain() != "ai.onnx") || len(n.Output) != 1 {
			kept = append(kept, n)
			continue
		}
		var tp *pb.TensorProto
		for _, a := range n.Attribute {
			if a.GetName() == "value" && a.T != nil {
				tp = a.T
			}
		}
		if tp == nil {
			kept = append(kept, n)
			continue
		}
		t, err := m.tensorFromProto(tp)
		if err != nil {
			return folded, fmt.Errorf("constant %q: %w", n.Output[0], err)
		}
		t.Name = n.Output[0]
		np := tensorProto(t)
		g.Initializer = append(g.Initializer, np)
		folded++
	}
	g.Node = kept
	m.reindex()
	return folded, nil
}
