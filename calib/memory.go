package calib

import (
	"fmt"

	"github.com/onnxpost/onnxpost/onnxio"
)

// Activation is a captured tensor: its shape and values (row-major).
type Activation struct {
	Shape []int64
	Data  []float32
}

// FromActivations computes r's statistics of model m from activations
// already in memory (tensor name → values over the whole calibration set,
// every name the request reads: consumer inputs and tensors), as one batch
// through the same Accumulator as the streaming capture. mask, when not
// nil, flags the token positions to keep (see Accumulator.Add). It suits
// tests and small sets: the capture (evalharness.Capture) streams instead.
func FromActivations(m *onnxio.Model, acts map[string]Activation, r Request, mask []bool) (*Collected, error) {
	a, err := NewAccumulator(m, r)
	if err != nil {
		return nil, err
	}
	vals := map[string][]float64{}
	shapes := map[string][]int64{}
	var samples int64 = -1
	for _, name := range a.Values() {
		act, ok := acts[name]
		if !ok {
			return nil, fmt.Errorf("%w: activation %q was not captured", ErrMissing, name)
		}
		size := int64(1)
		for _, d := range act.Shape {
			size *= d
		}
		if size != int64(len(act.Data)) {
			return nil, fmt.Errorf("%w: activation %q: %d values for shape %v", ErrUnsupported, name, len(act.Data), act.Shape)
		}
		v := make([]float64, len(act.Data))
		for i, x := range act.Data {
			v[i] = float64(x)
		}
		vals[name], shapes[name] = v, act.Shape
		if len(act.Shape) > 0 && samples < 0 {
			samples = act.Shape[0]
		}
	}
	for again := true; again; again = a.EndPass() {
		if err := a.Add(vals, shapes, mask, max(samples, 0)); err != nil {
			return nil, err
		}
	}
	return a.Stats(), nil
}
