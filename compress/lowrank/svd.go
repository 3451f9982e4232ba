package lowrank

import (
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack"
	"gonum.org/v1/gonum/lapack/lapack64"
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

// ExactSVD computes the thin SVD of the m×n row-major matrix w with gonum's
// LAPACK (Dgesvd, as mat.SVD does), keeping all min(m, n) triplets. w is not
// modified. It returns ErrNonFinite for NaN or Inf entries and
// ErrNoConvergence when the iteration fails.
func ExactSVD(w []float64, m, n int) (*SVD, error) {
	if err := checkMatrix(w, m, n); err != nil {
		return nil, err
	}
	k := min(m, n)
	a := blas64.General{Rows: m, Cols: n, Stride: n, Data: append([]float64(nil), w...)}
	u := blas64.General{Rows: m, Cols: k, Stride: k, Data: make([]float64, m*k)}
	vt := blas64.General{Rows: k, Cols: n, Stride: n, Data: make([]float64, k*n)}
	s := make([]float64, k)
	work := []float64{0}
	lapack64.Gesvd(lapack.SVDStore, lapack.SVDStore, a, u, vt, s, work, -1)
	work = make([]float64, int(work[0]))
	if !lapack64.Gesvd(lapack.SVDStore, lapack.SVDStore, a, u, vt, s, work, len(work)) {
		return nil, ErrNoConvergence
	}
	return &SVD{M: m, N: n, U: u.Data, S: s, VT: vt.Data, Total: sumSquares(w)}, nil
}

// RandomizedOptions tune RandomizedSVD.
type RandomizedOptions struct {
	// Oversample is the number of extra random directions (default 10 when 0).
	Oversample int
	// PowerIters is the number of subspace (power) iterations, each with
	// re-orthonormalization (default 2 when 0; negative means none).
	PowerIters int
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

// RandomizedSVD computes the r leading singular triplets of the m×n
// row-major matrix w by the randomized range finder of Halko, Martinsson and
// Tropp (2011): a seeded Gaussian test matrix with r+Oversample columns,
// PowerIters subspace iterations with QR re-orthonormalization, then the
// exact SVD of the small projected matrix. It pays off when r ≪ min(m, n).
// The result holds min(r, m, n) triplets and Total = ‖w‖²_F exactly.
func RandomizedSVD(w []float64, m, n, r int, opt RandomizedOptions) (*SVD, error) {
	if err := checkMatrix(w, m, n); err != nil {
		return nil, err
	}
	if r < 1 {
		panic(fmt.Errorf("%w: rank %d < 1", ErrShape, r))
	}
	p, q := opt.defaults()
	k := min(m, n)
	r = min(r, k)
	l := min(r+p, k)
	rng := rand.New(rand.NewPCG(opt.Seed, 0x9e3779b97f4a7c15))
	W := blas64.General{Rows: m, Cols: n, Stride: n, Data: w}
	omega := blas64.General{Rows: n, Cols: l, Stride: l, Data: make([]float64, n*l)}
	for i := range omega.Data {
		omega.Data[i] = rng.NormFloat64()
	}
	y := blas64.General{Rows: m, Cols: l, Stride: l, Data: make([]float64, m*l)}
	blas64.Gemm(blas.NoTrans, blas.NoTrans, 1, W, omega, 0, y)
	orthonormalize(y)
	z := blas64.General{Rows: n, Cols: l, Stride: l, Data: omega.Data}
	for it := 0; it < q; it++ {
		blas64.Gemm(blas.Trans, blas.NoTrans, 1, W, y, 0, z)
		orthonormalize(z)
		blas64.Gemm(blas.NoTrans, blas.NoTrans, 1, W, z, 0, y)
		orthonormalize(y)
	}
	// B = Qᵀ·W (l×n), small; its exact SVD B = Ub·Σ·Vᵀ gives U = Q·Ub.
	bm := make([]float64, l*n)
	blas64.Gemm(blas.Trans, blas.NoTrans, 1, y, W, 0, blas64.General{Rows: l, Cols: n, Stride: n, Data: bm})
	small, err := ExactSVD(bm, l, n)
	if err != nil {
		return nil, err
	}
	// small.U is l×l (l ≤ n).
	u := make([]float64, m*r)
	blas64.Gemm(blas.NoTrans, blas.NoTrans, 1, y,
		blas64.General{Rows: l, Cols: r, Stride: small.K(), Data: small.U},
		0, blas64.General{Rows: m, Cols: r, Stride: r, Data: u})
	return &SVD{
		M: m, N: n,
		U:     u,
		S:     append([]float64(nil), small.S[:r]...),
		VT:    append([]float64(nil), small.VT[:r*n]...),
		Total: sumSquares(w),
	}, nil
}

// orthonormalize replaces the columns of the tall matrix a (rows ≥ cols) by
// an orthonormal basis of their span (thin QR, Q kept in place).
func orthonormalize(a blas64.General) {
	tau := make([]float64, a.Cols)
	work := []float64{0}
	lapack64.Geqrf(a, tau, work, -1)
	lw := int(work[0])
	lapack64.Orgqr(a, tau, work, -1)
	lw = max(lw, int(work[0]), a.Cols, 1)
	work = make([]float64, lw)
	lapack64.Geqrf(a, tau, work, lw)
	lapack64.Orgqr(a, tau, work, lw)
}

// Method picks the SVD algorithm.
type Method int

const (
	// Auto uses the randomized SVD when the rank is known in advance and
	// small (r+oversample ≤ min(m,n)/4), the exact SVD otherwise.
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

// useRandomized reports whether method m should use the randomized SVD for
// an m×n matrix at a rank r known in advance (r ≤ 0: not known).
func (meth Method) useRandomized(m, n, r int, opt RandomizedOptions) bool {
	if r <= 0 || r >= min(m, n) {
		return false
	}
	switch meth {
	case Randomized:
		return true
	case Exact:
		return false
	}
	p, _ := opt.defaults()
	return 4*(r+p) <= min(m, n)
}
