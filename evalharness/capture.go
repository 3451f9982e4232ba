package evalharness

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/onnxio"
)

// CaptureOptions configure Capture.
type CaptureOptions struct {
	// Grams lists weight initializers (MatMul B, Gemm B, Conv W) whose
	// consumer's input Gram matrix XᵀX to accumulate (see Stats.InputGram).
	Grams []string
	// Norms lists weights whose consumer's input squared column norms only
	// to accumulate (d values instead of d², Wanda; see
	// Stats.SquaredColumnNorms).
	Norms []string
	// Tensors lists value names (node outputs or graph inputs) whose
	// min, max and, with Bins > 0, histogram to collect.
	Tensors []string
	// Bins is the number of histogram bins per tensor (0: no histograms).
	// Histograms take a second pass over the data: the first finds each
	// tensor's range.
	Bins int
	// Batch is the largest number of samples per run (default 64); see
	// MaxBatchBytes.
	Batch int
	// MaxBatchBytes bounds the bytes one run holds: the activations it
	// fetches (as the session returns them; ONNX Runtime holds as many
	// while it runs) and the float64 buffer they are converted into, one
	// value at a time (a sample at a time when the value's first axis is
	// the samples'). Capture first measures these bytes for one sample
	// (for the batch of a model whose batch dimension is fixed), then
	// runs the data in batches of as many samples as fit (at least one,
	// at most Batch; a fixed batch stays). When one sample's values
	// exceed the budget, ONNX Runtime sessions on the CPU fetch them in
	// groups that fit, in graph order, one session and one pass over the
	// data each (a value larger than the budget alone), with the same
	// statistics, bit for bit; see capturePass. 0 means
	// DefaultMaxBatchBytes; a negative value, no bound (Batch samples per
	// run, every value in one run). The statistics accumulate row after
	// row into running sums, so they do not depend on how the data is cut
	// into batches; ONNX Runtime's activations may, in the last bits, so
	// the measuring run is not accumulated and a capture whose Batch fits
	// the budget gives the statistics of Batch-sample runs, as before.
	MaxBatchBytes int64
	// Session configures the ONNX Runtime session.
	Session SessionOptions
	// MaxGramBytes, when > 0, bounds the memory of the Grams held at once.
	// When the Grams asked for need more, Capture accumulates none of them
	// up front: InputGram and SquaredColumnNorms compute each on demand,
	// together with the Grams that follow it in Grams' order as far as they
	// fit, in one more pass over the data, freeing the group held before
	// (calib.Request.MaxGramBytes). A caller that asks in Grams' order
	// (layer by layer) thus makes about total/MaxGramBytes passes and holds
	// one group at a time; Stats.GramPasses counts them.
	MaxGramBytes int64
}

// Stats holds activation statistics accumulated over a dataset, with memory
// bounded by one batch of activations plus the statistics themselves. It
// is calib.Collected, onnxpost's calibration statistics: it implements
// calib.Stats, the one interface the compression and quantization packages
// read calibration through.
type Stats = calib.Collected

// TensorStats holds the statistics of one tensor over the dataset (see
// calib.TensorStats).
type TensorStats = calib.TensorStats

// Histogram counts values in equal-width bins (see calib.Histogram).
type Histogram = calib.Histogram

var _ calib.Stats = (*Stats)(nil)

// DefaultMaxBatchBytes is CaptureOptions.MaxBatchBytes when it is 0: the
// activations of one run, at most 64 MiB unless a single sample needs
// more.
const DefaultMaxBatchBytes = 64 << 20

// im2colChunkElems bounds the im2col buffer of one Conv (float64s). (A
// variable so that tests exercise several chunks.)
var im2colChunkElems = 1 << 20

// ErrCapture reports a capture request the model does not support.
var ErrCapture = errors.New("evalharness: cannot capture activations")

