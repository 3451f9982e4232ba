package onnxio

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	pb "github.com/onnxpost/onnxpost/onnxio/internal/onnxpb"
)

// Roles of parameter tensors, as reported by Weights.
const (
	RoleMatMulB        = "MatMul.B"
	RoleMatMulA        = "MatMul.A"
	RoleGemmB          = "Gemm.B"
	RoleGemmA          = "Gemm.A"
	RoleConvW          = "Conv.W"
	RoleConvTransposeW = "ConvTranspose.W"
	RoleBias           = "bias"
	RoleNorm           = "norm"
	RoleEmbedding      = "embedding"
	RoleQuantParam     = "quant"
	RoleOther          = "other"
)

// Weight describes one parameter tensor: an initializer, a sparse
// initializer or the value of a Constant node, of the main graph or of a
// subgraph, with the op that consumes it.
type Weight struct {
	// Name is the initializer's (or Constant output's) name.
	Name string
	// Op and Node are the consuming op's type and node name; NodeIndex is
	// its position in the graph's (topological) node order and Slot the
	// input index the weight arrives at.
	Op        string
	Node      string
	NodeIndex int
	Slot      int
	// Role is one of the Role* constants.
	Role string
	// Via lists the ops passed through between the tensor and its consumer
	// (Identity, Transpose, Cast, DequantizeLinear).
	Via []string
	// DType and Shape are the stored tensor's.
	DType DType
	Shape []int64
	// OutAxis is the stored tensor's axis that indexes output units (-1
	// if none); InAxis is its (first) reduction axis (-1 if none). For
	// Conv.W [O, C/g, kh, kw] they are 0 and 1 (reduction over 1, 2, 3).
	OutAxis, InAxis int
	// TransB is Gemm's transB; Group is Conv's group.
	TransB bool
	Group  int64
	// Constant is true for tensors held in Constant nodes.
	Constant bool
	// Stored is the subgraph that holds the tensor ("" for the main
	// graph); Scope is the subgraph of its consumer ("" for the main
	// graph), e.g. "if0.then_branch" or "loop.body/if1.else_branch".
	Stored, Scope string
	// Sparse is true for a sparse_initializer (WeightTensor densifies it).
	Sparse bool
	// Quantized is true for an integer tensor that reaches its consumer
	// through DequantizeLinear or Cast then Mul (an already-quantized
	// weight); Params counts its elements as the float weight's.
	Quantized bool
	// Consumers counts the nodes that use the tensor (tied weights > 1).
	Consumers int

	src    *pb.TensorProto
	sparse *pb.SparseTensorProto
	holder *pb.GraphProto
}

// Special returns why a transform that rewrites main-graph weights in place
// cannot treat w like a plain weight, or "" when it can: held or read in a
// subgraph, a sparse initializer, or already quantized.
func (w Weight) Special() string {
	switch {
	case w.Stored != "":
		return "held in subgraph " + w.Stored
	case w.Scope != "":
		return "read inside subgraph " + w.Scope
	case w.Sparse:
		return "a sparse_initializer"
	case w.Quantized && len(w.Via) > 0:
		return "already quantized (" + strings.Join(w.Via, "→") + ")"
	case w.Quantized:
		return "already quantized (" + w.Op + ")"
	}
	return ""
}

// Params returns the weight's element count.
func (w Weight) Params() int64 {
	n, _ := NumElements(w.Shape)
	return n
}

// ReductionSize returns the size of the reduction (input) dimension of one
// output unit: K for MatMul/Gemm B, (C/g)·kh·kw for Conv W [O, C/g, kh, kw],
// and likewise (C/g)·kh·kw for ConvTranspose W [C, O/g, kh, kw] (the weights
// feeding one output channel); 0 if none.
func (w Weight) ReductionSize() int64 {
	switch w.Role {
	case RoleConvTransposeW:
		if len(w.Shape) < 2 {
			return 0
		}
		g := max(w.Group, 1)
		n := w.Shape[0] / g
		for _, d := range w.Shape[2:] {
			n *= d
		}
		return n
	case RoleConvW:
		if len(w.Shape) < 2 {
			return 0
		}
		n := int64(1)
		for _, d := range w.Shape[1:] {
			n *= d
		}
		return n
	case RoleMatMulB, RoleGemmB:
		if w.InAxis >= 0 && w.InAxis < len(w.Shape) {
			return w.Shape[w.InAxis]
		}
	}
	return 0
}

