package calib

import (
	"fmt"
	"math"
	"sort"

	"github.com/onnxpost/onnxpost/onnxio"
)

// Request says which statistics to collect.
type Request struct {
	// Grams lists weight initializers (MatMul B, Gemm B, Conv W) whose
	// consumer's input XᵀX to accumulate (d² float64s each).
	Grams []string
	// Norms lists weights whose consumer's input squared column norms only
	// to accumulate (d float64s each; Wanda). A weight in both lists gets
	// its Gram (the norms are its diagonal).
	Norms []string
	// Tensors lists value names (node outputs or graph inputs) whose range
	// and, with Bins > 0, histogram to collect.
	Tensors []string
	// Bins is the number of histogram bins per tensor (0: ranges only).
	// Histograms take a second pass over the data: the first finds each
	// tensor's range.
	Bins int
	// Im2colChunk bounds the im2col buffer of one Conv, in float64s
	// (default 1<<20): patches are accumulated in chunks of rows.
	Im2colChunk int
	// MaxGramBytes, when > 0, bounds the memory of the Grams and norms held
	// at once. When those asked for need more, none is accumulated up
	// front (Accumulator.Collect): Collected's InputGram and
	// SquaredColumnNorms compute each on demand, together with those that
	// follow it in the order asked for (Grams, then Norms) as far as they
	// fit, in one more pass over the data, freeing the group held before.
	// A caller that asks in that order (layer by layer) thus makes about
	// total/MaxGramBytes passes and holds one group at a time; the results
	// are bit-identical to one pass. A Gram computed on demand is handed
	// to the last of the weights that share it when it reads it (the
	// first read of each, InputGram): that read gets the held matrix
	// itself rather than a copy, and the Collected forgets it, so a caller
	// that transforms each weight once holds one d×d matrix per layer, not
	// two; reading it again computes it again, in one more pass.
	MaxGramBytes int64
}

// layer is one weight's consumer input being accumulated.
type layer struct {
	name   string // the first weight that asked for it
	input  string // activation value name
	transA bool
	conv   *Conv
	d      int
	norms  bool  // the diagonal only
	g      *Gram // nil while not accumulated (MaxGramBytes)
	// readers counts the weights that share the layer; served, on
	// demand, those that have read its Gram since it was accumulated
	readers int
	served  map[string]bool
}

// key identifies the statistic a row-read consumer (MatMul, Gemm without
// transA) needs: weights reading the same input the same way (q, k and v
// of one attention block) share one layer. Conv and transposed-input
// layers are not shared.
type layerKey struct {
	input string
	d     int
	norms bool
}

// bytes is the memory of l's accumulated statistic.
func (l *layer) bytes() int64 {
	if l.norms {
		return 8 * int64(l.d)
	}
	return 8 * int64(l.d) * int64(l.d)
}

// alloc gives l an empty accumulator.
func (l *layer) alloc() {
	if l.norms {
		l.g = NewNorms(l.d)
	} else {
		l.g = NewGram(l.d)
	}
}

// rowwise reports whether the consumer reads its input as rows along the
// last axis (MatMul, Gemm without transA): such an input may lose rows
// (padded token positions).
func (l *layer) rowwise() bool { return l.conv == nil && !l.transA }

// Accumulator computes a Request's statistics from batches of activation
// values, in one pass, or two with histograms:
//
//	for again := true; again; again = a.EndPass() { for each batch: a.Add(…) }
//	stats := a.Stats()
//
// Memory is the statistics themselves plus one im2col chunk; no batch is
// kept.
type Accumulator struct {
	layers  map[string]*layer
	order   []*layer // distinct layers in the order asked for
	budget  int64    // Request.MaxGramBytes
	lazy    bool     // the layers exceed budget: computed on demand
	tensors map[string]*TensorStats
	names   []string // Values(), sorted
	bins    int
	chunk   int
	pass    int
	samples int64
	done    bool
}

