package lowrank

import (
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack"

	"github.com/onnxpost/onnxpost/internal/linalg"
)

// SVD is a thin, possibly truncated, singular value decomposition of an m×n
// matrix W ≈ U·diag(S)·Vᵀ. Everything is float64 and row-major.
type SVD struct {
	M, N int
	// U is M×K, its columns are the left singular vectors.
	U []float64
	// S holds the K singular values, non-increasing.
	S []float64
	// VT is K×N, its rows are the right singular vectors.
	VT []float64
	// Total is ‖W‖²_F, the sum of all σᵢ², also when the decomposition holds
	// fewer than min(M, N) triplets (randomized SVD).
	Total float64

	// how records the algorithm that produced the decomposition ("exact"
	// or "randomized") and iters the power iterations it ran, for tests.
	how   string
	iters int
}

// K returns the number of singular triplets held.
func (s *SVD) K() int { return len(s.S) }

// Kept returns Σ_{i<r} σᵢ², the squared Frobenius norm of the best rank-r
// approximation.
func (s *SVD) Kept(r int) float64 {
	var sum float64
	for i := 0; i < r && i < len(s.S); i++ {
		sum += s.S[i] * s.S[i]
	}
	return sum
}

// Energy returns the fraction of ‖W‖²_F kept by the first r triplets,
// Σ_{i<r} σᵢ² / Σ σᵢ² (1 for a zero matrix).
func (s *SVD) Energy(r int) float64 {
	if s.Total <= 0 {
		return 1
	}
	return math.Min(1, s.Kept(r)/s.Total)
}

// Tail returns Σ_{i≥r} σᵢ² = ‖W − W_r‖²_F by Eckart–Young (never negative).
func (s *SVD) Tail(r int) float64 {
	return math.Max(0, s.Total-s.Kept(r))
}

// Factors returns the rank-r factors A = U_r·√Σ_r (M×r) and B = √Σ_r·V_rᵀ
// (r×N), so that A·B is the best rank-r approximation of W. It panics
// (ErrShape) when r is outside [1, K].
func (s *SVD) Factors(r int) (a, b []float64) {
	if r < 1 || r > len(s.S) {
		panic(fmt.Errorf("%w: rank %d outside [1, %d]", ErrShape, r, len(s.S)))
	}
	a = make([]float64, s.M*r)
	b = make([]float64, r*s.N)
	k := len(s.S)
	for j := 0; j < r; j++ {
		q := math.Sqrt(s.S[j])
		for i := 0; i < s.M; i++ {
			a[i*r+j] = s.U[i*k+j] * q
		}
		row := s.VT[j*s.N : (j+1)*s.N]
		dst := b[j*s.N : (j+1)*s.N]
		for i, v := range row {
			dst[i] = v * q
		}
	}
	return a, b
}

func checkMatrix(w []float64, m, n int) error {
	if m < 1 || n < 1 || len(w) != m*n {
		panic(fmt.Errorf("%w: %d values for a %d×%d matrix", ErrShape, len(w), m, n))
	}
	for _, v := range w {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return ErrNonFinite
		}
	}
	return nil
}

func sumSquares(w []float64) float64 {
	var s float64
	for _, v := range w {
		s += v * v
	}
	return s
}

// ExactSVD computes the thin SVD of the m×n row-major matrix w, keeping all
// min(m, n) triplets, with the linear-algebra backend of internal/linalg:
// OpenBLAS's divide-and-conquer Dgesdd when the library is present, gonum's
// pure-Go Dgesvd otherwise (ONNXPOST_LINALG=go forces it). w is not
// modified. It returns ErrNonFinite for NaN or Inf entries and
// ErrNoConvergence when the iteration fails.
func ExactSVD(w []float64, m, n int) (*SVD, error) {
	return exactSVD(linalg.Default(), w, m, n)
}

func exactSVD(be linalg.Backend, w []float64, m, n int) (*SVD, error) {
	if err := checkMatrix(w, m, n); err != nil {
		return nil, err
	}
	k := min(m, n)
	a := blas64.General{Rows: m, Cols: n, Stride: n, Data: append([]float64(nil), w...)}
	u := blas64.General{Rows: m, Cols: k, Stride: k, Data: make([]float64, m*k)}
	vt := blas64.General{Rows: k, Cols: n, Stride: n, Data: make([]float64, k*n)}
	s := make([]float64, k)
	if !be.SVD(a, s, u, vt) {
		return nil, ErrNoConvergence
	}
	return &SVD{M: m, N: n, U: u.Data, S: s, VT: vt.Data, Total: sumSquares(w), how: "exact"}, nil
}

