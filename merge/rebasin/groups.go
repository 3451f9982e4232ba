package rebasin

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/onnxpost/onnxpost/onnxio"
)

// ErrUnsupported is wrapped by the errors of graphs whose hidden units
// cannot be permuted exactly by this package.
var ErrUnsupported = errors.New("rebasin: graph not supported")

// Member is one axis of one initializer that a group permutes: the axis,
// of length Size·Block, is cut into Size blocks of Block consecutive
// entries and the blocks are permuted (Block > 1 where a Flatten turned C
// channels of H·W values into C·H·W rows of a Gemm).
type Member struct {
	Tensor string
	Axis   int
	Block  int
}

// Group is one set of hidden units permuted together: Size units, and every
// initializer axis that indexes them.
type Group struct {
	Name    string // the layer whose outputs the units are (its weight's name)
	Size    int
	Members []Member
	// Probe is the computed value the next layer reads the units from
	// (after activation and pooling, before any Flatten), and ProbeAxis
	// its unit axis: 1 for channels, −1 for the last axis.
	Probe     string
	ProbeAxis int
	// Heads > 1 restricts the permutation to each of Heads consecutive
	// blocks of Size/Heads units (the dimensions of one attention head:
	// queries with keys, values with the output projection's input).
	Heads int
	// Attention names the Softmax of the attention block whose heads the
	// group indexes: the query/key group and the value/output group of one
	// block reorder their heads together.
	Attention string
	// Stream lists more values holding the group's units (same axis as
	// Probe), which activation matching reads too: for layers tied by
	// residual additions the stream after each addition and the other
	// layers' probes (the residual stream at every point, not only where
	// the first layer's units end up); for queries with keys, the keys.
	Stream []string
}

// layout is how the units of a group sit in a computed value.
type layout int

const (
	lastAxis layout = iota // [..., N]: Gemm and MatMul outputs
	chanAxis               // [B, N, spatial...]: Conv outputs
	flatAxis               // Flatten of chanAxis: [B, N·H·W], blocks of H·W
)

// graph indexes a model's main graph for Groups.
type graph struct {
	m         *onnxio.Model
	nodes     []onnxio.Node
	consumers map[string][]int
	producer  map[string]int
	outputs   map[string]bool
	held      []Held
}

// Held is a layer whose units stay in place although layers follow it, and
// why.
type Held struct {
	Layer  string
	Reason string
}

func newGraph(m *onnxio.Model) *graph {
	g := &graph{m: m, nodes: m.Nodes(), consumers: map[string][]int{}, producer: map[string]int{}, outputs: map[string]bool{}}
	for i, n := range g.nodes {
		for _, in := range n.Inputs {
			if in != "" {
				g.consumers[in] = append(g.consumers[in], i)
			}
		}
		for _, o := range n.Outputs {
			g.producer[o] = i
		}
	}
	for _, o := range m.Outputs() {
		g.outputs[o.Name] = true
	}
	return g
}

func (g *graph) shape(name string) []int64 {
	_, s, err := g.m.InitializerInfo(name)
	if err != nil {
		return nil
	}
	return s
}

// constElems returns the element count of a constant input (initializer or
// Constant node output), or -1 when the input is computed.
func (g *graph) constElems(name string) (int64, []int64) {
	if g.m.HasInitializer(name) {
		s := g.shape(name)
		n, _ := onnxio.NumElements(s)
		return n, s
	}
	if i, ok := g.producer[name]; ok && g.nodes[i].OpType == "Constant" && g.nodes[i].Domain == "" {
		t, err := g.m.NodeTensor(g.nodes[i], "value")
		if err != nil {
			return -1, nil
		}
		n, _ := onnxio.NumElements(t.Shape)
		return n, t.Shape
	}
	return -1, nil
}

// layer describes a node whose weight is an initializer: the axes of its
// weight that index its output units and its input units.
type layer struct {
	weight        string
	outAxis       int
	inAxis        int
	bias          string // "" when none
	inputLayout   layout
	acceptsLayout map[layout]bool
}

