package onnxio

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	pb "github.com/onnxpost/onnxpost/onnxio/internal/onnxpb"
)

// ErrBranches reports a model that LiftBranches or JoinBranches cannot
// handle: not one If over branches that read the main graph's weights, a
// branch that reads a value computed in the main graph, or transformed
// branches that disagree on a shared tensor.
var ErrBranches = errors.New("onnxio: cannot split the model into its If branches")

// Branch is one branch of an If-merged model (the decoder layout Optimum
// exports: one If whose then/else graphs are whole decoders reading the
// main graph's weights) lifted into a plain model: the graph inputs it
// reads, the main-graph initializers it reads, its own nodes and
// initializers, and the If's outputs as its outputs.
type Branch struct {
	// Attr is the If attribute the branch comes from: "then_branch" or
	// "else_branch".
	Attr string
	// Model is the plain model.
	Model *Model
}

// IfMerged returns the name of the If node of an If-merged model, and
// false for any other model. A model is If-merged when its main graph
// holds exactly one If node, every floating-point initializer of the main
// graph with at least two dimensions is read by that If's branches and by
// no other main-graph node, there is at least one such weight or
// quantized weight, and the branches read nothing from the main graph but
// its inputs, its initializers and the outputs of its weight
// DequantizeLinear nodes (see branchDequantize: a quantized merged decoder
// as JoinBranches writes it), whose inputs count as read by the branches
// (their quantized weights by them alone).
func (m *Model) IfMerged() (string, bool) {
	g := m.p.GetGraph()
	var ifNode *pb.NodeProto
	for _, n := range g.GetNode() {
		if n.GetOpType() == "If" && (n.GetDomain() == "" || n.GetDomain() == "ai.onnx") {
			if ifNode != nil {
				return "", false
			}
			ifNode = n
		}
	}
	if ifNode == nil {
		return "", false
	}
	available := map[string]bool{}
	for _, v := range g.GetInput() {
		available[v.GetName()] = true
	}
	for _, t := range g.GetInitializer() {
		available[t.GetName()] = true
	}
	dq := branchDequantize(g, ifNode)
	read := map[string]bool{}
	var quantized []string
	for _, sub := range subgraphs(ifNode) {
		for _, name := range freeNames(sub.g) {
			if n, ok := dq[name]; ok {
				for _, in := range n.Input {
					read[in] = true
				}
				quantized = append(quantized, n.Input[0])
				continue
			}
			if !available[name] {
				return "", false
			}
			read[name] = true
		}
	}
	mainReads := map[string]bool{}
	for _, n := range g.GetNode() {
		if n == ifNode || len(n.Output) == 1 && dq[n.Output[0]] == n {
			continue
		}
		for _, in := range n.Input {
			mainReads[in] = true
		}
		for _, sub := range subgraphs(n) {
			for _, name := range freeNames(sub.g) {
				mainReads[name] = true
			}
		}
	}
	weights := 0
	for _, t := range g.GetInitializer() {
		if !DType(t.GetDataType()).IsFloat() || len(t.Dims) < 2 {
			continue
		}
		if mainReads[t.GetName()] || !read[t.GetName()] {
			return "", false
		}
		weights++
	}
	for _, name := range quantized {
		if mainReads[name] {
			return "", false
		}
		weights++
	}
	if weights == 0 {
		return "", false
	}
	return ifNode.GetName(), true
}

