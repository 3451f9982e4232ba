// Package linalg owns onnxpost's choice of dense linear-algebra backend for
// the heavy float64 kernels: the SVD of compress/lowrank, the Cholesky
// factorizations and triangular inverses of quant's GPTQ and sparsity's
// SparseGPT, and the matrix products around them.
//
// # Backends
//
// Two backends implement gonum's interfaces (blas.Float64 and
// lapack.Float64, row-major, the conventions of blas64 and lapack64):
//
//   - "openblas": OpenBLAS (Debian's libopenblas0, which bundles LAPACK),
//     loaded with dlopen at run time. The kernels that matter (Dgemm, Dsyrk,
//     Dtrmm, Dtrsm, Dpotrf, Dpotri, Dtrtri, Dgesvd, and the divide-and-conquer
//     SVD Dgesdd) call the library; every other method falls through to
//     gonum's pure-Go code.
//   - "go": gonum's pure-Go BLAS and LAPACK, always present.
//
// The library is probed once, on first use: nothing links against it, so
// the module builds with or without it, and with CGO_ENABLED=0 (then only
// "go" exists). The environment variable ONNXPOST_LINALG picks the backend:
// "go" forces the pure-Go one, "openblas" requires the library (Check
// reports its absence), empty or "auto" takes OpenBLAS when it loads.
//
// The library is looked up by its soname through the dynamic loader's
// ordinary search (LD_LIBRARY_PATH, the ld.so cache, the system library
// folders), never in the working directory.
//
// # Scope
//
// The choice is not installed globally: blas64.Use and lapack64.Use are
// never called, so gonum's mat and every other package keep gonum's own
// code. Callers that want the backend call this package's functions (or
// pass BLAS() and LAPACK() on explicitly).
//
// # Numerics
//
// Results of the two backends agree to rounding, not bit for bit: OpenBLAS
// blocks and threads its sums differently, and SVD uses Dgesdd there and
// Dgesvd in pure Go. Singular values agree to about 1e-13 relative; singular
// vectors of distinct singular values agree up to sign.
package linalg

import (
	"fmt"
	"os"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/blas64"
	gonumblas "gonum.org/v1/gonum/blas/gonum"
	"gonum.org/v1/gonum/lapack"
	gonumlapack "gonum.org/v1/gonum/lapack/gonum"
)

// EnvVar is the environment variable that picks the backend: "go",
// "openblas", or "auto" (the default when empty).
const EnvVar = "ONNXPOST_LINALG"

// Backend is one implementation of the kernels.
type Backend interface {
	// Name is "openblas" or "go".
	Name() string
	// BLAS returns the backend's level 1–3 BLAS (row-major, gonum's
	// conventions).
	BLAS() blas.Float64
	// LAPACK returns the backend's LAPACK (row-major, gonum's conventions).
	LAPACK() lapack.Float64
	// SVD computes the thin SVD a = u·diag(s)·vt of the m×n matrix a
	// (overwritten), with k = min(m, n): s has k values (non-increasing),
	// u is m×k and vt is k×n. It reports false when the iteration did not
	// converge.
	SVD(a blas64.General, s []float64, u, vt blas64.General) bool
	// Orthonormalize replaces the columns of the tall matrix a (Rows ≥
	// Cols) by an orthonormal basis of their span (the Q of a thin QR).
	Orthonormalize(a blas64.General)
}

// Pure returns gonum's pure-Go backend.
func Pure() Backend { return pureBackend{} }

var (
	once     sync.Once
	chosen   Backend
	probeErr error
	envErr   error
)

func choose() {
	once.Do(func() { chosen, probeErr, envErr = selectBackend(os.Getenv(EnvVar)) })
}

// selectBackend picks the backend for an ONNXPOST_LINALG value: the
// backend, why OpenBLAS is not in use (when probed and absent), and an
// error for a value that asks for something that cannot be had (the
// pure-Go backend is then returned).
func selectBackend(mode string) (b Backend, probe, env error) {
	switch mode {
	case "go":
		return Pure(), nil, nil
	case "", "auto", "openblas":
	default:
		return Pure(), nil, fmt.Errorf("linalg: %s=%q: want go, openblas or auto", EnvVar, mode)
	}
	ob, err := OpenBLAS()
	if err != nil {
		if mode == "openblas" {
			return Pure(), err, fmt.Errorf("linalg: %s=openblas: %w", EnvVar, err)
		}
		return Pure(), err, nil
	}
	return ob, nil, nil
}