// asLayer returns the layer node n is, when its input 0 is computed and
// its weight an initializer; err when it is a layer this package refuses.
func (g *graph) asLayer(n onnxio.Node) (*layer, error) {
	if n.Domain != "" && n.Domain != "ai.onnx" {
		return nil, nil
	}
	in := func(i int) string {
		if i < len(n.Inputs) {
			return n.Inputs[i]
		}
		return ""
	}
	switch n.OpType {
	case "Gemm":
		if !g.m.HasInitializer(in(1)) || len(g.shape(in(1))) != 2 {
			return nil, nil
		}
		if n.Int("transA", 0) != 0 {
			return nil, fmt.Errorf("%w: Gemm node %q has transA=1", ErrUnsupported, n.Name)
		}
		l := &layer{weight: in(1), outAxis: 1, inAxis: 0, acceptsLayout: map[layout]bool{lastAxis: true, flatAxis: true}}
		if n.Int("transB", 0) != 0 {
			l.outAxis, l.inAxis = 0, 1
		}
		if b := in(2); b != "" {
			if !g.m.HasInitializer(b) {
				return nil, fmt.Errorf("%w: Gemm node %q has a computed bias", ErrUnsupported, n.Name)
			}
			l.bias = b
		}
		return l, nil
	case "MatMul":
		if !g.m.HasInitializer(in(1)) || len(g.shape(in(1))) != 2 {
			return nil, nil
		}
		return &layer{weight: in(1), outAxis: 1, inAxis: 0, acceptsLayout: map[layout]bool{lastAxis: true, flatAxis: true}}, nil
	case "Conv":
		if !g.m.HasInitializer(in(1)) {
			return nil, nil
		}
		if grp := n.Int("group", 1); grp != 1 {
			return nil, fmt.Errorf("%w: Conv node %q is a grouped or depthwise convolution (group=%d): its channels cannot be permuted independently", ErrUnsupported, n.Name, grp)
		}
		l := &layer{weight: in(1), outAxis: 0, inAxis: 1, acceptsLayout: map[layout]bool{chanAxis: true}}
		if b := in(2); b != "" {
			if !g.m.HasInitializer(b) {
				return nil, fmt.Errorf("%w: Conv node %q has a computed bias", ErrUnsupported, n.Name)
			}
			l.bias = b
		}
		return l, nil
	}
	return nil, nil
}

// passThrough lists the ops applied unit by unit (each output unit depends
// on the same unit of the input only).
var passThrough = map[string]bool{
	"Relu": true, "LeakyRelu": true, "Sigmoid": true, "Tanh": true, "Elu": true, "Selu": true,
	"Gelu": true, "Softplus": true, "Softsign": true, "HardSigmoid": true, "HardSwish": true,
	"Mish": true, "Erf": true, "Abs": true, "Neg": true, "Exp": true, "Log": true, "Sqrt": true,
	"Sin": true, "Cos": true, "Identity": true, "Dropout": true, "Clip": true, "PRelu": false,
	"Celu": true, "ThresholdedRelu": true, "Reciprocal": true, "Floor": true, "Ceil": true,
}

// pools act per channel.
var pools = map[string]bool{"MaxPool": true, "AveragePool": true, "GlobalAveragePool": true, "GlobalMaxPool": true, "LpPool": true, "GlobalLpPool": true}

// tie is an element-wise node combining a group's units with another
// computed value of the same layout (a residual addition).
type tie struct {
	node int
	lay  layout
}

// stop records why a group's trace could not continue.
type stop struct {
	node   int
	reason string
}

// Groups returns the permutation groups of m's main graph, in graph order.
// Layers whose units are combined element-wise with each other (residual
// additions) form one group. A layer whose outputs reach a graph output, or
// reach only ops this package does not follow with no weight after them (a
// final Softmax), or are added to a value that carries no layer's units
// (the graph input), is not a group: its units stay in place. Where the
// units of a layer reach an op it does not follow and weights come after
// it (reshapes, concatenations, grouped convolutions), Groups fails with an
// error wrapping ErrUnsupported that names the node, except in
// transformer-shaped graphs (a MatMul of two computed values, an attention
// op), where the layers feeding attention heads are held in place.
func Groups(m *onnxio.Model) ([]Group, error) {
	gs, _, err := Analyze(m)
	return gs, err
}

