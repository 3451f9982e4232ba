package evalharness

import (
	"context"
	"errors"
	"fmt"

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
	// Batch is the number of samples per run (default 64).
	Batch int
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
	// MaxBatchBytes, when > 0, bounds the activations one batch fetches
	// (ONNX Runtime's outputs and their float64 copies), which grow with
	// the batch and the sequence length: each pass first runs one sample
	// to measure them and lowers Batch so that a batch fits (one sample at
	// least; not for a model with a fixed batch). The statistics are then
	// those of the lower batch size (bit for bit).
	MaxBatchBytes int64
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

// capturePass runs m over ds once per pass of acc (a session exposing the
// values acc needs, on a derived model) and feeds it every batch.
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
	var runner Runner
	if len(fetch) > 0 {
		c := m.Derive()
		for _, v := range fetch {
			vi, ok := c.ValueInfo(v)
			if !ok {
				vi = onnxio.ValueInfo{Name: v}
			}
			c.AddOutput(vi)
		}
		sess, err := OpenModel(c, fetch, opt.Session)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrCapture, err)
		}
		defer sess.Close()
		runner = sess
		if err := ds.Check(sess.Inputs()); err != nil {
			return err
		}
	} else {
		if err := ds.Check(ModelInputs(m)); err != nil {
			return err
		}
	}
	batch, err := ds.BatchSize(ModelInputs(m), opt.Batch)
	if err != nil {
		return err
	}
	if opt.MaxBatchBytes > 0 && runner != nil && batch > 1 {
		// a model with a fixed batch gets it whatever is asked for
		if one, err := ds.BatchSize(ModelInputs(m), 1); err == nil && one == 1 {
			per, err := sampleBytes(runner, ds)
			if err != nil {
				return err
			}
			batch = batchWithin(batch, per, opt.MaxBatchBytes)
		}
	}
	values := func(i, j int64) (map[string][]float64, map[string][]int64, error) {
		vals := map[string][]float64{}
		shapes := map[string][]int64{}
		if runner != nil {
			outs, err := runner.Run(feed(runner, ds, i, j))
			if err != nil {
				return nil, nil, err
			}
			for k, o := range outs {
				v, err := o.Float64()
				if err != nil {
					return nil, nil, fmt.Errorf("%w: %s: %v", ErrCapture, fetch[k], err)
				}
				vals[fetch[k]], shapes[fetch[k]] = v, o.Shape
				outs[k] = nil // its float64 copy replaces it
			}
		}
		for _, name := range fromData {
			if a, ok := ds.Inputs[name]; ok {
				s := a.Slice(i, j)
				v, err := s.Float64()
				if err != nil {
					return nil, nil, err
				}
				vals[name], shapes[name] = v, s.Shape
			}
		}
		return vals, shapes, nil
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
	for again := true; again; again = acc.EndPass() {
		for i := int64(0); i < ds.N; i += batch {
			if err := ctx.Err(); err != nil {
				return err
			}
			j := min(i+batch, ds.N)
			vals, shapes, err := values(i, j)
			if err != nil {
				return err
			}
			if err := acc.Add(vals, shapes, tokenMask(i, j), j-i); err != nil {
				return fmt.Errorf("%w: %w", ErrCapture, err)
			}
		}
	}
	return nil
}

// sampleBytes runs the first sample of ds through r and returns the
// memory its outputs take in a capture: ONNX Runtime's values and their
// float64 copies.
func sampleBytes(r Runner, ds *Dataset) (int64, error) {
	outs, err := r.Run(feed(r, ds, 0, 1))
	if err != nil {
		return 0, err
	}
	var n int64
	for _, o := range outs {
		n += o.NumElements() * (int64(ElemSize(o.DType)) + 8)
	}
	return n, nil
}

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