// Default returns the backend in use: OpenBLAS when it loads and
// ONNXPOST_LINALG does not say "go", the pure-Go one otherwise.
func Default() Backend {
	choose()
	return chosen
}

// Check returns an error when ONNXPOST_LINALG asks for something that
// cannot be had (an unknown value, or "openblas" without the library); the
// pure-Go backend is then in use.
func Check() error {
	choose()
	return envErr
}

// Describe returns a one-line account of the backend in use and, when it
// is the pure-Go one by default, why OpenBLAS is not.
func Describe() string {
	choose()
	if chosen.Name() != "go" {
		return chosen.Name()
	}
	if probeErr != nil && envErr == nil && os.Getenv(EnvVar) != "go" {
		return "go (" + probeErr.Error() + ")"
	}
	return "go"
}

// BLAS returns the default backend's BLAS.
func BLAS() blas.Float64 { return Default().BLAS() }

// LAPACK returns the default backend's LAPACK.
func LAPACK() lapack.Float64 { return Default().LAPACK() }

// Gemm computes c = alpha·op(a)·op(b) + beta·c with the default backend.
func Gemm(tA, tB blas.Transpose, alpha float64, a, b blas64.General, beta float64, c blas64.General) {
	m, n, k := c.Rows, c.Cols, a.Cols
	if tA != blas.NoTrans {
		k = a.Rows
	}
	BLAS().Dgemm(tA, tB, m, n, k, alpha, a.Data, max(1, a.Stride), b.Data, max(1, b.Stride), beta, c.Data, max(1, c.Stride))
}

// Sgemm computes c = alpha·op(a)·op(b) + beta·c in float32 with the
// default backend (both backends' BLAS implement blas.Float32 too).
func Sgemm(tA, tB blas.Transpose, alpha float32, a, b blas32.General, beta float32, c blas32.General) {
	m, n, k := c.Rows, c.Cols, a.Cols
	if tA != blas.NoTrans {
		k = a.Rows
	}
	BLAS().(blas.Float32).Sgemm(tA, tB, m, n, k, alpha, a.Data, max(1, a.Stride), b.Data, max(1, b.Stride), beta, c.Data, max(1, c.Stride))
}

// Syrk computes the triangle c.Uplo of c = alpha·a·aᵀ + beta·c (t NoTrans)
// or alpha·aᵀ·a + beta·c (t Trans) with the default backend.
func Syrk(t blas.Transpose, alpha float64, a blas64.General, beta float64, c blas64.Symmetric) {
	k := a.Cols
	if t != blas.NoTrans {
		k = a.Rows
	}
	BLAS().Dsyrk(c.Uplo, t, c.N, k, alpha, a.Data, max(1, a.Stride), beta, c.Data, max(1, c.Stride))
}

// Trmm computes b = alpha·op(a)·b (s Left) or alpha·b·op(a) (s Right), a
// triangular, with the default backend.
func Trmm(s blas.Side, tA blas.Transpose, alpha float64, a blas64.Triangular, b blas64.General) {
	BLAS().Dtrmm(s, a.Uplo, tA, a.Diag, b.Rows, b.Cols, alpha, a.Data, max(1, a.Stride), b.Data, max(1, b.Stride))
}

// Trsm solves op(a)·x = alpha·b (s Left) or x·op(a) = alpha·b (s Right)
// for x, stored in b, with the default backend.
func Trsm(s blas.Side, tA blas.Transpose, alpha float64, a blas64.Triangular, b blas64.General) {
	BLAS().Dtrsm(s, a.Uplo, tA, a.Diag, b.Rows, b.Cols, alpha, a.Data, max(1, a.Stride), b.Data, max(1, b.Stride))
}

// Potrf computes the Cholesky factor of the symmetric positive definite a
// in place (the triangle a.Uplo) with the default backend. It reports
// false when a is not positive definite.
func Potrf(a blas64.Symmetric) (blas64.Triangular, bool) {
	ok := LAPACK().Dpotrf(a.Uplo, a.N, a.Data, max(1, a.Stride))
	return blas64.Triangular{Uplo: a.Uplo, Diag: blas.NonUnit, N: a.N, Stride: a.Stride, Data: a.Data}, ok
}

