package onnxio

import (
	"maps"
	"slices"

	"google.golang.org/protobuf/proto"

	pb "github.com/onnxpost/onnxpost/onnxio/internal/onnxpb"
)

// Derive returns a new model that shares m's tensors, nodes and subgraphs
// and can be edited without changing m: it copies the model and graph
// records and the lists of nodes, initializers, inputs, outputs, value infos
// and metadata (pointers, not tensor data), so it costs time proportional to
// the number of nodes and tensors, never to the size of the weights.
//
// Every editor of Model replaces what it changes (a node, a tensor, a
// metadata entry) instead of modifying it in place, so edits of the derived
// model are never seen by m, and m may be read concurrently (Initializer,
// Weights, Bytes, Save, ...) while the derived model is edited and saved.
func (m *Model) Derive() *Model {
	p := &pb.ModelProto{}
	shallowCopy(p, m.p)
	p.MetadataProps = slices.Clone(p.MetadataProps)
	p.OpsetImport = slices.Clone(p.OpsetImport)
	p.Functions = slices.Clone(p.Functions)
	if m.p.Graph != nil {
		g := &pb.GraphProto{}
		shallowCopy(g, m.p.Graph)
		g.Node = slices.Clone(g.Node)
		g.Initializer = slices.Clone(g.Initializer)
		g.SparseInitializer = slices.Clone(g.SparseInitializer)
		g.Input = slices.Clone(g.Input)
		g.Output = slices.Clone(g.Output)
		g.ValueInfo = slices.Clone(g.ValueInfo)
		g.QuantizationAnnotation = slices.Clone(g.QuantizationAnnotation)
		g.MetadataProps = slices.Clone(g.MetadataProps)
		p.Graph = g
	}
	// the spill file (see Spill) is shared, and so are the spilled tensors
	return &Model{p: p, dir: m.dir, fsys: m.fsys, limits: m.limits, index: maps.Clone(m.index),
		spill: m.spill, spilled: maps.Clone(m.spilled)}
}

// With returns a model derived from m (see Derive) with edit applied to it;
// m is unchanged whether edit succeeds or not. It is the general form of
// the With* helpers: any editor of Model may be called inside edit.
func (m *Model) With(edit func(d *Model) error) (*Model, error) {
	d := m.Derive()
	if err := edit(d); err != nil {
		return nil, err
	}
	return d, nil
}

// WithInitializers returns a model derived from m in which each tensor of
// ts replaces the initializer of its name (keeping its position, doc string
// and metadata) or is appended when m has none. Unchanged initializers are
// shared with m.
func (m *Model) WithInitializers(ts ...*Tensor) (*Model, error) {
	return m.With(func(d *Model) error {
		for _, t := range ts {
			if err := d.SetInitializer(t); err != nil {
				return err
			}
		}
		return nil
	})
}

// WithoutInitializers returns a model derived from m without the named
// initializers (their uses are left as they are; see EliminateDeadCode for
// removing what nothing reads). A name m does not have is an error
// wrapping ErrNotFound.
func (m *Model) WithoutInitializers(names ...string) (*Model, error) {
	return m.With(func(d *Model) error {
		for _, n := range names {
			if err := d.RemoveInitializer(n); err != nil {
				return err
			}
		}
		return nil
	})
}

// WithMetadata returns a model derived from m with the metadata_props
// entries of kv set (added or replaced), in sorted key order for new keys.
func (m *Model) WithMetadata(kv map[string]string) *Model {
	d := m.Derive()
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		d.SetMetadata(k, kv[k])
	}
	return d
}

// WithNodeReplaced returns a model derived from m in which the node called
// name is replaced by repl (see ReplaceNode).
func (m *Model) WithNodeReplaced(name string, repl ...Node) (*Model, error) {
	return m.With(func(d *Model) error { return d.ReplaceNode(name, repl) })
}

// shallowClone returns a copy of msg whose fields share msg's values
// (lists, sub-messages): an editor changes the copy's own fields and puts
// it where msg was, leaving msg to the models that share it.
func shallowClone[T proto.Message](msg T) T {
	c := msg.ProtoReflect().New().Interface().(T)
	shallowCopy(c, msg)
	return c
}