var passThrough = map[string]bool{"Identity": true, "Transpose": true, "Cast": true, "DequantizeLinear": true}

// Weights lists the parameter tensors of the main graph that the
// transforms can rewrite in place: floating-point initializers and
// non-scalar Constant values, and integer tensors that feed
// DequantizeLinear (or Cast then Mul) as data (Quantized). It looks through
// Identity, Transpose, Cast and DequantizeLinear to the op that consumes
// the tensor. A main-graph tensor read only inside an If/Loop/Scan
// subgraph is listed with its Scope and role "other" (no consumer in the
// main graph); tensors held in subgraphs and sparse initializers are not
// listed: AllWeights lists everything.
func (m *Model) Weights() ([]Weight, error) {
	all, err := m.AllWeights()
	if err != nil {
		return nil, err
	}
	n := len(m.p.GetGraph().GetNode())
	out := all[:0]
	for _, w := range all {
		if w.Stored != "" || w.Sparse {
			continue
		}
		if w.Scope != "" {
			w.Op, w.Node, w.NodeIndex, w.Slot, w.Role = "", "", n, -1, RoleOther
			w.OutAxis, w.InAxis, w.TransB, w.Group = -1, -1, false, 0
		}
		out = append(out, w)
	}
	return out, nil
}

// AllWeights lists every parameter tensor of the model: those of Weights,
// plus sparse initializers (Sparse), the initializers and Constant values
// of If/Loop/Scan subgraphs (Stored, Scope), and main-graph tensors read
// from the outer scope inside a subgraph, described by their consumer
// inside it (Scope). NodeIndex of a weight used inside a subgraph is the
// index of the main-graph node that holds the subgraph. WeightTensor reads
// any of them.
func (m *Model) AllWeights() ([]Weight, error) {
	var out []Weight
	m.collectWeights(newScope(m.p.GetGraph(), "", -1), &out)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].NodeIndex != out[j].NodeIndex {
			return out[i].NodeIndex < out[j].NodeIndex
		}
		return out[i].Slot < out[j].Slot
	})
	return out, nil
}

// collectWeights appends the weights stored in sc's graph and, recursively,
// in its subgraphs.
func (m *Model) collectWeights(sc *scope, out *[]Weight) {
	add := func(name string, tp *pb.TensorProto, dims []int64, constant bool, sp *pb.SparseTensorProto) {
		dt := DType(tp.GetDataType())
		w, ok := m.classify(sc, name, dt, append([]int64{}, dims...))
		if !ok {
			return
		}
		w.Constant, w.Stored, w.src, w.sparse, w.holder = constant, sc.path, tp, sp, sc.g
		w.Sparse = sp != nil
		*out = append(*out, w)
	}
	g := sc.g
	for _, t := range g.GetInitializer() {
		add(t.GetName(), t, t.Dims, false, nil)
	}
	for _, st := range g.GetSparseInitializer() {
		if v := st.GetValues(); v != nil {
			add(v.GetName(), v, st.Dims, false, st)
		}
	}
	for _, n := range g.GetNode() {
		if n.GetOpType() == "Constant" && len(n.Output) == 1 {
			for _, a := range n.Attribute {
				// scalars in Constant nodes (exponents, epsilons) are not weights
				if a.GetName() == "value" && a.T != nil && len(a.T.Dims) > 0 {
					add(n.Output[0], a.T, a.T.Dims, true, nil)
				}
			}
		}
	}
	for i, n := range g.GetNode() {
		for _, sub := range subgraphs(n) {
			*out = appendScope(m, sc.child(i, n, sub.attr, sub.g), *out)
		}
	}
}

func appendScope(m *Model, sc *scope, out []Weight) []Weight {
	m.collectWeights(sc, &out)
	return out
}

// scope is one graph being searched for weights and their consumers: the
// main graph or a subgraph.
type scope struct {
	g *pb.GraphProto
	// path names the subgraph: "" for the main graph, else
	// "node.attr" segments joined by "/".
	path string
	// top is the index of the main-graph node that holds this subgraph
	// (-1 for the main graph).
	top       int
	consumers map[string][]consumer
	producers map[string]string
}