// Analyze is Groups, also returning the layers of transformer-shaped graphs
// whose units are held in place (the queries, keys and values feeding
// attention heads).
func Analyze(m *onnxio.Model) ([]Group, []Held, error) {
	g := newGraph(m)
	attention := g.attentionNode()
	var outs []string // each candidate's layer output
	type cand struct {
		grp   Group
		fixed bool
		ties  []tie
	}
	var cands []cand
	for _, n := range g.nodes {
		l, err := g.asLayer(n)
		if err != nil {
			return nil, nil, err
		}
		if l == nil || len(n.Outputs) == 0 {
			continue
		}
		ws := g.shape(l.weight)
		size := int(ws[l.outAxis])
		grp := Group{Name: l.weight, Size: size, Members: []Member{{l.weight, l.outAxis, 1}}}
		if l.bias != "" {
			bn, bs := g.constElems(l.bias)
			switch {
			case bn == int64(size) && len(bs) >= 1:
				grp.Members = append(grp.Members, Member{l.bias, unitAxis(bs, size), 1})
			case bn == 1:
			default:
				return nil, nil, fmt.Errorf("%w: node %q: bias %q of shape %v does not match %d units", ErrUnsupported, n.Name, l.bias, bs, size)
			}
		}
		startLayout := lastAxis
		if n.OpType == "Conv" {
			startLayout = chanAxis
		}
		more, probe, ties, st, fixed := g.trace(n.Outputs[0], startLayout, size)
		if st != nil {
			sn := g.nodes[st.node]
			if g.weightsAfter(st.node) {
				if attention == "" {
					return nil, nil, fmt.Errorf("%w: the units of layer %q reach %s node %q: %s", ErrUnsupported, l.weight, sn.OpType, sn.Name, st.reason)
				}
				// Transformer blocks: the query, key and value units go
				// into the attention heads, which are not permuted.
				g.held = append(g.held, Held{Layer: l.weight, Reason: fmt.Sprintf("reaches %s node %q, not a query, key or value of a recognized attention pattern", sn.OpType, sn.Name)})
			}
			fixed = true
		}
		grp.Members = append(grp.Members, more...)
		grp.Probe, grp.ProbeAxis = probe.v, -1
		if probe.lay == chanAxis {
			grp.ProbeAxis = 1
		}
		cands = append(cands, cand{grp, fixed || size < 2, ties})
		outs = append(outs, n.Outputs[0])
	}
	var headGroups []Group
	if attention != "" {
		var kept []Held
		byLayer := map[string]int{}
		for ci, c := range cands {
			byLayer[c.grp.Name] = ci
		}
		paths := map[int]headPath{}
		for _, h := range g.held {
			ci := byLayer[h.Layer]
			if p, ok := g.headPath(outs[ci], cands[ci].grp.Size); ok {
				paths[ci] = p
			}
		}
		order := make([]int, 0, len(paths))
		for ci := range paths {
			order = append(order, ci)
		}
		sort.Ints(order)
		done := map[int]bool{}
		for _, cq := range order {
			pq := paths[cq]
			if pq.input != 0 || !slices.Equal(pq.perm, []int64{0, 2, 1, 3}) {
				continue
			}
			for _, ck := range order {
				pk := paths[ck]
				if pk.mm != pq.mm || pk.input != 1 || !slices.Equal(pk.perm, []int64{0, 2, 3, 1}) || pk.heads != pq.heads || cands[ck].grp.Size != cands[cq].grp.Size {
					continue
				}
				grp := Group{Name: cands[cq].grp.Name, Size: cands[cq].grp.Size, Heads: int(pq.heads), Probe: pq.probe, ProbeAxis: -1, Attention: g.softmaxAfter(pq.mm), Stream: []string{pk.probe}}
				grp.Members = append(append(append(append(grp.Members, cands[cq].grp.Members...), pq.members...), cands[ck].grp.Members...), pk.members...)
				headGroups = append(headGroups, grp)
				done[cq], done[ck] = true, true
			}
		}
		for _, cv := range order {
			pv := paths[cv]
			if done[cv] || pv.input != 1 || !slices.Equal(pv.perm, []int64{0, 2, 1, 3}) {
				continue
			}
			if mb, ok := g.contextToLayer(pv.mm, cands[cv].grp.Size); ok {
				grp := Group{Name: cands[cv].grp.Name, Size: cands[cv].grp.Size, Heads: int(pv.heads), Probe: pv.probe, ProbeAxis: -1, Attention: g.nodes[g.producer[g.nodes[pv.mm].Inputs[0]]].Name}
				grp.Members = append(append(append(grp.Members, cands[cv].grp.Members...), pv.members...), mb)
				headGroups = append(headGroups, grp)
				done[cv] = true
			}
		}
		for _, h := range g.held {
			if !done[byLayer[h.Layer]] {
				kept = append(kept, h)
			}
		}
		g.held = kept
	}
	// Residual connections: every group reaching one element-wise node
	// shares one permutation; a node one of whose computed operands
	// carries no group (the graph input, a gate) fixes them all.
	parent := make([]int, len(cands))
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	arrivals := map[int][]int{}
	lays := map[int]map[layout]bool{}
	for ci, c := range cands {
		for _, t := range c.ties {
			arrivals[t.node] = append(arrivals[t.node], ci)
			if lays[t.node] == nil {
				lays[t.node] = map[layout]bool{}
			}
			lays[t.node][t.lay] = true
		}
	}
	fixedRoot := map[int]bool{}
	for node, cs := range arrivals {
		for _, ci := range cs[1:] {
			a, b := find(cs[0]), find(ci)
			if a != b {
				parent[b] = a
			}
		}
		ok := len(lays[node]) == 1
		for _, ci := range cs {
			ok = ok && cands[ci].grp.Size == cands[cs[0]].grp.Size
		}
		// Each computed operand must be reached by some group.
		for _, in := range g.nodes[node].Inputs {
			if e, _ := g.constElems(in); e >= 0 {
				continue
			}
			reached := false
			for _, ci := range cs {
				reached = reached || g.reaches(cands[ci].grp, in)
			}
			ok = ok && reached
		}
		if !ok {
			for _, ci := range cs {
				cands[ci].fixed = true
			}
		}
	}
	for ci, c := range cands {
		if c.fixed {
			fixedRoot[find(ci)] = true
		}
	}
	var groups []Group
	index := map[int]int{} // root → position in groups
	for ci, c := range cands {
		r := find(ci)
		if fixedRoot[r] {
			continue
		}
		k, ok := index[r]
		if !ok {
			index[r] = len(groups)
			groups = append(groups, Group{Name: c.grp.Name, Size: c.grp.Size, Probe: c.grp.Probe, ProbeAxis: c.grp.ProbeAxis})
			k = len(groups) - 1
		}
		probes := []string{c.grp.Probe}
		for _, t := range c.ties { // the stream after each residual addition
			if (t.lay == lastAxis) == (c.grp.ProbeAxis == -1) && (t.lay == chanAxis) == (c.grp.ProbeAxis == 1) {
				probes = append(probes, g.nodes[t.node].Outputs[0])
			}
		}
		for _, p := range probes {
			if p != "" && p != groups[k].Probe && c.grp.ProbeAxis == groups[k].ProbeAxis && !slices.Contains(groups[k].Stream, p) {
				groups[k].Stream = append(groups[k].Stream, p)
			}
		}
		for _, mb := range c.grp.Members {
			dup := false
			for _, x := range groups[k].Members {
				dup = dup || x == mb
			}
			if !dup {
				groups[k].Members = append(groups[k].Members, mb)
			}
		}
	}
	// Heads are reordered only where both groups of one attention block
	// were found; a lone group keeps its heads in place.
	count := map[string]int{}
	for _, hg := range headGroups {
		count[hg.Attention]++
	}
	for i := range headGroups {
		if headGroups[i].Attention == "" || count[headGroups[i].Attention] != 2 {
			headGroups[i].Attention = ""
		}
	}
	groups = append(groups, headGroups...)
	owner := map[string]string{} // "tensor#axis" → group
	for _, grp := range groups {
		for _, mb := range grp.Members {
			k := fmt.Sprintf("%s#%d", mb.Tensor, mb.Axis)
			if o, ok := owner[k]; ok {
				return nil, nil, fmt.Errorf("%w: axis %d of %q belongs to the units of both %q and %q (shared weight)", ErrUnsupported, mb.Axis, mb.Tensor, o, grp.Name)
			}
			owner[k] = grp.Name
		}
	}
	return groups, g.held, nil
}

