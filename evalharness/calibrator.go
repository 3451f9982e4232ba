package evalharness

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/onnxio"
)

// Calibrator serves calib.Stats for one model state on one dataset,
// computed once and shared by every transform that reads it: transforms
// declare what they will read (Need), and the first read runs one Capture
// of everything declared. A read of a statistic nobody declared captures
// again, with it added, so results never depend on the order of the
// declarations (only the cost does). A run whose statistics are never read
// (all levels cached) never captures. A failed capture returns its error
// and leaves the Calibrator as it was (a read of a name the model lacks
// does not spoil the others). Safe for concurrent use.
//
// The model and the dataset must not change while the Calibrator is in
// use; a new model state (a pruned layer written back) needs a new
// Calibrator.
type Calibrator struct {
	// ctx is the caller's: reads run the capture from inside transforms
	// whose calibration interface has no context.
	ctx context.Context
	m   *onnxio.Model
	ds  *Dataset
	// Log, if set, is told of each capture.
	Log func(format string, args ...any)

	mu       sync.Mutex
	need     CaptureOptions // the declared statistics, with the session options
	st       *Stats
	captures int
}

var _ calib.Stats = (*Calibrator)(nil)

// NewCalibrator returns a Calibrator of m on ds; opt gives the batch size,
// the session options and any statistics already needed.
func NewCalibrator(ctx context.Context, m *onnxio.Model, ds *Dataset, opt CaptureOptions) *Calibrator {
	c := &Calibrator{ctx: ctx, m: m, ds: ds, need: opt}
	c.need.Grams, c.need.Norms, c.need.Tensors = slices.Clone(opt.Grams), slices.Clone(opt.Norms), slices.Clone(opt.Tensors)
	return c
}

// Need declares statistics a transform will read (the union of every
// declaration is captured; Bins is the largest asked for).
func (c *Calibrator) Need(r calib.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.need.Grams = union(c.need.Grams, r.Grams)
	c.need.Norms = union(c.need.Norms, r.Norms)
	c.need.Tensors = union(c.need.Tensors, r.Tensors)
	c.need.Bins = max(c.need.Bins, r.Bins)
}

// Captures returns how many captures have run.
func (c *Calibrator) Captures() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.captures
}

func union(a, b []string) []string {
	for _, s := range b {
		if !slices.Contains(a, s) {
			a = append(a, s)
		}
	}
	return a
}

// stats returns the captured statistics once they hold what has reports,
// capturing (again) with add declared when they do not.
func (c *Calibrator) stats(has func(*Stats) bool, add calib.Request) (*Stats, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st != nil && has(c.st) {
		return c.st, nil
	}
	before := c.need
	c.need.Grams = union(slices.Clone(c.need.Grams), add.Grams)
	c.need.Norms = union(slices.Clone(c.need.Norms), add.Norms)
	c.need.Tensors = union(slices.Clone(c.need.Tensors), add.Tensors)
	if add.Bins < 0 { // a histogram: the declared resolution, or the default
		if c.need.Bins == 0 {
			c.need.Bins = DefaultBins
		}
	} else {
		c.need.Bins = max(c.need.Bins, add.Bins)
	}
	if c.Log != nil {
		c.Log("capturing calibration statistics (%d Gram matrices, %d column norms, %d tensors) on %d samples",
			len(c.need.Grams), len(c.need.Norms), len(c.need.Tensors), c.ds.N)
	}
	c.captures++
	st, err := Capture(c.ctx, c.m, c.ds, c.need)
	if err != nil {
		c.need = before
		return nil, err
	}
	c.st = st
	if !has(c.st) { // cannot happen: the capture held what was asked
		return nil, fmt.Errorf("%w: the capture lacks a statistic it was asked for", ErrCapture)
	}
	return c.st, nil
}

// InputGram implements calib.Stats.
func (c *Calibrator) InputGram(weight string) ([]float64, int, int64, error) {
	st, err := c.stats(func(st *Stats) bool { return slices.Contains(st.GramWeights(), weight) },
		calib.Request{Grams: []string{weight}})
	if err != nil {
		return nil, 0, 0, err
	}
	return st.InputGram(weight)
}

// SquaredColumnNorms implements calib.Stats.
func (c *Calibrator) SquaredColumnNorms(weight string) ([]float64, int64, error) {
	st, err := c.stats(func(st *Stats) bool { _, _, err := st.SquaredColumnNorms(weight); return err == nil },
		calib.Request{Norms: []string{weight}})
	if err != nil {
		return nil, 0, err
	}
	return st.SquaredColumnNorms(weight)
}

// ActivationRange implements calib.Stats.
func (c *Calibrator) ActivationRange(tensor string) (float64, float64, error) {
	st, err := c.stats(func(st *Stats) bool { _, ok := st.Tensor(tensor); return ok },
		calib.Request{Tensors: []string{tensor}})
	if err != nil {
		return 0, 0, err
	}
	return st.ActivationRange(tensor)
}

// ActivationHistogram implements calib.Stats (with the declared number of
// bins, DefaultBins when none was declared).
func (c *Calibrator) ActivationHistogram(tensor string) ([]int64, []float64, error) {
	st, err := c.stats(func(st *Stats) bool { ts, ok := st.Tensor(tensor); return ok && ts.Hist != nil },
		calib.Request{Tensors: []string{tensor}, Bins: -1})
	if err != nil {
		return nil, nil, err
	}
	return st.ActivationHistogram(tensor)
}

// DefaultBins is the histogram resolution a Calibrator captures when a
// histogram is read that no declaration sized.
const DefaultBins = 2048