// newScope indexes g's consumers (a node that reads a name inside one of
// its subgraphs consumes it at slot -1) and producers.
func newScope(g *pb.GraphProto, path string, top int) *scope {
	sc := &scope{g: g, path: path, top: top, consumers: map[string][]consumer{}, producers: map[string]string{}}
	for i, n := range g.GetNode() {
		for _, o := range n.Output {
			sc.producers[o] = n.GetOpType()
		}
		for s, in := range n.Input {
			if in != "" {
				sc.consumers[in] = append(sc.consumers[in], consumer{i, s})
			}
		}
		seen := map[string]bool{}
		for _, sub := range subgraphs(n) {
			for _, name := range freeNames(sub.g) {
				if !seen[name] {
					seen[name] = true
					sc.consumers[name] = append(sc.consumers[name], consumer{i, -1})
				}
			}
		}
	}
	return sc
}

// child returns the scope of subgraph g, attribute attr of node i of sc.
func (sc *scope) child(i int, n *pb.NodeProto, attr string, g *pb.GraphProto) *scope {
	name := n.GetName()
	if name == "" {
		name = fmt.Sprintf("%s#%d", n.GetOpType(), i)
	}
	p := name + "." + attr
	if sc.path != "" {
		p = sc.path + "/" + p
	}
	top := sc.top
	if top < 0 {
		top = i
	}
	return newScope(g, p, top)
}

// namedGraph is a graph-valued attribute of a node.
type namedGraph struct {
	attr string
	g    *pb.GraphProto
}

// subgraphs returns the graph-valued attributes of n (If's branches, Loop's
// and Scan's body), in attribute order.
func subgraphs(n *pb.NodeProto) []namedGraph {
	var out []namedGraph
	for _, a := range n.Attribute {
		if a.G != nil {
			out = append(out, namedGraph{a.GetName(), a.G})
		}
		for _, g := range a.Graphs {
			out = append(out, namedGraph{a.GetName(), g})
		}
	}
	return out
}