// reaches reports whether value v carries the units of grp: v is computed
// from the output of grp's layer without passing another layer.
func (g *graph) reaches(grp Group, v string) bool {
	for _, n := range g.nodes {
		if l, _ := g.asLayer(n); l != nil && l.weight == grp.Name && len(n.Outputs) > 0 {
			return g.derivedFrom(v, n.Outputs[0])
		}
	}
	return false
}

// unitAxis returns the axis of shape holding n units (the last such axis:
// biases broadcast from the right).
func unitAxis(shape []int64, n int) int {
	for a := len(shape) - 1; a >= 0; a-- {
		if shape[a] == int64(n) {
			return a
		}
	}
	return len(shape) - 1
}

// item is a value and the layout of the units in it.
type item struct {
	v   string
	lay layout
}

// trace follows a layer's output value forward and returns the initializer
// axes its units reach (the next layers' inputs, per-unit parameters), a
// stop when an op cannot be followed, and whether the value reaches a
// graph output (then the units cannot move).
func (g *graph) trace(start string, lay layout, size int) ([]Member, item, []tie, *stop, bool) {
	seen := map[string]layout{start: lay}
	queue := []item{{start, lay}}
	var out []Member
	var ties []tie
	probe := item{start, lay}
	fixed := false
	visited := map[int]bool{}
	retries := map[int]int{}
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		if it.lay != flatAxis {
			probe = it
		}
		if g.outputs[it.v] {
			fixed = true
		}
		for _, ci := range g.consumers[it.v] {
			n := g.nodes[ci]
			fail := func(why string) ([]Member, item, []tie, *stop, bool) { return nil, probe, nil, &stop{ci, why}, fixed }
			if visited[ci] && n.OpType != "Add" && n.OpType != "Mul" && n.OpType != "Sub" && n.OpType != "Div" {
				continue
			}
			visited[ci] = true
			emit := func(v string, l layout) {
				if old, ok := seen[v]; ok {
					if old != l {
						fixed = true // cannot happen for the ops followed; be safe
					}
					return
				}
				seen[v] = l
				queue = append(queue, item{v, l})
			}
			if n.Domain != "" && n.Domain != "ai.onnx" {
				return fail("ops outside the default domain are not followed")
			}
			if l, err := g.asLayer(n); err != nil {
				return fail(err.Error())
			} else if l != nil {
				if n.Inputs[0] != it.v {
					return fail("the value is the layer's weight, not its input")
				}
				if !l.acceptsLayout[it.lay] {
					return fail("the layout of the units does not match the layer's input")
				}
				k := g.shape(l.weight)[l.inAxis]
				if k%int64(size) != 0 || (it.lay != flatAxis && k != int64(size)) {
					return fail(fmt.Sprintf("%d units feed an input axis of length %d", size, k))
				}
				out = append(out, Member{l.weight, l.inAxis, int(k / int64(size))})
				continue
			}
			switch {
			case passThrough[n.OpType]:
				if n.Inputs[0] != it.v {
					return fail("the units are not its first input")
				}
				for _, extra := range n.Inputs[1:] {
					if e, _ := g.constElems(extra); extra != "" && e != 1 {
						return fail(fmt.Sprintf("its input %q is not a constant scalar", extra))
					}
				}
				emit(n.Outputs[0], it.lay)
			case pools[n.OpType]:
				if it.lay != chanAxis {
					return fail("pooling of units that are not channels")
				}
				emit(n.Outputs[0], chanAxis)
			case n.OpType == "Flatten":
				ax := n.Int("axis", 1)
				switch {
				case ax == 1 && it.lay == chanAxis:
					emit(n.Outputs[0], flatAxis)
				case ax == 1 && it.lay == lastAxis && g.producerIsGemmChain(it.v):
					emit(n.Outputs[0], lastAxis)
				default:
					return fail(fmt.Sprintf("Flatten with axis=%d of this layout", ax))
				}
			case n.OpType == "LayerNormalization" || n.OpType == "RMSNormalization" || n.OpType == "SimplifiedLayerNormalization":
				// Normalizing over the units' axis only is equivariant
				// when the scale and bias move with the units.
				if n.Inputs[0] != it.v || it.lay != lastAxis || n.Int("axis", -1) != -1 {
					return fail("normalization over other axes than the units' last axis")
				}
				for _, p := range n.Inputs[1:] {
					if p == "" {
						continue
					}
					e, s := g.constElems(p)
					if e != int64(size) || !g.m.HasInitializer(p) {
						return fail(fmt.Sprintf("parameter %q is not an initializer of %d values", p, size))
					}
					out = append(out, Member{p, len(s) - 1, 1})
				}
				emit(n.Outputs[0], it.lay)
			case n.OpType == "ReduceMean" || n.OpType == "ReduceSum" || n.OpType == "ReduceMax":
				// Over the token axes of [B, T, N]: the units stay last.
				axes := n.Ints("axes")
				if it.lay != lastAxis || len(axes) == 0 || len(n.Inputs) > 1 {
					return fail("a reduction without an axes attribute")
				}
				for _, a := range axes {
					if a < 1 {
						return fail("a reduction over the batch or the last axis")
					}
				}
				emit(n.Outputs[0], it.lay)
			case n.OpType == "BatchNormalization":
				if n.Inputs[0] != it.v || (it.lay != chanAxis && it.lay != lastAxis) {
					return fail("the units are not its normalized input")
				}
				for _, p := range n.Inputs[1:5] {
					e, s := g.constElems(p)
					if e != int64(size) || !g.m.HasInitializer(p) {
						return fail(fmt.Sprintf("parameter %q is not an initializer of %d values", p, size))
					}
					out = append(out, Member{p, unitAxis(s, size), 1})
				}
				emit(n.Outputs[0], it.lay)
			case n.OpType == "Add" || n.OpType == "Sub" || n.OpType == "Mul" || n.OpType == "Div":
				if len(n.Inputs) != 2 {
					return fail("not a binary op")
				}
				other := n.Inputs[0]
				if other == it.v {
					other = n.Inputs[1]
				}
				if other == it.v {
					emit(n.Outputs[0], it.lay)
					continue
				}
				e, s := g.constElems(other)
				switch {
				case e == 1:
					emit(n.Outputs[0], it.lay)
				case e >= int64(size) && g.m.HasInitializer(other) && perUnit(s, size, it.lay) && (it.lay == lastAxis || e == int64(size)):
					out = append(out, Member{other, unitAxis(s, size), 1})
					emit(n.Outputs[0], it.lay)
				case e < 0:
					if l2, ok := seen[other]; ok && l2 == it.lay {
						emit(n.Outputs[0], it.lay)
						continue
					}
					// The other operand may be reached later from the same
					// units (GELU written out); retry the node once the queue
					// has moved on, else it is a residual connection: the
					// units are tied to the other operand's (Groups unites
					// them) and the trace goes on through the sum.
					retries[ci]++
					if g.derivedFrom(other, start) && retries[ci] <= len(g.nodes)+1 {
						visited[ci] = false
						queue = append(queue, it)
						continue
					}
					ties = append(ties, tie{ci, it.lay})
					emit(n.Outputs[0], it.lay)
				default:
					return fail(fmt.Sprintf("its constant operand %q of shape %v is not per unit", other, s))
				}
			default:
				return fail("re-basin does not follow this op (supported: MatMul/Gemm/Conv layers, element-wise activations, per-unit Add/Mul, residual additions, BatchNormalization, pooling, Flatten; transformer attention heads, reshapes and concatenations are not)")
			}
		}
	}
	return out, probe, ties, nil, fixed
}