// NewAccumulator prepares the statistics r asks for of model m.
func NewAccumulator(m *onnxio.Model, r Request) (*Accumulator, error) {
	a := &Accumulator{layers: map[string]*layer{}, tensors: map[string]*TensorStats{}, bins: r.Bins, chunk: r.Im2colChunk, budget: r.MaxGramBytes}
	if a.chunk <= 0 {
		a.chunk = 1 << 20
	}
	if r.Bins < 0 {
		return nil, fmt.Errorf("%w: %d histogram bins", ErrUnsupported, r.Bins)
	}
	wm, err := m.WeightMap()
	if err != nil {
		return nil, err
	}
	nodes := m.Nodes() // indexed by Weight.NodeIndex: works with unnamed nodes too
	full := map[string]bool{}
	for _, w := range r.Grams {
		full[w] = true
	}
	seen := map[string]bool{}
	need := func(v string) {
		if !seen[v] {
			seen[v] = true
			a.names = append(a.names, v)
		}
	}
	shared := map[layerKey]*layer{}
	var total int64
	for _, list := range [][]string{r.Grams, r.Norms} {
		for _, name := range list {
			if a.layers[name] != nil {
				continue
			}
			l, err := newLayer(wm, nodes, name, !full[name])
			if err != nil {
				return nil, err
			}
			if l.rowwise() {
				k := layerKey{l.input, l.d, l.norms}
				if s, ok := shared[k]; ok {
					a.layers[name] = s
					s.readers++
					continue
				}
				shared[k] = l
			}
			a.layers[name] = l
			a.order = append(a.order, l)
			total += l.bytes()
			need(l.input)
		}
	}
	a.lazy = a.budget > 0 && total > a.budget
	if a.lazy {
		// Grams on demand (Collect): this accumulator collects the
		// tensor statistics only
		a.names = nil
		seen = map[string]bool{}
	} else {
		for _, l := range a.order {
			l.alloc()
		}
	}
	values := map[string]bool{}
	for _, in := range m.Inputs() {
		values[in.Name] = true
	}
	for _, n := range nodes {
		for _, o := range n.Outputs {
			values[o] = true
		}
	}
	for _, name := range r.Tensors {
		if !values[name] {
			return nil, fmt.Errorf("%w: %q is not a graph input or node output of the model", ErrUnsupported, name)
		}
		a.tensors[name] = &TensorStats{Name: name, Min: math.Inf(1), Max: math.Inf(-1)}
		need(name)
	}
	sort.Strings(a.names)
	return a, nil
}

func newLayer(wm map[string]onnxio.Weight, nodes []onnxio.Node, name string, normsOnly bool) (*layer, error) {
	w, ok := wm[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a weight of the model", ErrUnsupported, name)
	}
	if w.NodeIndex < 0 || w.NodeIndex >= len(nodes) {
		return nil, fmt.Errorf("%w: %q has no consuming node", ErrUnsupported, name)
	}
	n := nodes[w.NodeIndex]
	l := &layer{name: name, input: n.Input(0), norms: normsOnly, readers: 1}
	d := 0
	switch w.Role {
	case onnxio.RoleMatMulB:
		d = int(w.ReductionSize())
	case onnxio.RoleGemmB:
		d = int(w.ReductionSize())
		l.transA = n.Int("transA", 0) != 0
	case onnxio.RoleConvW:
		cg, err := ConvOf(n, w.Shape)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", name, err)
		}
		l.conv, d = cg, cg.D()
	default:
		return nil, fmt.Errorf("%w: %q has role %s; input Grams exist for MatMul.B, Gemm.B and Conv.W", ErrUnsupported, name, w.Role)
	}
	if d <= 0 {
		return nil, fmt.Errorf("%w: %q: unknown reduction size", ErrUnsupported, name)
	}
	l.d = d
	return l, nil
}

// Values lists the value names (graph inputs or node outputs) each batch
// must hold, sorted.
func (a *Accumulator) Values() []string { return append([]string(nil), a.names...) }

// Pass returns the current pass: 1, or 2 for the histograms.
func (a *Accumulator) Pass() int { return a.pass + 1 }

// Add accumulates one batch of samples: vals and shapes hold every name of
// Values (row-major float64). mask, when not nil, holds one flag per token
// position of the batch (attention_mask ≠ 0): rows of row-read inputs and
// tensors at positions it marks false are left out (KeepRows). An input
// Gram refuses a batch holding NaN or ±Inf (ErrNonFinite); tensor
// statistics count them and leave them out (see TensorStats.Finite).
//
// Add is AddValue of every name of Values, then AddSamples(samples).
func (a *Accumulator) Add(vals map[string][]float64, shapes map[string][]int64, mask []bool, samples int64) error {
	for _, name := range a.names {
		if err := a.AddValue(name, vals[name], shapes[name], mask); err != nil {
			return err
		}
	}
	return a.AddSamples(samples)
}

// AddValue accumulates one value of a batch (a name of Values, row-major
// float64, with the batch's mask as in Add) into every statistic that
// reads it, so that a caller streaming a batch converts and holds one
// value at a time. Every name of Values must be added for a batch before
// AddSamples counts it. The statistics do not depend on how the data is
// cut into batches: each accumulates row after row into running sums, so
// any batch sizes give the same bits.
func (a *Accumulator) AddValue(name string, x []float64, shape []int64, mask []bool) error {
	if a.done {
		return fmt.Errorf("calib: Add after the last pass")
	}
	ts := a.tensors[name]
	if a.pass == 1 {
		if ts != nil {
			v, _ := KeepRows(x, shape, mask)
			ts.Hist.add(v)
		}
		return nil
	}
	for _, l := range a.readers(name) {
		x, shape := x, shape
		if l.rowwise() {
			x, shape = KeepRows(x, shape, mask)
		}
		if err := l.add(x, shape, a.chunk); err != nil {
			return fmt.Errorf("%s: %w", l.name, err)
		}
	}
	if ts != nil {
		v, _ := KeepRows(x, shape, mask)
		ts.addRange(v)
	}
	return nil
}