// DefaultTol is the default RandomizedOptions.Tol: the randomized SVD
// iterates until the kept energy Σ_{i<r} σᵢ² is estimated within 1e-5
// relative of its limit, a tenth of the 1e-4 that it promises.
const DefaultTol = 1e-5

// DefaultMaxPowerIters is the default RandomizedOptions.MaxPowerIters.
const DefaultMaxPowerIters = 60

// RandomizedOptions tune RandomizedSVD.
type RandomizedOptions struct {
	// Oversample is the number of extra random directions (default 10 when 0).
	Oversample int
	// PowerIters is the least number of subspace (power) iterations, each
	// with re-orthonormalization (default 2 when 0; negative means none).
	// With Tol ≥ 0, more follow until the kept energy has converged.
	PowerIters int
	// Tol is the relative accuracy asked of the kept energy Σ_{i<r} σᵢ²
	// (default DefaultTol when 0). The iteration stops when the last change
	// of the estimate, extrapolated geometrically with the larger of the
	// observed contraction and the Ritz ratio (σ̃_l/σ̃_r)⁴, bounds the
	// remaining gap below Tol·estimate. When that cannot happen within
	// MaxPowerIters, RandomizedSVD computes the exact SVD instead. Negative:
	// run exactly PowerIters iterations, with no check and no fallback.
	Tol float64
	// MaxPowerIters caps the iterations (default DefaultMaxPowerIters when
	// 0).
	MaxPowerIters int
	// Seed makes the Gaussian test matrix reproducible.
	Seed uint64
}

func (o RandomizedOptions) defaults() (p, q int) {
	p, q = o.Oversample, o.PowerIters
	if p <= 0 {
		p = 10
	}
	if q == 0 {
		q = 2
	}
	if q < 0 {
		q = 0
	}
	return p, q
}

func (o RandomizedOptions) tol() (tol float64, maxIters int) {
	tol, maxIters = o.Tol, o.MaxPowerIters
	if tol == 0 {
		tol = DefaultTol
	}
	if maxIters <= 0 {
		maxIters = DefaultMaxPowerIters
	}
	return tol, maxIters
}

// RandomizedSVD computes the r leading singular triplets of the m×n
// row-major matrix w by the randomized range finder of Halko, Martinsson and
// Tropp (2011): a seeded Gaussian test matrix with l = r+Oversample columns,
// subspace (power) iterations with QR re-orthonormalization, then the exact
// SVD of the small projected matrix. The number of iterations adapts to the
// spectrum (see RandomizedOptions.Tol): where the leading r singular values
// stand well above σ_l it stops after a few; where the spectrum is flat the
// iteration cannot converge cheaply and the exact SVD is computed instead,
// so the kept energy is always within Tol of the optimum (up to the
// estimate). The result holds min(r, m, n) triplets and Total = ‖w‖²_F
// exactly.
func RandomizedSVD(w []float64, m, n, r int, opt RandomizedOptions) (*SVD, error) {
	if err := checkMatrix(w, m, n); err != nil {
		return nil, err
	}
	if r < 1 {
		panic(fmt.Errorf("%w: rank %d < 1", ErrShape, r))
	}
	_, maxIters := opt.tol()
	s, err := randomizedSVD(linalg.Default(), w, m, n, r, opt, maxIters)
	if err != nil || s != nil {
		return s, err
	}
	return ExactSVD(w, m, n)
}

