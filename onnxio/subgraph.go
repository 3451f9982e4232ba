package onnxio

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	pb "github.com/onnxpost/onnxpost/onnxio/internal/onnxpb"
)

// HasSubgraphs reports whether n has graph attributes (If branches, Loop
// and Scan bodies).
func HasSubgraphs(n Node) bool { return n.raw != nil && len(subgraphs(n.raw)) > 0 }

// SubgraphOutputTypes returns the element types of n's outputs as its
// subgraphs declare them: If's then_branch outputs, Loop's body outputs
// after the condition, Scan's body outputs. Outputs it cannot tell are
// Undefined; nil when n has no subgraph.
func SubgraphOutputTypes(n Node) []DType {
	if n.raw == nil {
		return nil
	}
	var body *pb.GraphProto
	skip := 0
	for _, sub := range subgraphs(n.raw) {
		switch {
		case n.OpType == "If" && sub.attr == "then_branch":
			body = sub.g
		case n.OpType == "Loop" && sub.attr == "body":
			body, skip = sub.g, 1
		case n.OpType == "Scan" && sub.attr == "body":
			body = sub.g
		}
	}
	if body == nil {
		return nil
	}
	out := make([]DType, len(n.Outputs))
	for i := range out {
		if k := i + skip; k < len(body.Output) {
			out[i] = DType(body.Output[k].GetType().GetTensorType().GetElemType())
		}
	}
	return out
}

// RenameSubgraphReads returns n with its subgraphs reading new wherever
// they read old from the enclosing graph (a subgraph that defines old
// itself is left alone). The subgraphs are copied first: the model n came
// from is not changed; put the result in with ReplaceNode or UpdateNode.
func RenameSubgraphReads(n Node, old, new string) Node {
	if n.raw == nil || len(subgraphs(n.raw)) == 0 {
		return n
	}
	n.raw = proto.Clone(n.raw).(*pb.NodeProto)
	for _, sub := range subgraphs(n.raw) {
		renameFree(sub.g, old, new)
	}
	return n
}

func renameFree(g *pb.GraphProto, old, new string) {
	for _, v := range g.GetInput() {
		if v.GetName() == old {
			return
		}
	}
	for _, t := range g.GetInitializer() {
		if t.GetName() == old {
			return
		}
	}
	for _, n := range g.GetNode() {
		for _, o := range n.Output {
			if o == old {
				return
			}
		}
	}
	for _, n := range g.GetNode() {
		for i, in := range n.Input {
			if in == old {
				n.Input[i] = new
			}
		}
		for _, sub := range subgraphs(n) {
			renameFree(sub.g, old, new)
		}
	}
}

// SubgraphNodes returns the nodes inside n's subgraphs, recursively, in
// graph order (read-only copies: editing them does not change the model).
func SubgraphNodes(n Node) []Node {
	if n.raw == nil {
		return nil
	}
	var out []Node
	var walk func(g *pb.GraphProto)
	walk = func(g *pb.GraphProto) {
		for _, x := range g.GetNode() {
			out = append(out, nodeFromProto(x))
			for _, sub := range subgraphs(x) {
				walk(sub.g)
			}
		}
	}
	for _, sub := range subgraphs(n.raw) {
		walk(sub.g)
	}
	return out
}

// SubgraphOps returns the op types (domain-qualified outside the default
// domain, "domain.Op") of the nodes inside n's subgraphs, recursively.
func SubgraphOps(n Node) []string {
	if n.raw == nil {
		return nil
	}
	var out []string
	var walk func(g *pb.GraphProto)
	walk = func(g *pb.GraphProto) {
		for _, x := range g.GetNode() {
			op := x.GetOpType()
			if d := x.GetDomain(); d != "" && d != "ai.onnx" {
				op = d + "." + op
			}
			out = append(out, op)
			for _, sub := range subgraphs(x) {
				walk(sub.g)
			}
		}
	}
	for _, sub := range subgraphs(n.raw) {
		walk(sub.g)
	}
	return out
}

// ErrHoist reports a subgraph weight HoistWeight cannot move to the main
// graph.
var ErrHoist = errors.New("onnxio: cannot move the weight out of its subgraph")

// HoistWeight moves a weight held as an initializer of a subgraph (w from
// AllWeights, w.Stored not empty) to the main graph's initializers, where
// the subgraph still reads it by name from the outer scope; main-graph
// transforms can then rewrite it. It refuses (ErrHoist) a Constant
// or sparse weight, and a name that the main graph or another subgraph
// also uses, since moving it could change what that name refers to.
func (m *Model) HoistWeight(w Weight) error {
	if w.Stored == "" {
		return nil
	}
	if w.holder == nil || w.src == nil || w.Constant || w.Sparse {
		return fmt.Errorf("%w: weight %q in %s is not a subgraph initializer", ErrHoist, w.Name, w.Stored)
	}
	if m.names()[w.Name] {
		return fmt.Errorf("%w: weight %q in %s: the main graph uses the name too", ErrHoist, w.Name, w.Stored)
	}
	defs := 0
	var walk func(g *pb.GraphProto)
	walk = func(g *pb.GraphProto) {
		for _, t := range g.GetInitializer() {
			if t.GetName() == w.Name {
				defs++
			}
		}
		for _, v := range g.GetInput() {
			if v.GetName() == w.Name {
				defs++
			}
		}
		for _, n := range g.GetNode() {
			for _, o := range n.Output {
				if o == w.Name {
					defs++
				}
			}
			for _, sub := range subgraphs(n) {
				walk(sub.g)
			}
		}
	}
	walk(m.p.GetGraph())
	if defs != 1 {
		return fmt.Errorf("%w: weight %q in %s: the name is defined %d times in the model", ErrHoist, w.Name, w.Stored, defs)
	}
	// The subgraph may be shared with a derived model: the main-graph node
	// that holds it is copied, and the copy's subgraph loses the tensor.
	g := m.p.Graph
	for i, top := range g.Node {
		if counterpartGraph(subgraphs(top), subgraphs(top), w.holder) == nil {
			continue
		}
		c := proto.Clone(top).(*pb.NodeProto)
		h := counterpartGraph(subgraphs(top), subgraphs(c), w.holder)
		for k, t := range w.holder.Initializer {
			if t == w.src {
				h.Initializer = append(h.Initializer[:k:k], h.Initializer[k+1:]...)
				g.Node[i] = c
				g.Initializer = append(g.Initializer, t)
				m.reindex()
				return nil
			}
		}
		break
	}
	return fmt.Errorf("%w: weight %q in %s", ErrNotFound, w.Name, w.Stored)
}

// counterpartGraph finds target among the subgraphs of as (recursively)
// and returns the graph at the same place in bs, a copy of as; nil when
// target is not there.
func counterpartGraph(as, bs []namedGraph, target *pb.GraphProto) *pb.GraphProto {
	for j := range as {
		a, b := as[j].g, bs[j].g
		if a == target {
			return b
		}
		for k, n := range a.GetNode() {
			if r := counterpartGraph(subgraphs(n), subgraphs(b.Node[k]), target); r != nil {
				return r
			}
		}
	}
	return nil
}