// perUnit reports whether a constant of shape s broadcasts one value per
// unit onto a value of the given layout.
func perUnit(s []int64, size int, lay layout) bool {
	if lay == chanAxis {
		// [N, 1, 1] or [1, N, 1, 1]: the unit axis is followed by ones only
		// and is the rank−2-from-spatial axis; accept N followed by ≥1 ones.
		a := unitAxis(s, size)
		return a < len(s)-1
	}
	return len(s) > 0 && s[len(s)-1] == int64(size)
}

// producerIsGemmChain reports whether v is a rank-2 value from a Gemm
// (through ops that keep the shape).
func (g *graph) producerIsGemmChain(v string) bool {
	for {
		i, ok := g.producer[v]
		if !ok {
			return false
		}
		n := g.nodes[i]
		if n.OpType == "Gemm" {
			return true
		}
		if len(n.Inputs) == 0 || !(passThrough[n.OpType] || n.OpType == "Add" || n.OpType == "Mul" || n.OpType == "BatchNormalization") {
			return false
		}
		v = n.Inputs[0]
	}
}

// derivedFrom reports whether value v depends on value from through
// computed values only, without passing a layer (whose outputs are other
// units).
func (g *graph) derivedFrom(v, from string) bool {
	seen := map[string]bool{}
	stack := []string{v}
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if x == from {
			return true
		}
		if seen[x] {
			continue
		}
		seen[x] = true
		if i, ok := g.producer[x]; ok {
			if l, _ := g.asLayer(g.nodes[i]); l != nil {
				continue
			}
			for _, in := range g.nodes[i].Inputs {
				if in != "" && !g.m.HasInitializer(in) {
					stack = append(stack, in)
				}
			}
		}
	}
	return false
}

