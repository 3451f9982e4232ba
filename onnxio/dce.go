package onnxio

import (
	"strconv"

	pb "github.com/onnxpost/onnxpost/onnxio/internal/onnxpb"
)

// Eliminated lists what EliminateDeadCode removed.
type Eliminated struct {
	// Nodes are the removed nodes' names ("OpType#index" for an unnamed
	// node, index being its position before the removal), in graph order.
	Nodes []string
	// Initializers are the removed initializers and sparse initializers,
	// in graph order.
	Initializers []string
}

// EliminateDeadCode removes, in place, the main graph's nodes whose
// outputs reach no graph output, then the initializers and sparse
// initializers that no remaining node reads and no graph output names.
// A node's subgraphs (If branches, Loop and Scan bodies, at any depth)
// count as reading the values they take from the enclosing graph, so a
// value that only a branch uses stays. A removed initializer that was also
// listed as a graph input (an overridable default) loses that input too;
// other graph inputs and outputs are never removed, and value_info entries
// of removed values are dropped. Nodes inside subgraphs are left as they
// are. It works on a graph in any node order.
func (m *Model) EliminateDeadCode() Eliminated {
	var out Eliminated
	g := m.p.GetGraph()
	if g == nil {
		return out
	}
	producer := map[string]int{}
	for i, n := range g.Node {
		for _, o := range n.Output {
			if o != "" {
				producer[o] = i
			}
		}
	}
	live := map[string]bool{}
	liveNode := make([]bool, len(g.Node))
	var work []string
	mark := func(v string) {
		if v != "" && !live[v] {
			live[v] = true
			work = append(work, v)
		}
	}
	for _, o := range g.Output {
		mark(o.GetName())
	}
	for len(work) > 0 {
		v := work[len(work)-1]
		work = work[:len(work)-1]
		i, ok := producer[v]
		if !ok || liveNode[i] {
			continue
		}
		liveNode[i] = true
		n := g.Node[i]
		for _, in := range n.Input {
			mark(in)
		}
		for _, sub := range subgraphs(n) {
			for _, name := range freeNames(sub.g) {
				mark(name)
			}
		}
	}
	dead := map[string]bool{} // values only removed nodes produced
	nodes := make([]*pb.NodeProto, 0, len(g.Node))
	for i, n := range g.Node {
		if liveNode[i] {
			nodes = append(nodes, n)
			continue
		}
		name := n.GetName()
		if name == "" {
			name = n.GetOpType() + "#" + strconv.Itoa(i)
		}
		out.Nodes = append(out.Nodes, name)
		for _, o := range n.Output {
			dead[o] = true
		}
	}
	removed := map[string]bool{}
	inits := make([]*pb.TensorProto, 0, len(g.Initializer))
	for _, t := range g.Initializer {
		if live[t.GetName()] {
			inits = append(inits, t)
			continue
		}
		removed[t.GetName()] = true
		out.Initializers = append(out.Initializers, t.GetName())
	}
	var sparse []*pb.SparseTensorProto
	for _, st := range g.SparseInitializer {
		name := st.GetValues().GetName()
		if live[name] {
			sparse = append(sparse, st)
			continue
		}
		removed[name] = true
		out.Initializers = append(out.Initializers, name)
	}
	if len(out.Nodes) == 0 && len(out.Initializers) == 0 {
		return out
	}
	var inputs []*pb.ValueInfoProto
	for _, v := range g.Input {
		if !removed[v.GetName()] {
			inputs = append(inputs, v)
		}
	}
	var infos []*pb.ValueInfoProto
	for _, v := range g.ValueInfo {
		if !dead[v.GetName()] && !removed[v.GetName()] {
			infos = append(infos, v)
		}
	}
	g.Node, g.Initializer, g.SparseInitializer, g.Input, g.ValueInfo = nodes, inits, sparse, inputs, infos
	m.reindex()
	return out
}

// WithoutDeadCode returns a model derived from m (see Derive) with its dead
// code eliminated (see EliminateDeadCode), and what was removed; m is not
// changed.
func (m *Model) WithoutDeadCode() (*Model, Eliminated) {
	d := m.Derive()
	return d, d.EliminateDeadCode()
}
