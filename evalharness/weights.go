package evalharness

import (
	"fmt"
	"slices"

	"github.com/onnxpost/onnxpost/onnxio"
)

// WeightSession runs one session (OpenSession: ONNX Runtime unless
// SessionOptions.Open says otherwise) of a model whose chosen
// initializers were turned into graph inputs, so that candidate values for
// those weights (a merge, a pruning level, a quantized copy...) are fed per
// run instead of re-serializing the model and creating a session for each
// candidate (docs/ARCHITECTURE.md §6).
type WeightSession struct {
	s       SessionRunner
	weights map[string]TensorInfo
	base    map[string]*Array
	data    []TensorInfo
}

// NewWeightSession converts the named initializers of a copy of m into
// graph inputs and opens one session on it. The original values remain the
// defaults of every candidate.
func NewWeightSession(m *onnxio.Model, weights []string, opt SessionOptions) (*WeightSession, error) {
	c := m.Derive()
	removed, err := c.InitializersToInputs(weights)
	if err != nil {
		return nil, err
	}
	ws := &WeightSession{weights: map[string]TensorInfo{}, base: map[string]*Array{}}
	for _, t := range removed {
		a, err := ArrayFromTensor(t)
		if err != nil {
			return nil, err
		}
		ws.base[t.Name] = a
		ws.weights[t.Name] = TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape}
	}
	b, err := c.Bytes()
	if err != nil {
		return nil, err
	}
	if ws.s, err = OpenSession(OpenRequest{Model: b}, opt); err != nil {
		return nil, err
	}
	for _, in := range ws.s.Inputs() {
		if _, isWeight := ws.weights[in.Name]; !isWeight {
			ws.data = append(ws.data, in)
		}
	}
	return ws, nil
}

// Weights describes the weights fed per run.
func (ws *WeightSession) Weights() []TensorInfo {
	out := make([]TensorInfo, 0, len(ws.weights))
	for _, in := range ws.s.Inputs() {
		if w, ok := ws.weights[in.Name]; ok {
			out = append(out, w)
		}
	}
	return out
}

// Candidate returns a Runner that runs the model with the given weight
// values (weights not in values keep the model's original values). Values
// must match each weight's dtype and shape; they are not copied, so they
// must not change while the Runner is in use.
func (ws *WeightSession) Candidate(values map[string]*Array) (Runner, error) {
	feed := make(map[string]*Array, len(ws.weights))
	for name, a := range ws.base {
		feed[name] = a
	}
	for name, a := range values {
		info, ok := ws.weights[name]
		if !ok {
			return nil, fmt.Errorf("evalharness: %q is not one of the session's weight inputs", name)
		}
		if a.DType != info.DType || !slices.Equal(a.Shape, info.Shape) {
			return nil, fmt.Errorf("evalharness: weight %q: got %v%v, want %v%v", name, a.DType, a.Shape, info.DType, info.Shape)
		}
		if err := a.Validate(); err != nil {
			return nil, fmt.Errorf("evalharness: weight %q: %w", name, err)
		}
		feed[name] = a
	}
	return &candidate{ws: ws, weights: feed}, nil
}

// CandidateFloat32 is Candidate with float32 values (each converted to
// the weight's dtype when it is float32; other dtypes are an error).
func (ws *WeightSession) CandidateFloat32(values map[string][]float32) (Runner, error) {
	arrays := make(map[string]*Array, len(values))
	for name, v := range values {
		info, ok := ws.weights[name]
		if !ok {
			return nil, fmt.Errorf("evalharness: %q is not one of the session's weight inputs", name)
		}
		if info.DType != onnxio.Float {
			return nil, fmt.Errorf("evalharness: weight %q is %v, not float32", name, info.DType)
		}
		n, _ := numElements(info.Shape, 1<<40)
		if int64(len(v)) != n {
			return nil, fmt.Errorf("evalharness: weight %q: %d values for shape %v", name, len(v), info.Shape)
		}
		arrays[name] = FromFloat32(info.Shape, v)
	}
	return ws.Candidate(arrays)
}

// Close releases the session.
func (ws *WeightSession) Close() error { return ws.s.Close() }

// candidate is a WeightSession bound to one set of weight values.
type candidate struct {
	ws      *WeightSession
	weights map[string]*Array
}

// Inputs describes the model's data inputs (the weights excluded).
func (c *candidate) Inputs() []TensorInfo { return c.ws.data }

// Outputs describes the model's outputs.
func (c *candidate) Outputs() []TensorInfo { return c.ws.s.Outputs() }

// Run runs one batch with the candidate's weights.
func (c *candidate) Run(inputs map[string]*Array) ([]*Array, error) {
	all := make(map[string]*Array, len(inputs)+len(c.weights))
	for k, v := range inputs {
		all[k] = v
	}
	for k, v := range c.weights {
		all[k] = v
	}
	return c.ws.s.Run(all)
}