// weightsAfter reports whether any node downstream of node i (itself
// included) reads an initializer: units that stop there are hidden units.
func (g *graph) weightsAfter(i int) bool {
	seen := map[int]bool{}
	stack := []int{i}
	for len(stack) > 0 {
		k := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[k] {
			continue
		}
		seen[k] = true
		n := g.nodes[k]
		for _, in := range n.Inputs {
			if in != "" && g.m.HasInitializer(in) {
				if e, _ := g.constElems(in); e > 1 {
					return true
				}
			}
		}
		for _, o := range n.Outputs {
			stack = append(stack, g.consumers[o]...)
		}
	}
	return false
}

// attentionNode names the first node that makes m a transformer-shaped
// graph (a MatMul of two computed values, an attention op), or "".
func (g *graph) attentionNode() string {
	for _, n := range g.nodes {
		switch n.OpType {
		case "Attention", "MultiHeadAttention", "GroupQueryAttention":
			return n.Name
		case "MatMul":
			if len(n.Inputs) == 2 && g.constElemsOr(n.Inputs[0]) < 0 && g.constElemsOr(n.Inputs[1]) < 0 {
				return n.Name
			}
		}
	}
	return ""
}

func (g *graph) constElemsOr(name string) int64 {
	e, _ := g.constElems(name)
	return e
}

