package pipeline

import (
	"context"
	"fmt"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/compress/lowrank"
	"github.com/onnxpost/onnxpost/compress/sparsity"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/quant"
)

// CalibOptions says how calibration data runs through a model: the
// statistics the transforms read (calib.Stats) are captured with
// evalharness.Capture on at most Samples samples.
type CalibOptions struct {
	// Session opens the ONNX Runtime sessions.
	Session evalharness.SessionOptions
	// Batch is the batch size of the runs (0: the harness default).
	Batch int
	// Samples bounds the samples used (the dataset's first ones; 0: all).
	Samples int64
	// MaxGramBytes bounds the Grams held at once: beyond it they are
	// computed on demand in groups (evalharness.CaptureOptions.MaxGramBytes;
	// 0: no bound).
	MaxGramBytes int64
	// MaxBatchBytes bounds the activations one batch fetches: beyond it
	// the batch is lowered (evalharness.CaptureOptions.MaxBatchBytes; 0:
	// evalharness.DefaultMaxBatchBytes, negative: no bound).
	MaxBatchBytes int64
}

// Calibrate runs evalharness.Capture of model over ds (at most Samples
// samples, in batches of Batch) for the statistics co names.
func Calibrate(ctx context.Context, model *onnxio.Model, ds *evalharness.Dataset, co evalharness.CaptureOptions, opt CalibOptions) (*evalharness.Stats, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opt.Samples > 0 && ds.N > opt.Samples {
		ds = ds.Head(opt.Samples)
	}
	co.Session, co.Batch, co.MaxGramBytes, co.MaxBatchBytes = opt.Session, opt.Batch, opt.MaxGramBytes, opt.MaxBatchBytes
	st, err := evalharness.Capture(ctx, model, ds, co)
	if err != nil {
		return nil, fmt.Errorf("calibration on %s: %w", ds.Path, err)
	}
	return st, nil
}

// LowrankCalibration captures XᵀX of the inputs of the layers
// lowrank.Apply will decompose with lopt; with no layer selected it
// captures nothing (calib.None).
func LowrankCalibration(ctx context.Context, model *onnxio.Model, ds *evalharness.Dataset, lopt lowrank.Options, opt CalibOptions) (calib.Stats, error) {
	lopt.Calib = calib.None // not read by Candidates: it only has to be set
	names, err := lowrank.Candidates(model, lopt)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return calib.None, nil
	}
	return Calibrate(ctx, model, ds, evalharness.CaptureOptions{Grams: names}, opt)
}

// QuantCalibration captures what qopt needs, in one pass: histograms of
// the activations to quantize (static int8) and the input Gram matrices
// of the weights (GPTQ). Set both qopt.Calibration and qopt.Stats to the
// result. Capture identifies consumers by node name: call
// model.EnsureNodeNames first.
func QuantCalibration(ctx context.Context, model *onnxio.Model, ds *evalharness.Dataset, qopt quant.Options, opt CalibOptions) (*evalharness.Stats, error) {
	var co evalharness.CaptureOptions
	var err error
	if qopt.Activations == "int8" {
		if co.Tensors, err = quant.ActivationTensors(model, qopt); err != nil {
			return nil, err
		}
		co.Bins = evalharness.DefaultBins
	}
	if qopt.Method == "gptq" {
		if co.Grams, err = quant.GramWeights(model, qopt); err != nil {
			return nil, err
		}
	}
	return Calibrate(ctx, model, ds, co, opt)
}

// SparsityCalibration captures, in one streaming pass, what method reads
// of every layer sparsity.PruneModel will prune with sel: the column norms
// (Wanda) or XᵀX (SparseGPT, im2col for Conv).
func SparsityCalibration(ctx context.Context, model *onnxio.Model, ds *evalharness.Dataset, sel sparsity.Selection, method sparsity.Method, opt CalibOptions) (calib.Stats, error) {
	layers, _, err := sparsity.Candidates(model, sel)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(layers))
	for i, l := range layers {
		names[i] = l.Name
	}
	co := evalharness.CaptureOptions{Grams: names}
	if method == sparsity.Wanda {
		co = evalharness.CaptureOptions{Norms: names}
	}
	return Calibrate(ctx, model, ds, co, opt)
}

// SequentialSparsityCalibration captures a layer's input on model as it
// is when the layer's turn comes: sparsity.PruneModel prunes in graph
// order and writes each layer back before asking for the next one's
// statistics, so the inputs of later layers come from the already pruned
// ones (as the SparseGPT and Wanda reference code do). Each read is a new
// model state, hence a capture of its own (of that one layer).
func SequentialSparsityCalibration(ctx context.Context, model *onnxio.Model, ds *evalharness.Dataset, opt CalibOptions) calib.Stats {
	return &liveCalibration{ctx: ctx, model: model, ds: ds, opt: opt}
}

type liveCalibration struct {
	calib.Missing // ranges and histograms: sparsify reads none
	ctx           context.Context
	model         *onnxio.Model
	ds            *evalharness.Dataset
	opt           CalibOptions
}

// InputGram captures XᵀX of weight's input on the current model (SparseGPT).
func (l *liveCalibration) InputGram(weight string) ([]float64, int, int64, error) {
	st, err := Calibrate(l.ctx, l.model, l.ds, evalharness.CaptureOptions{Grams: []string{weight}}, l.opt)
	if err != nil {
		return nil, 0, 0, err
	}
	return st.InputGram(weight)
}

// SquaredColumnNorms captures the column norms of weight's input on the
// current model (Wanda).
func (l *liveCalibration) SquaredColumnNorms(weight string) ([]float64, int64, error) {
	st, err := Calibrate(l.ctx, l.model, l.ds, evalharness.CaptureOptions{Norms: []string{weight}}, l.opt)
	if err != nil {
		return nil, 0, err
	}
	return st.SquaredColumnNorms(weight)
}