// randomizedSVD is RandomizedSVD with at most maxIters power iterations;
// it returns nil, nil when the kept energy has not converged by then (or
// provably will not), and the caller computes the exact SVD.
func randomizedSVD(be linalg.Backend, w []float64, m, n, r int, opt RandomizedOptions, maxIters int) (*SVD, error) {
	p, qmin := opt.defaults()
	tol, _ := opt.tol()
	k := min(m, n)
	r = min(r, k)
	l := min(r+p, k)
	if l == k {
		// The sketch spans the whole row or column space: exact after
		// the first product, whatever the spectrum.
		qmin, tol = 0, -1
	}
	adaptive := tol > 0
	maxIters = max(maxIters, qmin)
	rng := rand.New(rand.NewPCG(opt.Seed, 0x9e3779b97f4a7c15))
	W := blas64.General{Rows: m, Cols: n, Stride: n, Data: w}
	y := blas64.General{Rows: m, Cols: l, Stride: l, Data: make([]float64, m*l)}
	z := blas64.General{Rows: n, Cols: l, Stride: l, Data: make([]float64, n*l)}
	for i := range z.Data {
		z.Data[i] = rng.NormFloat64()
	}
	linalg.Gemm(blas.NoTrans, blas.NoTrans, 1, W, z, 0, y)
	be.Orthonormalize(y)
	var kept, prevDelta float64
	it := 0
	for {
		// z = Wᵀ·Q = Bᵀ, B = Qᵀ·W the projection onto the current basis.
		linalg.Gemm(blas.Trans, blas.NoTrans, 1, W, y, 0, z)
		done := it >= qmin
		if adaptive {
			ritz := ritzValues(z)
			est := 0.0
			for i := 0; i < r; i++ {
				est += ritz[i]
			}
			if it > 0 {
				delta := est - kept
				rho := 0.0
				if ritz[r-1] > 0 {
					rho = math.Pow(ritz[l-1]/ritz[r-1], 2) // (σ̃_l/σ̃_r)⁴
				}
				if prevDelta > 0 && delta > 0 {
					rho = math.Max(rho, delta/prevDelta)
				}
				rho = math.Min(rho, 0.9999)
				gap := math.Max(delta, 0) * rho / (1 - rho)
				converged := math.Abs(delta) <= tol*est && gap <= tol*est
				done = done && converged
				if !converged && delta > 0 && rho > 0 {
					// Iterations still needed for the extrapolated gap to
					// fall below tol·est: beyond the cap, stop now.
					need := math.Log(tol*est/gap) / math.Log(rho)
					if float64(it)+need > float64(maxIters) {
						return nil, nil
					}
				}
				prevDelta = delta
			} else {
				done = false
			}
			kept = est
		}
		if done {
			break
		}
		if it >= maxIters {
			return nil, nil
		}
		be.Orthonormalize(z)
		linalg.Gemm(blas.NoTrans, blas.NoTrans, 1, W, z, 0, y)
		be.Orthonormalize(y)
		it++
	}
	// B = zᵀ (l×n), small; its exact SVD B = Ub·Σ·Vᵀ gives U = Q·Ub.
	bm := make([]float64, l*n)
	for i := 0; i < n; i++ {
		for j := 0; j < l; j++ {
			bm[j*n+i] = z.Data[i*l+j]
		}
	}
	small, err := exactSVD(be, bm, l, n)
	if err != nil {
		return nil, err
	}
	// small.U is l×l (l ≤ n).
	u := make([]float64, m*r)
	linalg.Gemm(blas.NoTrans, blas.NoTrans, 1, y,
		blas64.General{Rows: l, Cols: r, Stride: small.K(), Data: small.U},
		0, blas64.General{Rows: m, Cols: r, Stride: r, Data: u})
	return &SVD{
		M: m, N: n,
		U:     u,
		S:     append([]float64(nil), small.S[:r]...),
		VT:    append([]float64(nil), small.VT[:r*n]...),
		Total: sumSquares(w),
		how:   "randomized",
		iters: it,
	}, nil
}

// ritzValues returns the eigenvalues of zᵀz (the squared singular values of
// the projection Qᵀ·W), non-increasing.
func ritzValues(z blas64.General) []float64 {
	l := z.Cols
	g := blas64.Symmetric{Uplo: blas.Upper, N: l, Stride: l, Data: make([]float64, l*l)}
	linalg.Syrk(blas.Trans, 1, z, 0, g)
	ev := make([]float64, l)
	work := []float64{0}
	lp := linalg.LAPACK()
	lp.Dsyev(lapack.EVNone, blas.Upper, l, g.Data, l, ev, work, -1)
	work = make([]float64, max(1, int(work[0])))
	lp.Dsyev(lapack.EVNone, blas.Upper, l, g.Data, l, ev, work, len(work))
	for i, j := 0, l-1; i < j; i, j = i+1, j-1 {
		ev[i], ev[j] = ev[j], ev[i]
	}
	for i := range ev {
		ev[i] = math.Max(ev[i], 0)
	}
	return ev
}

// Method picks the SVD algorithm.
type Method int

const (
	// Auto uses the exact SVD unless the rank is known in advance and the
	// cost model (see AutoChoice) predicts the randomized SVD, with the
	// fewest power iterations, to be at least 3× faster; the randomized
	// SVD then gets at most half the exact SVD's predicted time for its
	// iterations, and falls back to the exact SVD when its kept energy
	// would not converge within that.
	Auto Method = iota
	// Exact always uses ExactSVD.
	Exact
	// Randomized uses RandomizedSVD whenever the rank is known in advance.
	Randomized
)