// headPath is the way from a query, key or value projection to the
// attention MatMul: an optional per-unit bias, a Reshape to
// [batch, tokens, heads, head_dim], a Transpose.
type headPath struct {
	mm, input int     // the attention MatMul and which of its inputs
	heads     int64   // number of heads
	perm      []int64 // the Transpose's permutation
	members   []Member
	probe     string // the value before the Reshape
}

// single returns the only consumer of v, or −1.
func (g *graph) single(v string) int {
	if c := g.consumers[v]; len(c) == 1 && !g.outputs[v] {
		return c[0]
	}
	return -1
}

// shapeConst returns the values of a constant int64 input.
func (g *graph) shapeConst(name string) []int64 {
	var t *onnxio.Tensor
	if g.m.HasInitializer(name) {
		t, _ = g.m.Initializer(name)
	} else if i, ok := g.producer[name]; ok && g.nodes[i].OpType == "Constant" {
		t, _ = g.m.NodeTensor(g.nodes[i], "value")
	}
	if t == nil || t.DType != onnxio.Int64 {
		return nil
	}
	v, err := t.Float64()
	if err != nil {
		return nil
	}
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(x)
	}
	return out
}

func (g *graph) headPath(v string, size int) (headPath, bool) {
	var p headPath
	i := g.single(v)
	if i >= 0 && g.nodes[i].OpType == "Add" {
		n := g.nodes[i]
		other := n.Inputs[0]
		if other == v {
			other = n.Inputs[1]
		}
		e, s := g.constElems(other)
		if e != int64(size) || !g.m.HasInitializer(other) {
			return p, false
		}
		p.members = append(p.members, Member{other, len(s) - 1, 1})
		v = n.Outputs[0]
		i = g.single(v)
	}
	p.probe = v
	if i < 0 || g.nodes[i].OpType != "Reshape" || g.nodes[i].Inputs[0] != v {
		return p, false
	}
	shape := g.shapeConst(g.nodes[i].Inputs[1])
	if len(shape) != 4 || shape[2] < 1 || shape[3] < 1 || shape[2]*shape[3] != int64(size) {
		return p, false
	}
	p.heads = shape[2]
	t := g.single(g.nodes[i].Outputs[0])
	if t < 0 || g.nodes[t].OpType != "Transpose" {
		return p, false
	}
	p.perm = g.nodes[t].Ints("perm")
	m := g.single(g.nodes[t].Outputs[0])
	if m < 0 || g.nodes[m].OpType != "MatMul" {
		return p, false
	}
	p.mm = m
	for k, in := range g.nodes[m].Inputs {
		if in == g.nodes[t].Outputs[0] {
			p.input = k
		}
	}
	return p, true
}