// branchDequantize returns, by output name, the main-graph nodes of g that
// JoinBranches hoists out of the branches of ifNode (hoistDequantize): the
// DequantizeLinear nodes with one output whose inputs are all
// initializers and whose output only ifNode's branches read (no other
// main-graph node, no graph output). They belong to the branches:
// LiftBranches puts them back into each branch that reads them.
func branchDequantize(g *pb.GraphProto, ifNode *pb.NodeProto) map[string]*pb.NodeProto {
	inits := map[string]bool{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = true
	}
	out := map[string]*pb.NodeProto{}
	for _, n := range g.GetNode() {
		if n.GetOpType() != "DequantizeLinear" || (n.GetDomain() != "" && n.GetDomain() != "ai.onnx") || len(n.Output) != 1 || n.Output[0] == "" {
			continue
		}
		weight := true
		for _, in := range n.Input {
			if in != "" && !inits[in] {
				weight = false
			}
		}
		if weight {
			out[n.Output[0]] = n
		}
	}
	if len(out) == 0 {
		return out
	}
	for _, n := range g.GetNode() {
		if n == ifNode {
			continue
		}
		for _, in := range n.Input {
			delete(out, in)
		}
		for _, sub := range subgraphs(n) {
			for _, name := range freeNames(sub.g) {
				delete(out, name)
			}
		}
	}
	for _, v := range g.GetOutput() {
		delete(out, v.GetName())
	}
	return out
}

