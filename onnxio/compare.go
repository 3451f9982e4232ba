package onnxio

import (
	"google.golang.org/protobuf/proto"

	pb "github.com/onnxpost/onnxpost/onnxio/internal/onnxpb"
)

// SameGraph reports whether m and o have equal graphs (nodes, initializers,
// subgraphs, inputs and outputs, as proto.Equal) and equal opset imports.
// The model-level metadata is not compared, and a node that is unnamed in
// one model may carry a name in the other (EnsureNodeNames): a transform
// whose result has the same graph as its input changed nothing. Neither
// model is modified.
func (m *Model) SameGraph(o *Model) bool {
	a, b := m.p.GetGraph(), o.p.GetGraph()
	if len(a.GetNode()) != len(b.GetNode()) {
		return false
	}
	for i, na := range a.GetNode() {
		if !sameNode(na, b.Node[i]) {
			return false
		}
	}
	ra, rb := a.ProtoReflect(), b.ProtoReflect()
	fields := ra.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.Name() == "node" {
			continue
		}
		if ra.Has(fd) != rb.Has(fd) {
			return false
		}
		if !ra.Has(fd) {
			continue
		}
		x, y := ra.New(), rb.New()
		x.Set(fd, ra.Get(fd))
		y.Set(fd, rb.Get(fd))
		if !proto.Equal(x.Interface(), y.Interface()) {
			return false
		}
	}
	oa, ob := m.Opsets(), o.Opsets()
	if len(oa) != len(ob) {
		return false
	}
	for d, v := range oa {
		if w, ok := ob[d]; !ok || w != v {
			return false
		}
	}
	return true
}

// sameNode compares two nodes, ignoring the name when one of them has none.
func sameNode(a, b *pb.NodeProto) bool {
	if a.GetName() == b.GetName() || (a.GetName() != "" && b.GetName() != "") {
		return proto.Equal(a, b)
	}
	named := a
	other := b
	if a.GetName() == "" {
		named, other = b, a
	}
	c := proto.Clone(named).(*pb.NodeProto)
	c.Name = other.Name
	return proto.Equal(c, other)
}
