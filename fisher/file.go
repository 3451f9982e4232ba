package fisher

import (
	"context"
	"fmt"
	"sort"
	"strconv"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

// Metadata keys of a Fisher file.
const (
	MetaKind     = "onnxpost.kind"
	MetaExamples = "onnxpost.fisher.examples"
	MetaSamples  = "onnxpost.fisher.samples"
	MetaModel    = "onnxpost.fisher.model"
	// KindFisher is MetaKind's value in Fisher files.
	KindFisher = "diagonal_fisher"
)

// Model returns a Fisher file: an ONNX model with no nodes whose float32
// initializers are named and shaped like the parameters, holding their
// diagonal Fisher. model (a path or description) is recorded in the
// metadata.
func (r *Result) Model(model string, samples int) (*onnxio.Model, error) {
	m := onnxio.New("fisher", 17)
	names := r.Params
	if names == nil {
		for k := range r.Fisher {
			names = append(names, k)
		}
		sort.Strings(names)
	}
	for _, p := range names {
		t, err := onnxio.FromFloat32(p, onnxio.Float, r.Shapes[p], r.Fisher[p])
		if err != nil {
			return nil, fmt.Errorf("fisher: %s: %w", p, err)
		}
		if err := m.SetInitializer(t); err != nil {
			return nil, err
		}
	}
	m.SetMetadata(MetaKind, KindFisher)
	m.SetMetadata(MetaExamples, strconv.Itoa(r.Examples))
	m.SetMetadata(MetaSamples, strconv.Itoa(samples))
	if model != "" {
		m.SetMetadata(MetaModel, model)
	}
	return m, nil
}

// Read reads a Fisher file (any ONNX model: its float initializers are
// returned as float32, keyed by name, with their shapes).
func Read(path string) (map[string][]float32, map[string][]int64, error) {
	m, err := onnxio.Load(path)
	if err != nil {
		return nil, nil, err
	}
	f := map[string][]float32{}
	sh := map[string][]int64{}
	for _, name := range m.Initializers() {
		t, err := m.Initializer(name)
		if err != nil {
			return nil, nil, err
		}
		if !t.DType.IsFloat() {
			continue
		}
		v, err := t.Float32()
		if err != nil {
			return nil, nil, err
		}
		f[name] = v
		sh[name] = t.Shape
	}
	return f, sh, nil
}

// FromData computes the diagonal Fisher of m on ds (see Compute) and returns
// it as a Fisher file model, ready for merge.Inputs.Fishers or Save. name
// (a path or description of m) is recorded in the metadata.
func FromData(ctx context.Context, m *onnxio.Model, name string, ds *evalharness.Dataset, opt Options) (*onnxio.Model, *Result, error) {
	r, err := ComputeResult(ctx, m, ds, opt)
	if err != nil {
		return nil, nil, err
	}
	fm, err := r.Model(name, opt.Samples)
	if err != nil {
		return nil, nil, err
	}
	return fm, r, nil
}
