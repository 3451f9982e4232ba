package pipeline

import (
	"context"
	"fmt"
	"regexp"

	"github.com/onnxpost/onnxpost/compress/lowrank"
	"github.com/onnxpost/onnxpost/compress/sparsity"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/quant"
)

// CalibOptions says how calibration data runs through a model: the
// statistics the transforms need (input Gram matrices, activation
// histograms) are computed with ONNX Runtime on at most Samples samples.
type CalibOptions struct {
	// Session opens the ONNX Runtime sessions.
	Session evalharness.SessionOptions
	// Batch is the batch size of the runs (0: the harness default).
	Batch int
	// Samples bounds the samples used (the dataset's first ones; 0: all).
	Samples int64
}

// DefaultCalibSamples is the number of calibration samples the command
// line uses by default (--calib-samples).
const DefaultCalibSamples = 256

func (o CalibOptions) head(ds *evalharness.Dataset) *evalharness.Dataset {
	if o.Samples > 0 && ds.N > o.Samples {
		return ds.Head(o.Samples)
	}
	return ds
}

// LowrankCalibration captures XᵀX of the inputs of the layers
// lowrank.Apply will decompose with opt (evalharness.Capture, accumulated
// batch by batch). With no layer selected it captures nothing and returns
// a calibration that has no Gram matrix.
func LowrankCalibration(ctx context.Context, model *onnxio.Model, ds *evalharness.Dataset, opt lowrank.Options, co CalibOptions) (lowrank.Calibration, error) {
	opt.Calib = noCalibration{}
	names, err := lowrank.Candidates(model, opt)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return noCalibration{}, nil
	}
	st, err := evalharness.Capture(ctx, model, co.head(ds), evalharness.CaptureOptions{Grams: names, Batch: co.Batch, Session: co.Session})
	if err != nil {
		return nil, fmt.Errorf("calibration on %s: %w", ds.Path, err)
	}
	return st, nil
}

// noCalibration stands for a calibration not captured (no layer needs
// one).
type noCalibration struct{}

func (noCalibration) InputGram(weight string) ([]float64, int, int64, error) {
	return nil, 0, 0, fmt.Errorf("no calibration captured for %s", weight)
}

// QuantStats are the captured statistics quant.Quantize reads: input Gram
// matrices (quant.Calibration, for GPTQ) and activation histograms
// (quant.ActivationStats, for static int8).
type QuantStats struct{ *evalharness.Stats }

// ActivationHistogram returns the captured histogram of tensor; an
// activation holding NaN or ±Inf is an error (a range that leaves them out
// would quantize them to the clip value silently).
func (h *QuantStats) ActivationHistogram(tensor string) ([]int64, []float64, error) {
	ts, ok := h.Tensor(tensor)
	if !ok || ts.Hist == nil {
		return nil, nil, fmt.Errorf("no histogram was captured for %s", tensor)
	}
	if err := ts.Finite(); err != nil {
		return nil, nil, err
	}
	return ts.Hist.Counts, ts.Hist.Edges(), nil
}

// QuantCalibration runs model over ds with evalharness.Capture, collecting
// what opt needs: histograms of the activations to quantize (static int8)
// and the input Gram matrices of the weights (GPTQ). Set both
// opt.Calibration and opt.Stats to the result. Capture identifies
// consumers by node name: call model.EnsureNodeNames first.
func QuantCalibration(ctx context.Context, model *onnxio.Model, ds *evalharness.Dataset, opt quant.Options, co CalibOptions) (*QuantStats, error) {
	cap := evalharness.CaptureOptions{Batch: co.Batch, Session: co.Session}
	var err error
	if opt.Activations == "int8" {
		if cap.Tensors, err = quant.ActivationTensors(model, opt); err != nil {
			return nil, err
		}
		cap.Bins = 2048
	}
	if opt.Method == "gptq" {
		if cap.Grams, err = quant.GramWeights(model, opt); err != nil {
			return nil, err
		}
	}
	st, err := evalharness.Capture(ctx, model, co.head(ds), cap)
	if err != nil {
		return nil, fmt.Errorf("calibration on %s: %w", ds.Path, err)
	}
	return &QuantStats{st}, nil
}