// String returns the method's flag spelling.
func (m Method) String() string {
	switch m {
	case Exact:
		return "exact"
	case Randomized:
		return "randomized"
	}
	return "auto"
}

// ParseMethod parses "auto", "exact" or "randomized".
func ParseMethod(s string) (Method, error) {
	switch s {
	case "", "auto":
		return Auto, nil
	case "exact":
		return Exact, nil
	case "randomized":
		return Randomized, nil
	}
	return Auto, fmt.Errorf("%w: SVD method %q (want auto, exact or randomized)", ErrOption, s)
}

// Cost model of Auto. Rates are effective float64 flop/s of each backend on
// the reference machine (2 shared vCPUs, docs/BENCHMARKS.md); only their
// ratios and the cheap threshold matter.
type svdRates struct{ gemm, qr, svd float64 }

var backendRates = map[string]svdRates{
	"openblas": {gemm: 5e10, qr: 4e9, svd: 2e10},
	"go":       {gemm: 1.4e10, qr: 8e9, svd: 2.6e9},
}

const (
	// autoCheap is the predicted exact-SVD time (seconds) under which Auto
	// never considers the randomized SVD.
	autoCheap = 0.05
	// autoMargin is how much faster the randomized SVD with its minimum of
	// power iterations must be predicted to be.
	autoMargin = 3.0
)

func rates() svdRates {
	if r, ok := backendRates[linalg.Default().Name()]; ok {
		return r
	}
	return backendRates["go"]
}

// exactSeconds predicts the exact thin SVD's time: 6·M·k² + 20·k³ flops
// (R-bidiagonalization, both vector sets; k = min, M = max dimension).
func exactSeconds(rt svdRates, m, n int) float64 {
	M, k := float64(max(m, n)), float64(min(m, n))
	return (6*M*k*k + 20*k*k*k) / rt.svd
}

// randomizedSeconds predicts the randomized SVD's time with q power
// iterations and sketch width l for rank r: 2q+2 products with W of 2·m·n·l
// flops, 2q+1 QRs of 4·rows·l², the Ritz Grams, and the small exact SVD.
func randomizedSeconds(rt svdRates, m, n, r, l, q int) float64 {
	M, N, L, Q := float64(m), float64(n), float64(l), float64(q)
	gemm := (2*Q+2)*2*M*N*L + (Q+1)*2*N*L*L + 2*M*L*float64(r)
	qr := (Q+1)*4*M*L*L + Q*4*N*L*L
	return gemm/rt.gemm + qr/rt.qr + exactSeconds(rt, l, n)
}

// AutoChoice reports what Auto does for an m×n matrix at rank r (r ≤ 0:
// not known before the SVD): randomized is true when it tries the
// randomized SVD first, and maxIters is the cap on its power iterations
// (half the exact SVD's predicted time).
func AutoChoice(m, n, r int, opt RandomizedOptions) (randomized bool, maxIters int) {
	if r <= 0 || r >= min(m, n) {
		return false, 0
	}
	rt := rates()
	te := exactSeconds(rt, m, n)
	if te <= autoCheap {
		return false, 0
	}
	p, qmin := opt.defaults()
	l := min(r+p, min(m, n))
	if autoMargin*randomizedSeconds(rt, m, n, r, l, qmin) > te {
		return false, 0
	}
	_, limit := opt.tol()
	q := qmin
	for q < limit && randomizedSeconds(rt, m, n, r, l, q+1) <= te/2 {
		q++
	}
	return true, q
}

// decompose runs the SVD that meth picks for an m×n matrix at a rank
// prior known in advance (0: not known).
func decompose(w []float64, m, n, prior int, meth Method, ro RandomizedOptions) (*SVD, error) {
	if prior <= 0 || prior >= min(m, n) || meth == Exact {
		return ExactSVD(w, m, n)
	}
	if meth == Randomized {
		return RandomizedSVD(w, m, n, prior, ro)
	}
	try, maxIters := AutoChoice(m, n, prior, ro)
	if !try {
		return ExactSVD(w, m, n)
	}
	if err := checkMatrix(w, m, n); err != nil {
		return nil, err
	}
	s, err := randomizedSVD(linalg.Default(), w, m, n, prior, ro, maxIters)
	if err != nil || s != nil {
		return s, err
	}
	return ExactSVD(w, m, n)
}