// Capture runs m over ds with the activations that opt asks for exposed as
// graph outputs (on a copy of the model), and accumulates their statistics
// batch by batch in float64. It stops with ctx's error, checked before
// every batch, when ctx is cancelled.
//
// With an attention_mask input and an [N, T] mask in the dataset, the
// positions it marks 0 (padding) are left out of the Grams and tensor
// statistics of every activation that has one row per token position.
//
// Non-finite activations: a Gram refuses them (ErrNonFinite); tensor
// statistics count them (TensorStats.NaNs, Infs) and leave them out of the
// range and histogram, so the caller decides (TensorStats.Finite).
func Capture(ctx context.Context, m *onnxio.Model, ds *Dataset, opt CaptureOptions) (*Stats, error) {
	acc, err := calib.NewAccumulator(m, calib.Request{Grams: opt.Grams, Norms: opt.Norms, Tensors: opt.Tensors, Bins: opt.Bins,
		Im2colChunk: im2colChunkElems, MaxGramBytes: opt.MaxGramBytes})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCapture, err)
	}
	// Grams computed on demand run later passes: they read the model as
	// it is now (a derived snapshot), whatever the caller edits meanwhile
	// (a transform pruning weight after weight in place).
	snap := m.Derive()
	st, err := acc.Collect(func(a *calib.Accumulator) error { return capturePass(ctx, snap, ds, opt, a) })
	if err != nil {
		return nil, err
	}
	if st.Samples == 0 {
		st.Samples = ds.N // Grams on demand: no pass has run yet
	}
	return st, nil
}

