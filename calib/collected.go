package calib

import (
	"fmt"
	"math"
	"sort"
)

// Collected holds the statistics an Accumulator computed; it implements
// Stats. evalharness.Capture returns one (as evalharness.Stats).
type Collected struct {
	// Samples is the number of dataset samples seen.
	Samples int64
	layers  map[string]*layer
	tensors map[string]*TensorStats
}

var _ Stats = (*Collected)(nil)

// InputGram implements Stats. A weight collected as norms only has no Gram
// (ErrMissing).
func (c *Collected) InputGram(weight string) ([]float64, int, int64, error) {
	l, ok := c.layers[weight]
	if !ok || l.g.NormsOnly() {
		return nil, 0, 0, fmt.Errorf("%w: no input Gram collected for %q (request it in Grams)", ErrMissing, weight)
	}
	return l.g.Matrix(), l.g.D(), l.g.N(), nil
}

// SquaredColumnNorms implements Stats.
func (c *Collected) SquaredColumnNorms(weight string) ([]float64, int64, error) {
	l, ok := c.layers[weight]
	if !ok {
		return nil, 0, fmt.Errorf("%w: no column norms collected for %q (request it in Norms or Grams)", ErrMissing, weight)
	}
	return l.g.Diagonal(), l.g.N(), nil
}

// ActivationRange implements Stats.
func (c *Collected) ActivationRange(tensor string) (float64, float64, error) {
	ts, ok := c.tensors[tensor]
	if !ok {
		return 0, 0, fmt.Errorf("%w: no range collected for %q (request it in Tensors)", ErrMissing, tensor)
	}
	if err := ts.Finite(); err != nil {
		return 0, 0, err
	}
	if math.IsNaN(ts.Min) {
		return 0, 0, fmt.Errorf("%w: %q took no values", ErrMissing, tensor)
	}
	return ts.Min, ts.Max, nil
}

// ActivationHistogram implements Stats.
func (c *Collected) ActivationHistogram(tensor string) ([]int64, []float64, error) {
	ts, ok := c.tensors[tensor]
	if !ok || ts.Hist == nil {
		return nil, nil, fmt.Errorf("%w: no histogram collected for %q (request it in Tensors, with Bins)", ErrMissing, tensor)
	}
	// a range that leaves out Inf or NaN would quantize them to the clip
	// value silently: static quantization needs finite activations
	if err := ts.Finite(); err != nil {
		return nil, nil, err
	}
	return append([]int64(nil), ts.Hist.Counts...), ts.Hist.Edges(), nil
}

// Tensor returns the statistics of a tensor listed in Request.Tensors
// (count, NaNs, range, mean, std, histogram).
func (c *Collected) Tensor(name string) (*TensorStats, bool) {
	ts, ok := c.tensors[name]
	return ts, ok
}

// GramWeights lists the weights with a collected Gram (not norms only),
// sorted.
func (c *Collected) GramWeights() []string {
	var out []string
	for k, l := range c.layers {
		if !l.g.NormsOnly() {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