// contextToLayer follows the output of the attention-weighted values
// (MatMul(probabilities, V)) through Transpose [0,2,1,3] and a Reshape back
// to [batch, tokens, units] into the output projection, whose input axis it
// returns.
func (g *graph) contextToLayer(mm, size int) (Member, bool) {
	// The probabilities come from a Softmax over the scores.
	if pi, ok := g.producer[g.nodes[mm].Inputs[0]]; !ok || g.nodes[pi].OpType != "Softmax" {
		return Member{}, false
	}
	t := g.single(g.nodes[mm].Outputs[0])
	if t < 0 || g.nodes[t].OpType != "Transpose" || !slices.Equal(g.nodes[t].Ints("perm"), []int64{0, 2, 1, 3}) {
		return Member{}, false
	}
	r := g.single(g.nodes[t].Outputs[0])
	if r < 0 || g.nodes[r].OpType != "Reshape" {
		return Member{}, false
	}
	if sh := g.shapeConst(g.nodes[r].Inputs[1]); len(sh) != 3 || sh[2] != int64(size) {
		return Member{}, false
	}
	o := g.single(g.nodes[r].Outputs[0])
	if o < 0 {
		return Member{}, false
	}
	l, err := g.asLayer(g.nodes[o])
	if err != nil || l == nil || g.nodes[o].Inputs[0] != g.nodes[r].Outputs[0] || g.shape(l.weight)[l.inAxis] != int64(size) {
		return Member{}, false
	}
	return Member{l.weight, l.inAxis, 1}, true
}

// softmaxAfter returns the Softmax that the scores of attention MatMul mm
// reach through scaling and masking, or "".
func (g *graph) softmaxAfter(mm int) string {
	v := g.nodes[mm].Outputs[0]
	for k := 0; k < 8; k++ {
		i := g.single(v)
		if i < 0 {
			return ""
		}
		switch g.nodes[i].OpType {
		case "Softmax":
			return g.nodes[i].Name
		case "Mul", "Div", "Add", "Sub":
			v = g.nodes[i].Outputs[0]
		default:
			return ""
		}
	}
	return ""
}
