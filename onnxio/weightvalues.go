package onnxio

import (
	"fmt"

	pb "github.com/onnxpost/onnxpost/onnxio/internal/onnxpb"
)

// WeightTensor reads the values of a weight listed by Weights or
// AllWeights, wherever it is stored: an initializer or Constant node of the
// main graph or of a subgraph, or a sparse initializer (returned dense).
// The tensor is named w.Name.
func (m *Model) WeightTensor(w Weight) (*Tensor, error) {
	if w.sparse != nil {
		return m.densify(w.sparse)
	}
	if w.src == nil {
		return m.ConstantOrInitializer(w.Name)
	}
	t, err := m.tensorFromProto(w.src)
	if err != nil {
		return nil, fmt.Errorf("weight %q: %w", w.Name, err)
	}
	t.Name = w.Name
	return t, nil
}

// ConstantOrInitializer returns the main-graph initializer called name, or
// the value of the main-graph Constant node whose output it is.
func (m *Model) ConstantOrInitializer(name string) (*Tensor, error) {
	if _, ok := m.index[name]; ok {
		return m.Initializer(name)
	}
	if n := m.constantNode(name); n != nil {
		for _, a := range n.Attribute {
			if a.GetName() == "value" && a.T != nil {
				t, err := m.tensorFromProto(a.T)
				if err != nil {
					return nil, fmt.Errorf("constant %q: %w", name, err)
				}
				t.Name = name
				return t, nil
			}
		}
	}
	return nil, fmt.Errorf("%w: initializer or Constant %q", ErrNotFound, name)
}

// RemoveWeight deletes the main-graph initializer called name, or the
// Constant node that produces it (not its uses).
func (m *Model) RemoveWeight(name string) error {
	if _, ok := m.index[name]; ok {
		return m.RemoveInitializer(name)
	}
	g := m.p.Graph
	for i, n := range g.Node {
		if isValueConstant(n, name) {
			g.Node = append(g.Node[:i], g.Node[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("%w: initializer or Constant %q", ErrNotFound, name)
}

func (m *Model) constantNode(name string) *pb.NodeProto {
	for _, n := range m.p.GetGraph().GetNode() {
		if isValueConstant(n, name) {
			return n
		}
	}
	return nil
}

func isValueConstant(n *pb.NodeProto, name string) bool {
	if n.GetOpType() != "Constant" || (n.GetDomain() != "" && n.GetDomain() != "ai.onnx") || len(n.Output) != 1 || n.Output[0] != name {
		return false
	}
	for _, a := range n.Attribute {
		if a.GetName() == "value" && a.T != nil {
			return true
		}
	}
	return false
}

// densify returns a sparse tensor's dense form: indices are either [NNZ]
// linear indices or [NNZ, rank] coordinates (ONNX's COO layouts).
func (m *Model) densify(sp *pb.SparseTensorProto) (*Tensor, error) {
	vals, err := m.tensorFromProto(sp.GetValues())
	if err != nil {
		return nil, err
	}
	name := sp.GetValues().GetName()
	n, err := NumElements(sp.Dims)
	if err != nil {
		return nil, fmt.Errorf("sparse initializer %q: %w", name, err)
	}
	es := vals.DType.ByteSize(1)
	if vals.DType.Bits()%8 != 0 || es <= 0 {
		return nil, fmt.Errorf("%w: sparse initializer %q of %v", ErrDType, name, vals.DType)
	}
	nnz := vals.NumElements()
	raw := make([]byte, n*es)
	var idx []int64
	if sp.GetIndices() != nil {
		it, err := m.tensorFromProto(sp.GetIndices())
		if err != nil {
			return nil, err
		}
		if idx, err = it.Int64(); err != nil {
			return nil, fmt.Errorf("sparse initializer %q indices: %w", name, err)
		}
	}
	rank := int64(len(sp.Dims))
	switch int64(len(idx)) {
	case nnz:
	case nnz * rank:
		lin := make([]int64, nnz)
		for k := range lin {
			var off int64
			for d := int64(0); d < rank; d++ {
				c := idx[int64(k)*rank+d]
				if c < 0 || c >= sp.Dims[d] {
					return nil, fmt.Errorf("%w: sparse initializer %q: index %d out of range", ErrFormat, name, c)
				}
				off = off*sp.Dims[d] + c
			}
			lin[k] = off
		}
		idx = lin
	default:
		return nil, fmt.Errorf("%w: sparse initializer %q: %d indices for %d values", ErrFormat, name, len(idx), nnz)
	}
	src := vals.Bytes()
	for k, i := range idx {
		if i < 0 || i >= n {
			return nil, fmt.Errorf("%w: sparse initializer %q: index %d out of range", ErrFormat, name, i)
		}
		copy(raw[i*es:(i+1)*es], src[int64(k)*es:int64(k+1)*es])
	}
	return NewTensor(name, vals.DType, append([]int64{}, sp.Dims...), raw)
}

// DensifySparseInitializers replaces every sparse initializer of the main
// graph by a dense initializer of the same name, so that it can be read
// and rewritten like any other. It returns how many it replaced.
func (m *Model) DensifySparseInitializers() (int, error) {
	g := m.p.Graph
	if len(g.GetSparseInitializer()) == 0 {
		return 0, nil
	}
	var dense []*Tensor
	for _, sp := range g.SparseInitializer {
		t, err := m.densify(sp)
		if err != nil {
			return 0, err
		}
		dense = append(dense, t)
	}
	g.SparseInitializer = nil
	for _, t := range dense {
		g.Initializer = append(g.Initializer, tensorProto(t))
	}
	m.reindex()
	return len(dense), nil
}