// capturePass runs m over ds once per pass of acc (sessions exposing the
// values acc needs, on derived models) and feeds it every batch.
//
// With a budget (CaptureOptions.MaxBatchBytes), the bytes one run of the
// values holds are measured first. On ONNX Runtime's CPU provider they are
// read from a profile of one plain run of the graph the runtime optimized
// with every value exposed (optimizedForGroups), which holds no more than
// a plain run does. With another engine (SessionOptions.Open), on the CUDA
// provider and for models mapped from their data files (MapAbove) they
// come from one run fetching every value when the batch axis is free, as
// batch sizing alone needs them, and there are no groups: the graph these
// run cannot be held fixed across sessions of different outputs. When one
// run's worth of the values (one sample, or the model's fixed batch) fits
// the budget, batches are as large as fit and one session fetches every
// value. When it does not, and the sessions are ONNX Runtime's on the
// CPU, the values are fetched in groups, in graph
// order, each a session of its own whose run fits the budget (a value
// larger than it alone), one run's worth of samples at a time; group after
// group goes over the data (one session open at a time). The groups' run
// on ONNX Runtime's optimized graph with optimizations off, so each value
// is computed as the session fetching them all computes it, bit for bit.
func capturePass(ctx context.Context, m *onnxio.Model, ds *Dataset, opt CaptureOptions, acc *calib.Accumulator) error {
	// Values to fetch: graph inputs come from the batch itself.
	isInput := map[string]bool{}
	for _, in := range m.Inputs() {
		isInput[in.Name] = true
	}
	var fetch, fromData []string
	for _, v := range acc.Values() { // sorted
		if isInput[v] {
			fromData = append(fromData, v)
		} else {
			fetch = append(fetch, v)
		}
	}
	var c *onnxio.Model
	if len(fetch) > 0 {
		c = m.Derive()
		for _, v := range fetch {
			vi, ok := c.ValueInfo(v)
			if !ok {
				vi = onnxio.ValueInfo{Name: v}
			}
			c.AddOutput(vi)
		}
	}
	if err := ds.Check(ModelInputs(m)); err != nil {
		return err
	}
	batch, err := ds.BatchSize(ModelInputs(m), opt.Batch)
	if err != nil {
		return err
	}
	// Token positions the attention_mask marks as padding stay out of
	// every statistic: activations with one row per position lose those
	// rows (calib.KeepRows).
	tokenMask := func(i, j int64) []bool {
		if !isInput["attention_mask"] {
			return nil
		}
		return ds.TokenMask(i, j)
	}
	// piece returns the elements of the pieces value name of a run of n
	// samples is converted and accumulated in: one per sample when its
	// first axis is the samples' (the statistics do not depend on the
	// cut), else the whole value.
	piece := func(name string, s valueSize, n int64) int64 {
		if n > 1 && s.dim0 == n && acc.Divisible(name) {
			return s.elems / n
		}
		return s.elems
	}
	// held returns the bytes Capture holds for a run of n samples whose
	// fetched values have sizes: the values and the float64 buffer, which
	// takes the largest piece of a value (inputs from the data included).
	held := func(sizes map[string]valueSize, n int64) int64 {
		var h, largest int64
		for _, v := range fetch {
			s := sizes[v]
			h += s.bytes
			largest = max(largest, piece(v, s, n))
		}
		for _, name := range fromData {
			if a, ok := ds.Inputs[name]; ok {
				largest = max(largest, piece(name, sizeOf(a.Slice(0, n)), n))
			}
		}
		return h + 8*largest
	}
	// open opens a session on src returning values, checked against the
	// data.
	open := func(src *onnxio.Model, values []string, so SessionOptions) (SessionRunner, error) {
		sess, err := OpenModel(src, values, so)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCapture, err)
		}
		if err := ds.Check(sess.Inputs()); err != nil {
			sess.Close()
			return nil, err
		}
		return sess, nil
	}
	// measure runs samples [0, n) through a session fetching every value
	// and returns their sizes.
	measure := func(runner Runner, n int64) (map[string]valueSize, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		outs, err := runner.Run(feed(runner, ds, 0, n))
		if err != nil {
			return nil, err
		}
		sizes := map[string]valueSize{}
		for k, o := range outs {
			sizes[fetch[k]] = sizeOf(o)
		}
		return sizes, nil
	}
	// addValue accumulates value a of samples [i, j) piece by piece, each
	// converted to float64 in one reused buffer; a nil a is a value the
	// batch lacks.
	var buf []float64
	addValue := func(name string, a *Array, i, j int64, mask []bool) error {
		if a == nil {
			return acc.AddValue(name, nil, nil, mask)
		}
		n := j - i
		p := int64(1)
		if n > 1 && len(a.Shape) > 0 && a.Shape[0] == n && acc.Divisible(name) {
			p = n // (as piece)
		}
		if int64(len(mask))%n != 0 {
			p = 1 // (the mask has one flag per position of every sample)
		}
		for s := int64(0); s < p; s++ {
			part, m := a, mask
			if p > 1 {
				part = a.Slice(s, s+1)
				if mask != nil {
					per := int64(len(mask)) / n
					m = mask[s*per : (s+1)*per]
				}
			}
			var err error
			if buf, err = part.Float64Into(buf); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if err := acc.AddValue(name, buf, part.Shape, m); err != nil {
				return err
			}
		}
		return nil
	}
	// pass runs the data through runner (nil: no values to fetch) in
	// batches, accumulating values (what runner returns, in order) and,
	// with data, the values taken from the data and the samples' count.
	pass := func(runner Runner, values []string, data bool) error {
		for i := int64(0); i < ds.N; i += batch {
			if err := ctx.Err(); err != nil {
				return err
			}
			j := min(i+batch, ds.N)
			var outs []*Array
			if runner != nil {
				var err error
				if outs, err = runner.Run(feed(runner, ds, i, j)); err != nil {
					return err
				}
			}
			mask := tokenMask(i, j)
			for k, o := range outs {
				outs[k] = nil // collectable once accumulated
				if err := addValue(values[k], o, i, j, mask); err != nil {
					return fmt.Errorf("%w: %w", ErrCapture, err)
				}
			}
			if !data {
				continue
			}
			for _, name := range fromData {
				var v *Array
				if a, ok := ds.Inputs[name]; ok {
					v = a.Slice(i, j)
				}
				if err := addValue(name, v, i, j, mask); err != nil {
					return fmt.Errorf("%w: %w", ErrCapture, err)
				}
			}
			if err := acc.AddSamples(j - i); err != nil {
				return fmt.Errorf("%w: %w", ErrCapture, err)
			}
		}
		return nil
	}
	budget := opt.MaxBatchBytes
	if budget == 0 {
		budget = DefaultMaxBatchBytes
	}
	free := !ds.batchFixed(ModelInputs(m))
	unit := int64(1) // samples of the smallest run
	if !free {
		unit = batch
	}
	// The measuring run is not accumulated: ONNX Runtime's results may
	// differ in the last bits between batch sizes, so the statistics are
	// those of the runs that follow.
	var groups [][]string
	var src *onnxio.Model
	groupOpt := opt.Session
	var all SessionRunner // the session fetching every value, when open
	defer func() {
		if all != nil {
			all.Close()
		}
	}()
	if len(fetch) > 0 && budget > 0 {
		var sizes map[string]valueSize
		groupable := true
		switch {
		case opt.Session.Open == nil && (opt.Session.EP == "" || strings.EqualFold(opt.Session.EP, "cpu")) && c.ExternalBytes() <= MapAbove:
			if src, sizes, err = optimizedForGroups(c, fetch, ds, unit, opt.Session); err != nil {
				return fmt.Errorf("%w: %w", ErrCapture, err)
			}
			groupOpt.DisableOptimizations = true
		default:
			groupable = false
			if free && batch > 1 {
				if all, err = open(c, fetch, opt.Session); err != nil {
					return err
				}
				if sizes, err = measure(all, 1); err != nil {
					return err
				}
			}
		}
		switch h := held(sizes, unit); {
		case sizes == nil:
		case h <= budget || !groupable:
			if free {
				batch = batchWithin(batch, h, budget)
			}
			src = nil // (collectable)
		default:
			batch = unit
			groups = fetchGroups(graphOrder(src, fetch), sizes, func(v string, s valueSize) int64 { return piece(v, s, unit) }, budget)
		}
	}
	for again := true; again; again = acc.EndPass() {
		if groups == nil {
			if len(fetch) > 0 && all == nil {
				if all, err = open(c, fetch, opt.Session); err != nil {
					return err
				}
			}
			var r Runner
			if all != nil {
				r = all
			}
			if err := pass(r, fetch, true); err != nil {
				return err
			}
			continue
		}
		if all != nil {
			all.Close()
			all = nil
		}
		for gi, g := range groups {
			sess, err := open(withOutputs(src, g), g, groupOpt)
			if err != nil {
				return err
			}
			if groupHook != nil {
				sess = groupHook(g, sess)
			}
			err = pass(sess, g, gi == 0)
			if cerr := sess.Close(); err == nil {
				err = cerr
			}
			releaseFreed() // (for the next group's session)
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// groupHook, when set (tests), wraps the session of every group.
var groupHook func(group []string, s SessionRunner) SessionRunner

// batchWithin returns the largest batch size up to batch whose samples of
// per bytes each fit in budget, at least 1.
func batchWithin(batch, per, budget int64) int64 {
	if per <= 0 {
		return batch
	}
	return max(1, min(batch, budget/per))
}

// ModelInputs describes m's graph inputs that are not initializers as
// Dataset.Check takes them (symbolic dimensions -1, with their names), so
// that a dataset can be checked against a model before any session exists.
func ModelInputs(m *onnxio.Model) []TensorInfo {
	ins := m.Inputs()
	infos := make([]TensorInfo, len(ins))
	for i, in := range ins {
		infos[i] = TensorInfo{Name: in.Name, DType: in.DType, Shape: dimsOf(in.Shape), DimParams: paramsOf(in.Shape)}
	}
	return infos
}

// dimsOf converts a value's dims (-1 for symbolic or unknown ones); nil
// (unknown rank) stays nil.
func dimsOf(ds []onnxio.Dim) []int64 {
	if ds == nil {
		return nil
	}
	out := make([]int64, len(ds))
	for i, d := range ds {
		out[i] = d.Value
		if d.Param != "" || d.Value <= 0 {
			out[i] = -1
		}
	}
	return out
}

// ErrNonFinite reports captured activations that hold NaN or ±Inf where
// the statistics asked for need finite values (calib.ErrNonFinite).
var ErrNonFinite = calib.ErrNonFinite