// Divisible reports whether value name may be added in consecutive pieces
// along its first axis (AddValue of each piece, in order, with its part of
// the mask) with the same result as whole: every statistic reading it
// accumulates its rows, patches or elements in that order. An input read
// by columns (Gemm with transA) is not.
func (a *Accumulator) Divisible(name string) bool {
	if a.pass == 1 {
		return true
	}
	for _, l := range a.readers(name) {
		if l.transA {
			return false
		}
	}
	return true
}

// AddSamples counts n samples whose values AddValue has accumulated (the
// histogram pass counts none).
func (a *Accumulator) AddSamples(n int64) error {
	if a.done {
		return fmt.Errorf("calib: Add after the last pass")
	}
	if a.pass == 0 {
		a.samples += n
	}
	return nil
}

// readers returns the layers accumulated from value name, sorted by the
// weight that asked for them (a layer shared by several weights once;
// layers computed on demand only while held).
func (a *Accumulator) readers(value string) []*layer {
	var out []*layer
	for _, name := range sortedKeys(a.layers) {
		l := a.layers[name]
		if l.name == name && l.g != nil && l.input == value {
			out = append(out, l)
		}
	}
	return out
}

// EndPass ends a pass over the data and reports whether another one is
// needed (the histograms, once the first pass has found the ranges).
func (a *Accumulator) EndPass() bool {
	if a.pass == 0 {
		for _, ts := range a.tensors {
			ts.finish()
		}
		if a.bins > 0 && len(a.tensors) > 0 {
			for _, ts := range a.tensors {
				lo, hi := ts.Min, ts.Max
				if ts.Count == ts.NaNs+ts.Infs {
					lo, hi = 0, 0
				}
				if lo == hi { // numpy.histogram widens an empty range the same way
					lo, hi = lo-0.5, hi+0.5
				}
				ts.Hist = &Histogram{Lo: lo, Hi: hi, Counts: make([]int64, a.bins)}
			}
			a.pass = 1
			return true
		}
	}
	a.done = true
	return false
}

// Stats returns the collected statistics (after the last EndPass). With
// Grams on demand (Request.MaxGramBytes) use Collect instead: these Stats
// hold none of them.
func (a *Accumulator) Stats() *Collected {
	return &Collected{Samples: a.samples, layers: a.layers, tensors: a.tensors}
}

// Pass feeds the calibration data through a, batch after batch, pass
// after pass, until a.EndPass reports no more:
//
//	for again := true; again; again = a.EndPass() { for each batch: a.Add(…) }
//
// It fetches a.Values() for every batch.
type Pass func(a *Accumulator) error

// Collect runs pass over a and returns the statistics. When the Grams asked
// for exceed Request.MaxGramBytes, pass runs now for the tensor statistics
// only (when there are any), and the Collected keeps pass to compute the
// Grams on demand, a group that fits at a time, each group in one more
// pass over the data (an accumulator of that group's layers only).
func (a *Accumulator) Collect(pass Pass) (*Collected, error) {
	if !a.lazy {
		if err := pass(a); err != nil {
			return nil, err
		}
		return a.Stats(), nil
	}
	if len(a.tensors) > 0 {
		if err := pass(a); err != nil {
			return nil, err
		}
	}
	c := a.Stats()
	c.lazy = &onDemand{pass: pass, order: a.order, budget: a.budget, chunk: a.chunk}
	return c, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// add accumulates one batch of the consumer's input activation. A batch
// holding NaN or ±Inf is refused (ErrNonFinite): XᵀX would carry them into
// every weight it calibrates.
func (l *layer) add(x []float64, shape []int64, chunk int) error {
	if x == nil {
		return fmt.Errorf("%w: activation %q was not captured", ErrMissing, l.input)
	}
	for i, v := range x {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%w: activation %q holds %v (element %d of the batch); an input Gram needs finite activations (do the calibration inputs hold Inf, NaN or values near the float32 limit?)", ErrNonFinite, l.input, v, i)
		}
	}
	d := l.g.D()
	switch {
	case l.conv != nil && l.g.norms:
		// the column norms straight from the input, no patches
		rows, err := l.conv.AddSquaredNorms(x, shape, l.g.xtx)
		l.g.n += rows
		return err
	case l.conv != nil:
		return l.conv.Patches(x, shape, max(1, chunk/d), func(mat []float64, rows int) {
			l.g.AddRows(mat[:rows*d])
		})
	case l.transA:
		// A is [K, M] and X = Aᵀ, so XᵀX = A·Aᵀ.
		if len(shape) != 2 || int(shape[0]) != d || len(x) != d*int(shape[1]) {
			return fmt.Errorf("%w: Gemm input %q has shape %v, want [%d, M] (transA)", ErrUnsupported, l.input, shape, d)
		}
		l.g.AddColumns(x, int(shape[1]))
	default:
		if len(shape) == 0 || int(shape[len(shape)-1]) != d || len(x)%d != 0 {
			return fmt.Errorf("%w: input %q has shape %v, want a last axis of %d", ErrUnsupported, l.input, shape, d)
		}
		l.g.AddRows(x)
	}
	return nil
}