// SparsityCalibration runs model over ds with the inputs of the layers sel
// picks as extra outputs and returns them as a sparsity.Captured, which
// computes each layer's XᵀX (im2col for Conv). Padded token positions
// (attention_mask 0) stay out of XᵀX.
func SparsityCalibration(ctx context.Context, model *onnxio.Model, ds *evalharness.Dataset, sel sparsity.Selection, co CalibOptions) (sparsity.Calibration, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ds = co.head(ds)
	names, err := sparsity.ActivationTensors(model, sel)
	if err != nil {
		return nil, err
	}
	acts := map[string]sparsity.Activation{}
	var outs []string
	for _, n := range names {
		if a, ok := ds.Inputs[n]; ok {
			v, err := arrayFloat32(a)
			if err != nil {
				return nil, fmt.Errorf("calibration input %s: %w", n, err)
			}
			acts[n] = sparsity.Activation{Shape: a.Shape, Data: v}
			continue
		}
		outs = append(outs, n)
	}
	if len(outs) > 0 {
		m := model.Clone()
		for _, n := range outs {
			m.AddOutput(onnxio.ValueInfo{Name: n})
		}
		b, err := m.Bytes()
		if err != nil {
			return nil, err
		}
		sess, err := evalharness.NewSessionOutputs(b, outs, co.Session)
		if err != nil {
			return nil, fmt.Errorf("calibration session: %w", err)
		}
		defer sess.Close()
		batch := co.Batch
		if batch <= 0 {
			batch = 64
		}
		arrs, err := evalharness.Predict(sess, ds, batch)
		if err != nil {
			return nil, fmt.Errorf("calibration run: %w", err)
		}
		var mask []bool
		if hasInput(model, "attention_mask") {
			mask = ds.TokenMask(0, ds.N)
		}
		for i, info := range sess.Outputs() {
			v, err := arrayFloat32(arrs[i])
			if err != nil {
				return nil, fmt.Errorf("activation %s: %w", info.Name, err)
			}
			shape := arrs[i].Shape
			if sparsity.RowActivation(model, info.Name) {
				v, shape = evalharness.KeepRows(v, shape, mask)
			}
			acts[info.Name] = sparsity.Activation{Shape: shape, Data: v}
		}
	}
	return sparsity.NewCaptured(model, acts)
}

// SequentialSparsityCalibration captures a layer's input on model as it
// is when the layer's turn comes: sparsity.PruneModel prunes in graph
// order and writes each layer back before asking for the next one's XᵀX,
// so the inputs of later layers come from the already pruned ones (as the
// SparseGPT and Wanda reference code do). One calibration run per layer.
func SequentialSparsityCalibration(ctx context.Context, model *onnxio.Model, ds *evalharness.Dataset, co CalibOptions) sparsity.Calibration {
	return &liveCalibration{ctx: ctx, model: model, ds: ds, co: co}
}

type liveCalibration struct {
	ctx   context.Context
	model *onnxio.Model
	ds    *evalharness.Dataset
	co    CalibOptions
}

func (l *liveCalibration) InputGram(weight string) ([]float64, int, int64, error) {
	re := regexp.MustCompile("^" + regexp.QuoteMeta(weight) + "$")
	cal, err := SparsityCalibration(l.ctx, l.model, l.ds, sparsity.Selection{Include: re}, l.co)
	if err != nil {
		return nil, 0, 0, err
	}
	return cal.InputGram(weight)
}

// hasInput reports whether m has a graph input named name.
func hasInput(m *onnxio.Model, name string) bool {
	for _, in := range m.Inputs() {
		if in.Name == name {
			return true
		}
	}
	return false
}

// arrayFloat32 returns an array's values as float32.
func arrayFloat32(a *evalharness.Array) ([]float32, error) {
	f, err := a.Float64()
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(f))
	for i, v := range f {
		out[i] = float32(v)
	}
	return out, nil
}
