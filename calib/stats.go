// Package calib is onnxpost's one calibration subsystem: the interface
// every data-aware transform reads its activation statistics through
// (Stats), the accumulator that computes them batch by batch in float64
// (Accumulator: input Gram matrices XᵀX, squared column norms, ranges and
// histograms), and an in-memory implementation from captured activations
// (FromActivations). The streaming capture (evalharness.Capture) feeds the
// same Accumulator from ONNX Runtime batches, so the two agree by
// construction; package calibtest holds the conformance suite every
// implementation passes.
//
// Who reads what: Wanda reads SquaredColumnNorms; SparseGPT, GPTQ and
// lowrank's whitening read InputGram; static quantization reads
// ActivationRange and ActivationHistogram.
//
// Memory: an Accumulator holds d² float64s per Gram, d per norms-only
// layer, a few numbers (and the bins) per tensor, plus what one batch
// needs (an im2col chunk of at most Request.Im2colChunk float64s). It never
// keeps activations across batches.
package calib

import (
	"errors"
	"fmt"
)

// Stats gives the calibration statistics of one model state over one
// dataset. Every slice returned is the caller's to keep and to overwrite
// (SparseGPT and GPTQ factor the Gram in place): an implementation never
// returns a slice it holds on to.
type Stats interface {
	// InputGram returns XᵀX (d×d, row-major, float64) of the input
	// activations X (n rows) of the node that consumes the initializer
	// weight: d is K for MatMul B [K, N] and Gemm B (transB-aware; with
	// transA the rows of X are A's columns), and (C/group)·∏kernel for a
	// Conv W [O, C/group, k…] through the im2col view (channel-major, then
	// kernel axes; with group > 1 the patches of all groups are pooled, one
	// XᵀX serving every output channel).
	InputGram(weight string) (xtx []float64, d int, n int64, err error)
	// SquaredColumnNorms returns ‖X_j‖₂² = Σ_r x_rj² for each of the d
	// input columns of weight's consumer over its n rows: the diagonal of
	// InputGram, bit for bit, without the d² memory when only norms were
	// collected. (Wanda scores with √(‖X_j‖₂²/n).)
	SquaredColumnNorms(weight string) (sq []float64, n int64, err error)
	// ActivationRange returns the smallest and largest value a tensor took.
	// A tensor that held NaN or ±Inf is refused with ErrNonFinite: a range
	// that leaves them out would clip them silently.
	ActivationRange(tensor string) (lo, hi float64, err error)
	// ActivationHistogram returns the histogram of every value a tensor
	// took: len(edges) == len(counts)+1, counts[i] values in
	// [edges[i], edges[i+1]) (the last bin closed), edges[0] the smallest
	// value and edges[last] the largest (numpy.histogram's conventions; a
	// constant tensor v gets [v−0.5, v+0.5]). Non-finite values: as
	// ActivationRange.
	ActivationHistogram(tensor string) (counts []int64, edges []float64, err error)
}

var (
	// ErrMissing reports a statistic that was not collected (a weight or
	// tensor not requested, or a histogram without bins).
	ErrMissing = errors.New("calib: statistic not collected")
	// ErrNonFinite reports activations holding NaN or ±Inf where the
	// statistic needs finite values.
	ErrNonFinite = errors.New("calib: non-finite activations")
	// ErrUnsupported reports a request the model cannot serve (a weight
	// that is not a MatMul B, Gemm B or Conv W, a Conv of rank > 2, a
	// shape that does not match).
	ErrUnsupported = errors.New("calib: unsupported calibration request")
)

// Missing is a Stats with nothing collected: every method returns
// ErrMissing. Embed it in a fake that serves only some statistics.
type Missing struct{}

// None is a Stats with nothing collected (Missing). It stands for
// calibration a transform does not need (or not yet).
var None Stats = Missing{}

var _ Stats = Missing{}

// InputGram implements Stats: ErrMissing.
func (Missing) InputGram(w string) ([]float64, int, int64, error) {
	return nil, 0, 0, fmt.Errorf("%w: no calibration for %q", ErrMissing, w)
}

// SquaredColumnNorms implements Stats: ErrMissing.
func (Missing) SquaredColumnNorms(w string) ([]float64, int64, error) {
	return nil, 0, fmt.Errorf("%w: no calibration for %q", ErrMissing, w)
}

// ActivationRange implements Stats: ErrMissing.
func (Missing) ActivationRange(t string) (float64, float64, error) {
	return 0, 0, fmt.Errorf("%w: no calibration for %q", ErrMissing, t)
}

// ActivationHistogram implements Stats: ErrMissing.
func (Missing) ActivationHistogram(t string) ([]int64, []float64, error) {
	return nil, nil, fmt.Errorf("%w: no calibration for %q", ErrMissing, t)
}
