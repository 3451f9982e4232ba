package lowrank

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"

	"github.com/onnxpost/onnxpost/internal/linalg"
)

// DefaultDamp is the default relative damping of XᵀX: λ = DefaultDamp ·
// mean(diag XᵀX) is added to the diagonal before the Cholesky factorization.
const DefaultDamp = 0.01

// Whitener holds the lower Cholesky factor L of XᵀX + λI (XᵀX = the Gram of
// a layer's input): ‖(W−Ŵ)·Xᵀ‖²_F = ‖(W−Ŵ)·L‖²_F (up to λ‖W−Ŵ‖²_F), so the
// truncated SVD of W·L, unwhitened by L⁻¹, is the best rank-r approximation
// of W in the calibration data's output error (SVD-LLM's truncation-aware
// whitening).
type Whitener struct {
	// D is the reduction size: W is m×D.
	D int
	// L is the D×D lower-triangular factor, row-major, zeros above the
	// diagonal.
	L []float64
	// Lambda is the damping actually added to the diagonal (absolute).
	Lambda float64
}

// NewWhitener factorizes xtx + λI with λ = damp·mean(diag xtx). When the
// damped matrix is still not positive definite (rounding, a singular Gram
// with damp = 0), λ grows tenfold from max(λ, 1e-8·mean diag) until the
// Cholesky factorization succeeds, up to λ = mean diag. xtx is not
// modified. It returns ErrCalibration for a zero or non-finite Gram.
func NewWhitener(xtx []float64, d int, damp float64) (*Whitener, error) {
	if d < 1 || len(xtx) != d*d {
		return nil, fmt.Errorf("%w: Gram of %d values for d=%d", ErrCalibration, len(xtx), d)
	}
	if damp < 0 || math.IsNaN(damp) {
		return nil, fmt.Errorf("%w: damping %g < 0", ErrOption, damp)
	}
	var tr float64
	for i := 0; i < d; i++ {
		tr += xtx[i*d+i]
	}
	for _, v := range xtx {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%w: non-finite XᵀX", ErrCalibration)
		}
	}
	mean := tr / float64(d)
	if !(mean > 0) {
		return nil, fmt.Errorf("%w: XᵀX has no positive diagonal (the input is all zeros)", ErrCalibration)
	}
	lambda := damp * mean
	buf := make([]float64, d*d)
	for {
		copy(buf, xtx)
		for i := 0; i < d; i++ {
			buf[i*d+i] += lambda
		}
		if _, ok := linalg.Potrf(blas64.Symmetric{Uplo: blas.Lower, N: d, Stride: d, Data: buf}); ok {
			break
		}
		if lambda >= mean {
			return nil, fmt.Errorf("%w: XᵀX + %g·I is not positive definite", ErrCalibration, lambda)
		}
		lambda = math.Min(mean, math.Max(10*lambda, 1e-8*mean))
	}
	for i := 0; i < d; i++ {
		clear(buf[i*d+i+1 : (i+1)*d])
	}
	return &Whitener{D: d, L: buf, Lambda: lambda}, nil
}

func (wh *Whitener) tri() blas64.Triangular {
	return blas64.Triangular{Uplo: blas.Lower, Diag: blas.NonUnit, N: wh.D, Stride: wh.D, Data: wh.L}
}

// Whiten returns W·L for the m×D row-major matrix w (w is not modified).
func (wh *Whitener) Whiten(w []float64, m int) []float64 {
	if len(w) != m*wh.D {
		panic(fmt.Errorf("%w: %d values for a %d×%d matrix", ErrShape, len(w), m, wh.D))
	}
	out := append([]float64(nil), w...)
	linalg.Trmm(blas.Right, blas.NoTrans, 1, wh.tri(), blas64.General{Rows: m, Cols: wh.D, Stride: wh.D, Data: out})
	return out
}

// Unwhiten returns B·L⁻¹ for the r×D row-major matrix b (a triangular solve;
// b is not modified).
func (wh *Whitener) Unwhiten(b []float64, r int) []float64 {
	if len(b) != r*wh.D {
		panic(fmt.Errorf("%w: %d values for a %d×%d matrix", ErrShape, len(b), r, wh.D))
	}
	out := append([]float64(nil), b...)
	linalg.Trsm(blas.Right, blas.NoTrans, 1, wh.tri(), blas64.General{Rows: r, Cols: wh.D, Stride: wh.D, Data: out})
	return out
}

// Decompose computes the SVD used to factorize the m×n matrix w (out×in):
// of w itself, or of w·L when wh is not nil (wh.D must equal n). prior is
// the rank when known before the SVD (0 otherwise); with it, meth may pick
// the randomized SVD (see Method).
func Decompose(w []float64, m, n int, wh *Whitener, prior int, meth Method, ro RandomizedOptions) (*SVD, error) {
	if wh != nil {
		if wh.D != n {
			return nil, fmt.Errorf("%w: calibration Gram is %d×%d, the weight's reduction size is %d", ErrCalibration, wh.D, wh.D, n)
		}
		w = wh.Whiten(w, m)
	}
	return decompose(w, m, n, prior, meth, ro)
}

// Factorize returns the rank-r factors A (m×r) and B (r×n) of the
// decomposition s, unwhitened when wh is not nil: A·B is then the best
// rank-r approximation of W in the whitened norm.
func Factorize(s *SVD, r int, wh *Whitener) (a, b []float64) {
	a, b = s.Factors(r)
	if wh != nil {
		b = wh.Unwhiten(b, r)
	}
	return a, b
}
