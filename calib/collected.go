package calib

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
)

// Collected holds the statistics an Accumulator computed; it implements
// Stats. evalharness.Capture returns one (as evalharness.Stats).
type Collected struct {
	// Samples is the number of dataset samples seen.
	Samples int64
	layers  map[string]*layer
	tensors map[string]*TensorStats
	lazy    *onDemand // Grams computed on demand (Request.MaxGramBytes)
}

// onDemand computes a Collected's Grams on demand, a group at a time.
type onDemand struct {
	mu       sync.Mutex
	pass     Pass
	order    []*layer
	budget   int64
	chunk    int
	resident []*layer
	passes   int
}

// resident returns l with its statistic accumulated, computing it (and
// those of its group) when needed; unlock releases the statistic.
func (c *Collected) resident(l *layer) (unlock func(), err error) {
	lz := c.lazy
	if lz == nil {
		return func() {}, nil
	}
	lz.mu.Lock()
	if l.g != nil {
		return lz.mu.Unlock, nil
	}
	if err := c.load(l); err != nil {
		lz.mu.Unlock()
		return nil, err
	}
	return lz.mu.Unlock, nil
}

// load frees the group held now and accumulates, in one pass over the
// data, the group of layers that starts at l (in the order asked for) and
// fits in the budget (l alone when it does not fit). lz.mu is held.
func (c *Collected) load(l *layer) error {
	lz := c.lazy
	for _, r := range lz.resident {
		r.g = nil
	}
	lz.resident = nil
	i := 0
	for i < len(lz.order) && lz.order[i] != l {
		i++
	}
	var group []*layer
	var size int64
	for ; i < len(lz.order); i++ {
		h := lz.order[i]
		if len(group) > 0 && size+h.bytes() > lz.budget {
			break
		}
		group = append(group, h)
		size += h.bytes()
	}
	if len(group) == 0 {
		group = []*layer{l}
	}
	a := &Accumulator{layers: map[string]*layer{}, tensors: map[string]*TensorStats{}, chunk: lz.chunk}
	seen := map[string]bool{}
	for _, h := range group {
		h.alloc()
		h.served = nil
		a.layers[h.name] = h
		if !seen[h.input] {
			seen[h.input] = true
			a.names = append(a.names, h.input)
		}
	}
	sort.Strings(a.names)
	if err := lz.pass(a); err != nil {
		for _, h := range group {
			h.g = nil
		}
		return err
	}
	lz.resident = group
	lz.passes++
	if c.Samples == 0 {
		c.Samples = a.samples
	}
	return nil
}

// GramPasses returns how many passes over the data computed Grams on
// demand (0 when they were all accumulated at once).
func (c *Collected) GramPasses() int {
	if c.lazy == nil {
		return 0
	}
	c.lazy.mu.Lock()
	defer c.lazy.mu.Unlock()
	return c.lazy.passes
}

var _ Stats = (*Collected)(nil)

// InputGram implements Stats. A weight collected as norms only has no Gram
// (ErrMissing).
func (c *Collected) InputGram(weight string) ([]float64, int, int64, error) {
	l, ok := c.layers[weight]
	if !ok || l.norms {
		return nil, 0, 0, fmt.Errorf("%w: no input Gram collected for %q (request it in Grams)", ErrMissing, weight)
	}
	unlock, err := c.resident(l)
	if err != nil {
		return nil, 0, 0, err
	}
	defer unlock()
	d, n := l.g.D(), l.g.N()
	if c.lazy == nil {
		return l.g.Matrix(), d, n, nil
	}
	// on demand: the last of the weights sharing l to read it gets the
	// held matrix itself (Request.MaxGramBytes)
	if l.served == nil {
		l.served = map[string]bool{}
	}
	l.served[weight] = true
	if len(l.served) < l.readers {
		return l.g.Matrix(), d, n, nil
	}
	xtx := l.g.take()
	c.lazy.forget(l)
	return xtx, d, n, nil
}

// forget drops l's statistic from the group held. lz.mu is held.
func (lz *onDemand) forget(l *layer) {
	l.g, l.served = nil, nil
	lz.resident = slices.DeleteFunc(lz.resident, func(r *layer) bool { return r == l })
}

// SquaredColumnNorms implements Stats.
func (c *Collected) SquaredColumnNorms(weight string) ([]float64, int64, error) {
	l, ok := c.layers[weight]
	if !ok {
		return nil, 0, fmt.Errorf("%w: no column norms collected for %q (request it in Norms or Grams)", ErrMissing, weight)
	}
	unlock, err := c.resident(l)
	if err != nil {
		return nil, 0, err
	}
	defer unlock()
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
		if !l.norms {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// WeightKeyed reports whether every statistic c holds is keyed by a
// weight's name (input Gram matrices, column norms) and none by a value of
// the graph (activation ranges, histograms): statistics that describe the
// weights wherever a model reads them, such as on either branch of a
// merged decoder (transform.WeightKeyed).
func (c *Collected) WeightKeyed() bool { return len(c.tensors) == 0 }