// freeNames returns the names g reads from its outer scope: inputs of its
// nodes (and of its own subgraphs) that g does not define, in first-use
// order.
func freeNames(g *pb.GraphProto) []string {
	defined := map[string]bool{}
	for _, v := range g.GetInput() {
		defined[v.GetName()] = true
	}
	for _, t := range g.GetInitializer() {
		defined[t.GetName()] = true
	}
	for _, st := range g.GetSparseInitializer() {
		defined[st.GetValues().GetName()] = true
	}
	for _, n := range g.GetNode() {
		for _, o := range n.Output {
			defined[o] = true
		}
	}
	var out []string
	seen := map[string]bool{}
	use := func(name string) {
		if name != "" && !defined[name] && !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	for _, n := range g.GetNode() {
		for _, in := range n.Input {
			use(in)
		}
		for _, sub := range subgraphs(n) {
			for _, name := range freeNames(sub.g) {
				use(name)
			}
		}
	}
	return out
}

// FreeNames returns the names the subgraphs of node n (If branches, Loop
// and Scan bodies) read from the enclosing graph; they are inputs of n
// as much as its listed inputs (a topological order must respect them).
func FreeNames(n Node) []string {
	if n.raw == nil {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for _, sub := range subgraphs(n.raw) {
		for _, name := range freeNames(sub.g) {
			if !seen[name] {
				seen[name] = true
				out = append(out, name)
			}
		}
	}
	return out
}

type consumer struct{ node, slot int }

// classify follows a tensor to its consumer and returns its description;
// ok is false for tensors that are not parameters. A consumer that reads
// the tensor inside a subgraph (slot -1) is followed into the subgraph.
func (m *Model) classify(sc *scope, name string, dt DType, shape []int64) (Weight, bool) {
	w := Weight{Name: name, DType: dt, Shape: shape, OutAxis: -1, InAxis: -1, NodeIndex: len(m.p.GetGraph().GetNode()), Slot: -1, Role: RoleOther}
	if sc.top >= 0 {
		w.NodeIndex, w.Scope = sc.top, sc.path
	}
	cur := name
	// axes[i] is the stored tensor's axis that axis i of the current value
	// comes from (Transpose permutes it); nil when unknown.
	axes := make([]int, len(shape))
	for i := range axes {
		axes[i] = i
	}
	viaDQ, viaCast, viaScale := false, false, false
	for hops := 0; hops < 12; hops++ {
		cs := sc.consumers[cur]
		if hops == 0 {
			w.Consumers = len(cs)
		}
		if len(cs) == 0 {
			break
		}
		// prefer a compute consumer among several, then a direct reader
		best := cs[0]
		for _, c := range cs {
			if c.slot >= 0 && isCompute(sc.g.Node[c.node].GetOpType()) {
				best = c
				break
			}
		}
		if best.slot < 0 {
			for _, c := range cs {
				if c.slot >= 0 {
					best = c
					break
				}
			}
		}
		n := sc.g.Node[best.node]
		op := n.GetOpType()
		if best.slot < 0 {
			// read inside a subgraph of n: follow it there
			var next *scope
			for _, sub := range subgraphs(n) {
				if slicesContains(freeNames(sub.g), cur) {
					next = sc.child(best.node, n, sub.attr, sub.g)
					break
				}
			}
			if next == nil {
				break
			}
			sc = next
			w.Scope = sc.path
			w.NodeIndex = sc.top
			continue
		}
		if passThrough[op] && best.slot == 0 && len(n.Output) > 0 {
			switch op {
			case "Transpose":
				axes = permute(axes, attrInts(n, "perm"))
			case "DequantizeLinear":
				viaDQ = true
			case "Cast":
				viaCast = true
			}
			w.Via = append(w.Via, op)
			cur = n.Output[0]
			continue
		}
		// an integer tensor cast to float and multiplied by its scale is a
		// quantized weight: look through the Mul
		if op == "Mul" && viaCast && !viaScale && dt.IsInteger() && len(n.Output) > 0 {
			viaScale = true
			w.Via = append(w.Via, op)
			cur = n.Output[0]
			continue
		}
		w.Op, w.Node, w.Slot = op, n.GetName(), best.slot
		if sc.top < 0 {
			w.NodeIndex = best.node
		}
		m.setRole(&w, n, best.slot, len(shape), sc.producers)
		// setRole gives the consumer's view; map it back to the stored axes
		for _, a := range []*int{&w.OutAxis, &w.InAxis} {
			if *a >= 0 {
				if *a < len(axes) {
					*a = axes[*a]
				} else {
					*a = -1
				}
			}
		}
		break
	}
	quantized := dt.IsInteger() && (viaDQ || viaCast && viaScale || integerWeightSlot(w.Op, w.Slot))
	if !dt.IsFloat() && !quantized {
		return w, false
	}
	w.Quantized = quantized
	if w.Op == "DequantizeLinear" {
		w.Role = RoleQuantParam
	}
	return w, true
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func isCompute(op string) bool {
	switch op {
	case "MatMul", "Gemm", "Conv", "ConvTranspose", "Gather", "MatMulNBits", "MatMulInteger",
		"ConvInteger", "QLinearMatMul", "QLinearConv":
		return true
	}
	return false
}

// integerWeightSlot reports whether input slot of op takes integer weights
// directly (an already-quantized model: MatMulInteger and ConvInteger B/W,
// QLinearMatMul b, QLinearConv w).
func integerWeightSlot(op string, slot int) bool {
	switch op {
	case "MatMulInteger", "ConvInteger":
		return slot == 1
	case "QLinearMatMul", "QLinearConv":
		return slot == 3
	}
	return false
}

func attrInts(n *pb.NodeProto, name string) []int64 {
	for _, a := range n.Attribute {
		if a.GetName() == name {
			return a.Ints
		}
	}
	return nil
}

func attrInt(n *pb.NodeProto, name string, def int64) int64 {
	for _, a := range n.Attribute {
		if a.GetName() == name && a.GetType() == pb.AttributeProto_INT {
			return a.GetI()
		}
	}
	return def
}

// permute applies a Transpose's perm (default: reverse) to axes; it returns
// nil when axes is unknown or perm is not a permutation of its rank.
func permute(axes []int, perm []int64) []int {
	if axes == nil {
		return nil
	}
	r := len(axes)
	if len(perm) == 0 {
		perm = make([]int64, r)
		for i := range perm {
			perm[i] = int64(r - 1 - i)
		}
	}
	if len(perm) != r {
		return nil
	}
	out := make([]int, r)
	seen := make([]bool, r)
	for i, p := range perm {
		if p < 0 || p >= int64(r) || seen[p] {
			return nil
		}
		seen[p] = true
		out[i] = axes[p]
	}
	return out
}

// setRole sets w's role and its output and reduction axes as the consuming
// node n sees its input slot (rank is the tensor's rank).
func (m *Model) setRole(w *Weight, n *pb.NodeProto, slot, rank int, producers map[string]string) {
	op := n.GetOpType()
	swap := func(out, in int) { w.OutAxis, w.InAxis = out, in }
	switch op {
	case "MatMul", "MatMulInteger":
		if slot == 1 && rank >= 2 {
			w.Role = RoleMatMulB
			swap(rank-1, rank-2)
		} else if slot == 0 {
			w.Role = RoleMatMulA
		}
	case "Gemm":
		switch slot {
		case 0:
			w.Role = RoleGemmA
		case 1:
			w.Role = RoleGemmB
			w.TransB = attrInt(n, "transB", 0) != 0
			if rank != 2 {
				break // not a valid Gemm B: no layout
			}
			if w.TransB {
				swap(0, 1)
			} else {
				swap(1, 0)
			}
		case 2:
			w.Role = RoleBias
			if rank >= 1 {
				w.OutAxis = rank - 1
			}
		}
	case "Conv":
		w.Group = attrInt(n, "group", 1)
		switch slot {
		case 1:
			w.Role = RoleConvW
			if rank >= 2 {
				w.OutAxis, w.InAxis = 0, 1
			}
		case 2:
			w.Role = RoleBias
			if rank >= 1 {
				w.OutAxis = 0
			}
		}
	case "ConvTranspose":
		w.Group = attrInt(n, "group", 1)
		switch slot {
		case 1:
			w.Role = RoleConvTransposeW
			if rank >= 2 {
				w.OutAxis, w.InAxis = 1, 0
			}
		case 2:
			w.Role = RoleBias
			if rank >= 1 {
				w.OutAxis = 0
			}
		}
	case "Gather":
		if slot == 0 {
			w.Role = RoleEmbedding
		}
	case "LayerNormalization", "BatchNormalization", "InstanceNormalization", "GroupNormalization",
		"RMSNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization", "SkipSimplifiedLayerNormalization":
		if slot >= 1 {
			w.Role = RoleNorm
		}
	case "Add":
		if rank <= 1 && fedByCompute(n, producers) {
			w.Role = RoleBias
			if rank == 1 {
				w.OutAxis = 0
			}
		}
	case "DequantizeLinear", "QuantizeLinear", "DynamicQuantizeLinear":
		w.Role = RoleQuantParam
	case "ConvInteger":
		switch slot {
		case 1:
			w.Role = RoleConvW
			if rank >= 2 {
				w.OutAxis, w.InAxis = 0, 1
			}
		case 2, 3:
			w.Role = RoleQuantParam
		}
	case "QLinearMatMul", "QLinearConv":
		// a, a_scale, a_zero_point, b|w, b_scale, b_zero_point, y_scale,
		// y_zero_point[, bias]
		switch {
		case slot == 3 && op == "QLinearMatMul" && rank >= 2:
			w.Role = RoleMatMulB
			swap(rank-1, rank-2)
		case slot == 3 && op == "QLinearConv" && rank >= 2:
			w.Role = RoleConvW
			w.OutAxis, w.InAxis = 0, 1
		case slot == 8:
			w.Role = RoleBias
		default:
			w.Role = RoleQuantParam
		}
	case "MatMulNBits":
		// inputs: A, B (packed), scales, zero_points, g_idx, bias
		switch {
		case slot >= 2 && slot <= 4:
			w.Role = RoleQuantParam
		case slot == 5:
			w.Role = RoleBias
		}
	}
}

// fedByCompute reports whether one of an Add's inputs comes from a
// MatMul/Gemm/Conv; producers maps each value to its producing op type.
func fedByCompute(add *pb.NodeProto, producers map[string]string) bool {
	for _, in := range add.Input {
		switch producers[in] {
		case "MatMul", "Gemm", "Conv", "ConvTranspose", "MatMulNBits":
			return true
		}
	}
	return false
}

// WeightMap returns Weights keyed by name.
func (m *Model) WeightMap() (map[string]Weight, error) {
	ws, err := m.Weights()
	if err != nil {
		return nil, err
	}
	out := make(map[string]Weight, len(ws))
	for _, w := range ws {
		out[w.Name] = w
	}
	return out, nil
}

// Pair is one initializer of model A and its structural counterpart in B.
type Pair struct {
	A, B string
	// DType and Shape are A's (equal to B's when Match succeeds).
	DType DType
	Shape []int64
}

// MatchError lists every difference Match found.
type MatchError struct{ Diffs []string }

func (e *MatchError) Error() string {
	const max = 20
	d := e.Diffs
	more := ""
	if len(d) > max {
		more = fmt.Sprintf("\n  ... and %d more", len(d)-max)
		d = d[:max]
	}
	return fmt.Sprintf("models do not match (%d differences):\n  %s%s", len(e.Diffs), strings.Join(d, "\n  "), more)
}

// Unwrap makes errors.Is(err, ErrMismatch) hold.
func (e *MatchError) Unwrap() error { return ErrMismatch }

type slotKey struct {
	node  int
	op    string
	slot  int
	order int
}

// initSignature returns each initializer of m with the position of its
// first consumer (node index, op type, input slot), in a canonical order.
func (m *Model) initSignature() []struct {
	key   slotKey
	name  string
	dtype DType
	shape []int64
} {
	g := m.p.GetGraph()
	first := map[string]slotKey{}
	for i, n := range g.Node {
		for s, in := range n.Input {
			if _, ok := first[in]; !ok && in != "" {
				first[in] = slotKey{node: i, op: n.GetOpType(), slot: s}
			}
		}
	}
	type sig = struct {
		key   slotKey
		name  string
		dtype DType
		shape []int64
	}
	var out []sig
	for k, t := range g.Initializer {
		key, ok := first[t.GetName()]
		if !ok {
			key = slotKey{node: len(g.Node), op: "(unused)", slot: 0}
		}
		key.order = k
		out = append(out, sig{key, t.GetName(), DType(t.GetDataType()), append([]int64{}, t.Dims...)})
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].key, out[j].key
		if a.node != b.node {
			return a.node < b.node
		}
		if a.slot != b.slot {
			return a.slot < b.slot
		}
		return a.order < b.order
	})
	return out
}

// Match pairs every initializer of a with its counterpart in b by graph
// position: the op and input slot of its first consumer, that node's index
// in the graph order, its dtype and shape — not by name, since independent
// exports name tensors differently. Nodes at the same position must also
// agree on the attributes that give a weight its meaning (Gemm
// transA/transB, Conv group, Transpose perm, axes, layouts...: every
// numeric and string attribute, absent ones taking their defaults): a
// Gemm whose B is stored transposed in one model would otherwise be
// averaged with the transpose of its counterpart. Any difference (node
// count, op types, attributes, shapes, dtypes, initializer count) is
// reported, all at once, in a *MatchError.
func Match(a, b *Model) ([]Pair, error) {
	var diffs []string
	ga, gb := a.p.GetGraph(), b.p.GetGraph()
	if len(ga.Node) != len(gb.Node) {
		diffs = append(diffs, fmt.Sprintf("node count: %d vs %d", len(ga.Node), len(gb.Node)))
	}
	for i := 0; i < len(ga.Node) && i < len(gb.Node); i++ {
		na, nb := ga.Node[i], gb.Node[i]
		if na.GetOpType() != nb.GetOpType() || na.GetDomain() != nb.GetDomain() {
			diffs = append(diffs, fmt.Sprintf("node %d: %s (%q) vs %s (%q)", i, na.GetOpType(), na.GetName(), nb.GetOpType(), nb.GetName()))
		} else if d := attrDiffs(na, nb); len(d) > 0 {
			diffs = append(diffs, fmt.Sprintf("node %d: %s (%q vs %q): %s", i, na.GetOpType(), na.GetName(), nb.GetName(), strings.Join(d, "; ")))
		}
	}
	sa, sb := a.initSignature(), b.initSignature()
	if len(sa) != len(sb) {
		diffs = append(diffs, fmt.Sprintf("initializer count: %d vs %d", len(sa), len(sb)))
	}
	var pairs []Pair
	for i := 0; i < len(sa) && i < len(sb); i++ {
		x, y := sa[i], sb[i]
		where := fmt.Sprintf("initializer %q vs %q (input %d of node %d, %s)", x.name, y.name, x.key.slot, x.key.node, x.key.op)
		switch {
		case x.key.node != y.key.node || x.key.slot != y.key.slot || x.key.op != y.key.op:
			diffs = append(diffs, fmt.Sprintf("%s: consumed at different positions (input %d of node %d %s vs input %d of node %d %s)", where, x.key.slot, x.key.node, x.key.op, y.key.slot, y.key.node, y.key.op))
			continue
		case x.dtype != y.dtype:
			diffs = append(diffs, fmt.Sprintf("%s: dtype %v vs %v", where, x.dtype, y.dtype))
			continue
		case !slices.Equal(x.shape, y.shape):
			diffs = append(diffs, fmt.Sprintf("%s: shape %v vs %v", where, x.shape, y.shape))
			continue
		}
		pairs = append(pairs, Pair{A: x.name, B: y.name, DType: x.dtype, Shape: x.shape})
	}
	if len(diffs) > 0 {
		return nil, &MatchError{Diffs: diffs}
	}
	return pairs, nil
}

// attrDefaults are the defaults of attributes whose absence does not mean
// zero.
var attrDefaults = map[string]string{"alpha": "1", "beta": "1", "group": "1"}

// inferenceNeutral are attributes that do not change what a node computes
// at inference (training statistics, random seeds): they may differ
// between the models of a merge.
var inferenceNeutral = map[string]bool{"momentum": true, "seed": true}

// attrDiffs lists the differing numeric and string attributes of two nodes
// of the same op (tensor and graph attributes are not compared: Constant
// values are weights, subgraphs are compared through their own weights).
func attrDiffs(a, b *pb.NodeProto) []string {
	va, vb := attrValues(a), attrValues(b)
	for k := range inferenceNeutral {
		delete(va, k)
		delete(vb, k)
	}
	names := map[string]bool{}
	for k := range va {
		names[k] = true
	}
	for k := range vb {
		names[k] = true
	}
	keys := make([]string, 0, len(names))
	for k := range names {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		x, okx := va[k]
		y, oky := vb[k]
		if !okx {
			x = attrDefault(k, y)
		}
		if !oky {
			y = attrDefault(k, x)
		}
		if x == y {
			continue
		}
		d := fmt.Sprintf("attribute %s %s vs %s", k, x, y)
		if k == "transA" || k == "transB" {
			d += " (the tensor is stored transposed in one model: refusing rather than averaging W with its transpose)"
		}
		out = append(out, d)
	}
	return out
}

// attrDefault returns the value an absent attribute k stands for, given
// the other node's value (used to pick the zero of its kind).
func attrDefault(k, other string) string {
	if d, ok := attrDefaults[k]; ok {
		return d
	}
	switch {
	case strings.HasPrefix(other, "["):
		return "[]"
	case strings.HasPrefix(other, `"`):
		return `""`
	}
	return "0"
}

// attrValues renders a node's numeric and string attributes.
func attrValues(n *pb.NodeProto) map[string]string {
	out := map[string]string{}
	for _, a := range n.Attribute {
		var v string
		switch a.GetType() {
		case pb.AttributeProto_INT:
			v = fmt.Sprint(a.GetI())
		case pb.AttributeProto_FLOAT:
			v = fmt.Sprint(a.GetF())
		case pb.AttributeProto_STRING:
			v = fmt.Sprintf("%q", a.GetS())
		case pb.AttributeProto_INTS:
			v = fmt.Sprint(a.Ints)
		case pb.AttributeProto_FLOATS:
			v = fmt.Sprint(a.Floats)
		case pb.AttributeProto_STRINGS:
			v = fmt.Sprintf("%q", a.Strings)
		default:
			continue
		}
		out[a.GetName()] = v
	}
	return out
}