// ifNodeOf returns the If node of an If-merged model.
func (m *Model) ifNodeOf() (*pb.NodeProto, error) {
	name, ok := m.IfMerged()
	if !ok {
		return nil, fmt.Errorf("%w: the model is not If-merged (one If whose branches read the main graph's weights, which no other node reads)", ErrBranches)
	}
	for _, n := range m.p.GetGraph().GetNode() {
		if n.GetOpType() == "If" && n.GetName() == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("%w: If node %q not found", ErrBranches, name)
}

// LiftBranches returns each branch of an If-merged model (see IfMerged) as
// a plain model, in attribute order. A branch model's inputs are the main
// graph's inputs the branch reads (in the main graph's order), its
// initializers the main-graph initializers it reads plus its own, and its
// outputs carry the If's output names, types and shapes, so that datasets
// and output names of the merged model apply to it unchanged. External
// data stays referenced from m's folder. The branch models can be
// transformed like any plain model and put back by JoinBranches.
func (m *Model) LiftBranches() ([]Branch, error) {
	ifNode, err := m.ifNodeOf()
	if err != nil {
		return nil, err
	}
	g := m.p.GetGraph()
	inits := map[string]*pb.TensorProto{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = t
	}
	mainOut := map[string]*pb.ValueInfoProto{}
	for _, v := range g.GetOutput() {
		mainOut[v.GetName()] = v
	}
	dq := branchDequantize(g, ifNode)
	var out []Branch
	for _, sub := range subgraphs(ifNode) {
		if len(sub.g.GetInput()) > 0 {
			return nil, fmt.Errorf("%w: branch %s declares inputs", ErrBranches, sub.attr)
		}
		if len(sub.g.GetOutput()) != len(ifNode.Output) {
			return nil, fmt.Errorf("%w: branch %s has %d outputs, the If %d", ErrBranches, sub.attr, len(sub.g.GetOutput()), len(ifNode.Output))
		}
		bg := proto.Clone(sub.g).(*pb.GraphProto)
		bg.Name = proto.String(g.GetName() + "." + sub.attr)
		reads := map[string]bool{}
		for _, name := range freeNames(sub.g) {
			reads[name] = true
		}
		// the weight DequantizeLinear nodes JoinBranches hoisted come
		// back into the branch, in main-graph order, with their inputs
		var sunk []*pb.NodeProto
		for _, n := range g.GetNode() {
			if len(n.Output) == 1 && dq[n.Output[0]] == n && reads[n.Output[0]] {
				sunk = append(sunk, proto.Clone(n).(*pb.NodeProto))
				for _, in := range n.Input {
					reads[in] = true
				}
			}
		}
		bg.Node = append(sunk, bg.Node...)
		for _, v := range g.GetInput() {
			if reads[v.GetName()] {
				bg.Input = append(bg.Input, proto.Clone(v).(*pb.ValueInfoProto))
			}
		}
		var own []*pb.TensorProto
		for _, t := range g.GetInitializer() {
			if reads[t.GetName()] {
				own = append(own, proto.Clone(t).(*pb.TensorProto))
			}
		}
		bg.Initializer = append(own, bg.Initializer...)
		defined := definedNames(bg)
		produced := map[string]bool{}
		for _, n := range bg.GetNode() {
			for _, o := range n.Output {
				produced[o] = true
			}
		}
		var outs []*pb.ValueInfoProto
		for i, bo := range sub.g.GetOutput() {
			name := ifNode.Output[i]
			if name == "" {
				return nil, fmt.Errorf("%w: If output %d is unnamed", ErrBranches, i)
			}
			if !produced[bo.GetName()] {
				return nil, fmt.Errorf("%w: branch %s passes %q through as an output (no node computes it)", ErrBranches, sub.attr, bo.GetName())
			}
			if defined[name] && name != bo.GetName() {
				return nil, fmt.Errorf("%w: branch %s defines %q, the name of an If output", ErrBranches, sub.attr, name)
			}
			renameAll(bg, bo.GetName(), name)
			vi := proto.Clone(bo).(*pb.ValueInfoProto)
			if mo, ok := mainOut[name]; ok {
				vi = proto.Clone(mo).(*pb.ValueInfoProto)
			}
			vi.Name = proto.String(name)
			outs = append(outs, vi)
		}
		bg.Output = outs
		bp := proto.Clone(m.p).(*pb.ModelProto)
		bp.Graph = bg
		bm := &Model{p: bp, dir: m.dir, limits: m.limits}
		bm.reindex()
		out = append(out, Branch{Attr: sub.attr, Model: bm})
	}
	return out, nil
}

// JoinBranches returns a copy of the If-merged model m whose If branches
// are the graphs of bs (LiftBranches' models, transformed): each branch
// graph gets bs[i]'s nodes, its outputs renamed back to the branch's
// original output names, and no inputs; every initializer of the branch
// models moves to the main graph, where both branches read it, and the
// main-graph initializers no longer read anywhere are dropped. Two branch
// models holding different values under one initializer name are an
// error (ErrBranches) naming the tensor. Opset imports are the union of
// m's and the branch models' (highest version per domain).
func (m *Model) JoinBranches(bs []Branch) (*Model, error) {
	out := m.Clone()
	ifNode, err := out.ifNodeOf()
	if err != nil {
		return nil, err
	}
	g := out.p.GetGraph()
	// the weight DequantizeLinear nodes hoisted by an earlier join are the
	// branches' (LiftBranches sank them into bs): drop them here, the
	// branches' own are hoisted again below
	if dq := branchDequantize(g, ifNode); len(dq) > 0 {
		kept := g.Node[:0:0]
		for _, n := range g.GetNode() {
			if len(n.Output) != 1 || dq[n.Output[0]] != n {
				kept = append(kept, n)
			}
		}
		g.Node = kept
	}
	shared := map[string]*pb.TensorProto{}
	var order []string
	for _, b := range bs {
		var sub *pb.GraphProto
		for _, s := range subgraphs(ifNode) {
			if s.attr == b.Attr {
				sub = s.g
			}
		}
		if sub == nil {
			return nil, fmt.Errorf("%w: the If has no %s", ErrBranches, b.Attr)
		}
		bg := proto.Clone(b.Model.p.GetGraph()).(*pb.GraphProto)
		if len(bg.GetOutput()) != len(sub.GetOutput()) {
			return nil, fmt.Errorf("%w: %s: the transformed branch has %d outputs, the If %d", ErrBranches, b.Attr, len(bg.GetOutput()), len(sub.GetOutput()))
		}
		if len(bg.GetSparseInitializer()) > 0 {
			return nil, fmt.Errorf("%w: %s: the transformed branch holds sparse initializers", ErrBranches, b.Attr)
		}
		for i, o := range bg.GetOutput() {
			renameAll(bg, o.GetName(), sub.GetOutput()[i].GetName())
		}
		for _, t := range bg.Initializer {
			name := t.GetName()
			prev, ok := shared[name]
			if !ok {
				shared[name] = t
				order = append(order, name)
				continue
			}
			if !sameTensor(prev, t) {
				return nil, fmt.Errorf("%w: the transformed branches hold different values for %q (the transform saw different data in each branch)", ErrBranches, name)
			}
		}
		sub.Node = bg.Node
		sub.ValueInfo = bg.ValueInfo
		sub.Initializer = nil
		sub.Input = nil
		for _, v := range bg.GetInput() {
			if !isMainInput(g, v.GetName()) {
				return nil, fmt.Errorf("%w: %s: the transformed branch has the input %q, which the main graph lacks", ErrBranches, b.Attr, v.GetName())
			}
		}
		for _, op := range b.Model.p.GetOpsetImport() {
			mergeOpset(out.p, op)
		}
	}
	// main-graph initializers: those still read by a main node, then the
	// branches' in first-seen order
	reads := map[string]bool{}
	for _, n := range g.GetNode() {
		for _, in := range n.Input {
			reads[in] = true
		}
		if n == ifNode {
			continue
		}
		for _, sub := range subgraphs(n) {
			for _, name := range freeNames(sub.g) {
				reads[name] = true
			}
		}
	}
	var inits []*pb.TensorProto
	for _, t := range g.GetInitializer() {
		if _, ok := shared[t.GetName()]; !ok && reads[t.GetName()] {
			inits = append(inits, t)
		}
	}
	for _, name := range order {
		inits = append(inits, shared[name])
	}
	g.Initializer = inits
	if err := hoistDequantize(g, ifNode, shared); err != nil {
		return nil, err
	}
	out.reindex()
	return out, nil
}

// hoistDequantize moves the DequantizeLinear nodes of the If's branches
// whose inputs are all shared initializers to the main graph, before the
// If, once per output name; the branches read their outputs from the outer
// scope. ONNX Runtime (1.30) fails to create a session when DequantizeLinear
// nodes of two subgraphs read one initializer (its DequantizeLinear→MatMul
// fusion takes the initializer for the first and then misses it for the
// second), and a dequantized weight is computed once per run this way.
func hoistDequantize(g *pb.GraphProto, ifNode *pb.NodeProto, shared map[string]*pb.TensorProto) error {
	hoisted := map[string]*pb.NodeProto{}
	var moved []*pb.NodeProto
	for _, sub := range subgraphs(ifNode) {
		kept := sub.g.Node[:0:0]
		for _, n := range sub.g.GetNode() {
			dq := n.GetOpType() == "DequantizeLinear" && (n.GetDomain() == "" || n.GetDomain() == "ai.onnx") && len(n.Output) == 1
			for _, in := range n.Input {
				if _, ok := shared[in]; !ok && in != "" {
					dq = false
				}
			}
			if !dq {
				kept = append(kept, n)
				continue
			}
			if prev, ok := hoisted[n.Output[0]]; ok {
				if !slices.Equal(prev.Input, n.Input) || !proto.Equal(&pb.NodeProto{Attribute: prev.Attribute}, &pb.NodeProto{Attribute: n.Attribute}) {
					return fmt.Errorf("%w: the branches compute %q by different DequantizeLinear nodes", ErrBranches, n.Output[0])
				}
				continue
			}
			hoisted[n.Output[0]] = n
			moved = append(moved, n)
		}
		sub.g.Node = kept
	}
	if len(moved) == 0 {
		return nil
	}
	for i, n := range g.Node {
		if n == ifNode {
			nodes := append(append(append([]*pb.NodeProto{}, g.Node[:i]...), moved...), g.Node[i:]...)
			g.Node = nodes
			return nil
		}
	}
	return fmt.Errorf("%w: If node not found", ErrBranches)
}

// sameTensor reports whether two initializers hold the same dtype, shape
// and values (compared on their serialized form).
func sameTensor(a, b *pb.TensorProto) bool {
	if a.GetDataType() != b.GetDataType() || !slices.Equal(a.Dims, b.Dims) {
		return false
	}
	x, err1 := proto.MarshalOptions{Deterministic: true}.Marshal(a)
	y, err2 := proto.MarshalOptions{Deterministic: true}.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

func isMainInput(g *pb.GraphProto, name string) bool {
	for _, v := range g.GetInput() {
		if v.GetName() == name {
			return true
		}
	}
	return false
}

// mergeOpset adds op to p's opset imports, keeping the higher version of a
// domain imported twice.
func mergeOpset(p *pb.ModelProto, op *pb.OperatorSetIdProto) {
	for _, have := range p.OpsetImport {
		if have.GetDomain() == op.GetDomain() {
			if op.GetVersion() > have.GetVersion() {
				have.Version = proto.Int64(op.GetVersion())
			}
			return
		}
	}
	p.OpsetImport = append(p.OpsetImport, proto.Clone(op).(*pb.OperatorSetIdProto))
}

// definedNames returns the names g defines: inputs, initializers and node
// outputs (not those of its subgraphs).
func definedNames(g *pb.GraphProto) map[string]bool {
	d := map[string]bool{}
	for _, v := range g.GetInput() {
		d[v.GetName()] = true
	}
	for _, t := range g.GetInitializer() {
		d[t.GetName()] = true
	}
	for _, n := range g.GetNode() {
		for _, o := range n.Output {
			d[o] = true
		}
	}
	return d
}

// renameAll renames the value old to new in g: node inputs and outputs,
// graph outputs, value_info, and reads from g's subgraphs that do not
// define old themselves.
func renameAll(g *pb.GraphProto, old, new string) {
	if old == new {
		return
	}
	for _, n := range g.GetNode() {
		for i, in := range n.Input {
			if in == old {
				n.Input[i] = new
			}
		}
		for i, o := range n.Output {
			if o == old {
				n.Output[i] = new
			}
		}
		for _, sub := range subgraphs(n) {
			renameFree(sub.g, old, new)
		}
	}
	for _, v := range g.GetOutput() {
		if v.GetName() == old {
			v.Name = proto.String(new)
		}
	}
	for _, v := range g.GetValueInfo() {
		if v.GetName() == old {
			v.Name = proto.String(new)
		}
	}
	for _, t := range g.GetInitializer() {
		if t.GetName() == old {
			t.Name = proto.String(new)
		}
	}
	for _, v := range g.GetInput() {
		if v.GetName() == old {
			v.Name = proto.String(new)
		}
	}
}

// DataBranch returns the branch of an If-merged model (see IfMerged) that
// data holding the inputs for which has reports true takes, lifted into a
// plain model (LiftBranches): the first branch whose every input the data
// holds, the no-cache branch of a decoder for data without past key/values.
// The branch's parameters are m's weights under their own names, so what
// is computed on the branch (a Fisher, calibration statistics) describes
// m's shared weights too. The error wraps ErrBranches and names, per
// branch, an input the data lacks.
func (m *Model) DataBranch(has func(input string) bool) (Branch, error) {
	bs, err := m.LiftBranches()
	if err != nil {
		return Branch{}, err
	}
	var tried []string
	for _, b := range bs {
		missing := ""
		for _, in := range b.Model.Inputs() {
			if !has(in.Name) {
				missing = in.Name
				break
			}
		}
		if missing == "" {
			return b, nil
		}
		tried = append(tried, fmt.Sprintf("%s needs %q", b.Attr, missing))
	}
	return Branch{}, fmt.Errorf("%w: the data holds the inputs of no branch (%s)", ErrBranches, strings.Join(tried, "; "))
}