// Potri computes the inverse of a symmetric positive definite matrix from
// its Cholesky factor t (as Potrf left it), in place, with the default
// backend. It reports false when t is singular.
func Potri(t blas64.Triangular) (blas64.Symmetric, bool) {
	ok := LAPACK().Dpotri(t.Uplo, t.N, t.Data, max(1, t.Stride))
	return blas64.Symmetric{Uplo: t.Uplo, N: t.N, Stride: t.Stride, Data: t.Data}, ok
}

// Trtri inverts the triangular t in place with the default backend. It
// reports false when t is singular.
func Trtri(t blas64.Triangular) bool {
	return LAPACK().Dtrtri(t.Uplo, t.Diag, t.N, t.Data, max(1, t.Stride))
}

// SVD computes the thin SVD of a (overwritten) with the default backend;
// see Backend.SVD.
func SVD(a blas64.General, s []float64, u, vt blas64.General) bool {
	return Default().SVD(a, s, u, vt)
}

// Orthonormalize replaces the columns of the tall a by an orthonormal
// basis of their span with the default backend.
func Orthonormalize(a blas64.General) { Default().Orthonormalize(a) }

// pureBackend is gonum's pure-Go code.
type pureBackend struct{}

func (pureBackend) Name() string           { return "go" }
func (pureBackend) BLAS() blas.Float64     { return gonumblas.Implementation{} }
func (pureBackend) LAPACK() lapack.Float64 { return gonumlapack.Implementation{} }

func (pureBackend) SVD(a blas64.General, s []float64, u, vt blas64.General) bool {
	return svdWith(gonumlapack.Implementation{}, a, s, u, vt)
}

func (pureBackend) Orthonormalize(a blas64.General) {
	orthonormalizeQR(gonumlapack.Implementation{}, a)
}

// checkSVD panics on inconsistent SVD arguments (a caller bug).
func checkSVD(a blas64.General, s []float64, u, vt blas64.General) {
	m, n := a.Rows, a.Cols
	k := min(m, n)
	if len(s) < k || u.Rows != m || u.Cols != k || vt.Rows != k || vt.Cols != n {
		panic(fmt.Sprintf("linalg: SVD of %d×%d into s[%d], u %d×%d, vt %d×%d", m, n, len(s), u.Rows, u.Cols, vt.Rows, vt.Cols))
	}
}

// svdWith runs Dgesvd (thin) through l.
func svdWith(l lapack.Float64, a blas64.General, s []float64, u, vt blas64.General) bool {
	checkSVD(a, s, u, vt)
	m, n := a.Rows, a.Cols
	work := []float64{0}
	l.Dgesvd(lapack.SVDStore, lapack.SVDStore, m, n, a.Data, max(1, a.Stride), s, u.Data, max(1, u.Stride), vt.Data, max(1, vt.Stride), work, -1)
	work = make([]float64, max(1, int(work[0])))
	return l.Dgesvd(lapack.SVDStore, lapack.SVDStore, m, n, a.Data, max(1, a.Stride), s, u.Data, max(1, u.Stride), vt.Data, max(1, vt.Stride), work, len(work))
}

// orthonormalizeQR is Dgeqrf followed by Dorgqr through l.
func orthonormalizeQR(l lapack.Float64, a blas64.General) {
	if a.Cols == 0 {
		return
	}
	tau := make([]float64, a.Cols)
	work := []float64{0}
	l.Dgeqrf(a.Rows, a.Cols, a.Data, a.Stride, tau, work, -1)
	lw := int(work[0])
	l.Dorgqr(a.Rows, a.Cols, a.Cols, a.Data, a.Stride, tau, work, -1)
	lw = max(lw, int(work[0]), a.Cols, 1)
	work = make([]float64, lw)
	l.Dgeqrf(a.Rows, a.Cols, a.Data, a.Stride, tau, work, lw)
	l.Dorgqr(a.Rows, a.Cols, a.Cols, a.Data, a.Stride, tau, work, lw)
}
