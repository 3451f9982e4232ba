//go:build cgo && unix

package linalg

/*
#cgo linux LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
#include <stddef.h>

typedef void (*dgemm_t)(int, int, int, int, int, int, double, const double*, int, const double*, int, double, double*, int);
typedef void (*sgemm_t)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
typedef void (*dsyrk_t)(int, int, int, int, int, double, const double*, int, double, double*, int);
typedef void (*dtrxm_t)(int, int, int, int, int, int, int, double, const double*, int, double*, int);
typedef void (*dgesdd_t)(const char*, const int*, const int*, double*, const int*, double*, double*, const int*, double*, const int*, double*, const int*, int*, int*, size_t);
typedef void (*dgesvd_t)(const char*, const char*, const int*, const int*, double*, const int*, double*, double*, const int*, double*, const int*, double*, const int*, int*, size_t, size_t);
typedef void (*dpotrx_t)(const char*, const int*, double*, const int*, int*, size_t);
typedef void (*dtrtri_t)(const char*, const char*, const int*, double*, const int*, int*, size_t, size_t);
typedef void (*dgeqrf_t)(const int*, const int*, double*, const int*, double*, double*, const int*, int*);
typedef void (*dorgqr_t)(const int*, const int*, const int*, double*, const int*, double*, double*, const int*, int*);
typedef char* (*str_t)(void);

static void *ob_open(const char *name) { return dlopen(name, RTLD_NOW | RTLD_LOCAL); }
static void *ob_sym(void *h, const char *name) { return dlsym(h, name); }
static const char *ob_error(void) { const char *e = dlerror(); return e ? e : "unknown error"; }

static void ob_dgemm(void *f, int tA, int tB, int m, int n, int k, double alpha, const double *a, int lda, const double *b, int ldb, double beta, double *c, int ldc) {
	((dgemm_t)f)(101, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
static void ob_sgemm(void *f, int tA, int tB, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
	((sgemm_t)f)(101, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
static void ob_dsyrk(void *f, int ul, int t, int n, int k, double alpha, const double *a, int lda, double beta, double *c, int ldc) {
	((dsyrk_t)f)(101, ul, t, n, k, alpha, a, lda, beta, c, ldc);
}
static void ob_dtrxm(void *f, int side, int ul, int tA, int diag, int m, int n, double alpha, const double *a, int lda, double *b, int ldb) {
	((dtrxm_t)f)(101, side, ul, tA, diag, m, n, alpha, a, lda, b, ldb);
}
static int ob_dgesdd(void *f, char jobz, int m, int n, double *a, int lda, double *s, double *u, int ldu, double *vt, int ldvt, double *work, int lwork, int *iwork) {
	int info = 0;
	((dgesdd_t)f)(&jobz, &m, &n, a, &lda, s, u, &ldu, vt, &ldvt, work, &lwork, iwork, &info, 1);
	return info;
}
static int ob_dgesvd(void *f, char jobu, char jobvt, int m, int n, double *a, int lda, double *s, double *u, int ldu, double *vt, int ldvt, double *work, int lwork) {
	int info = 0;
	((dgesvd_t)f)(&jobu, &jobvt, &m, &n, a, &lda, s, u, &ldu, vt, &ldvt, work, &lwork, &info, 1, 1);
	return info;
}
static int ob_dpotrx(void *f, char ul, int n, double *a, int lda) {
	int info = 0;
	((dpotrx_t)f)(&ul, &n, a, &lda, &info, 1);
	return info;
}
static int ob_dtrtri(void *f, char ul, char diag, int n, double *a, int lda) {
	int info = 0;
	((dtrtri_t)f)(&ul, &diag, &n, a, &lda, &info, 1, 1);
	return info;
}
static int ob_dgeqrf(void *f, int m, int n, double *a, int lda, double *tau, double *work, int lwork) {
	int info = 0;
	((dgeqrf_t)f)(&m, &n, a, &lda, tau, work, &lwork, &info);
	return info;
}
static int ob_dorgqr(void *f, int m, int n, int k, double *a, int lda, double *tau, double *work, int lwork) {
	int info = 0;
	((dorgqr_t)f)(&m, &n, &k, a, &lda, tau, work, &lwork, &info);
	return info;
}
static const char *ob_str(void *f) { return f ? ((str_t)f)() : ""; }
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"unsafe"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	gonumblas "gonum.org/v1/gonum/blas/gonum"
	"gonum.org/v1/gonum/lapack"
	gonumlapack "gonum.org/v1/gonum/lapack/gonum"
)

// libNames are the sonames tried, in order: Debian's runtime library (the
// alternative libopenblas0-pthread or -openmp installs), the development
// symlink, and the macOS names.
var libNames = []string{"libopenblas.so.0", "libopenblas.so", "libopenblas.dylib", "libopenblas.0.dylib"}

type openblasSyms struct {
	handle                                 unsafe.Pointer
	dgemm, dsyrk, dtrmm, dtrsm, sgemm      unsafe.Pointer
	dgesdd, dgesvd, dpotrf, dpotri, dtrtri unsafe.Pointer
	dgeqrf, dorgqr                         unsafe.Pointer
	config, corename                       string
	soname                                 string
}

var (
	obOnce sync.Once
	obSyms *openblasSyms
	obErr  error
)

// OpenBLAS returns the OpenBLAS backend, or an error saying why the library
// could not be loaded (not installed, or missing a symbol).
func OpenBLAS() (Backend, error) {
	obOnce.Do(func() { obSyms, obErr = loadOpenBLAS(libNames) })
	if obErr != nil {
		return nil, obErr
	}
	return &openblasBackend{syms: obSyms}, nil
}

// loadOpenBLAS opens the first of names that loads and resolves the
// kernels in it.
func loadOpenBLAS(names []string) (*openblasSyms, error) {
	var h unsafe.Pointer
	var tried []string
	var soname string
	for _, name := range names {
		cs := C.CString(name)
		h = C.ob_open(cs)
		C.free(unsafe.Pointer(cs))
		if h != nil {
			soname = name
			break
		}
		tried = append(tried, C.GoString(C.ob_error()))
	}
	if h == nil {
		return nil, fmt.Errorf("OpenBLAS not found (%s)", strings.Join(tried, "; "))
	}
	s := &openblasSyms{handle: h, soname: soname}
	var missing []string
	sym := func(name string) unsafe.Pointer {
		cs := C.CString(name)
		defer C.free(unsafe.Pointer(cs))
		p := C.ob_sym(h, cs)
		if p == nil {
			missing = append(missing, name)
		}
		return p
	}
	s.dgemm, s.dsyrk, s.dtrmm, s.dtrsm = sym("cblas_dgemm"), sym("cblas_dsyrk"), sym("cblas_dtrmm"), sym("cblas_dtrsm")
	s.sgemm = sym("cblas_sgemm")
	s.dgesdd, s.dgesvd = sym("dgesdd_"), sym("dgesvd_")
	s.dpotrf, s.dpotri, s.dtrtri = sym("dpotrf_"), sym("dpotri_"), sym("dtrtri_")
	s.dgeqrf, s.dorgqr = sym("dgeqrf_"), sym("dorgqr_")
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s lacks %s (an OpenBLAS built without LAPACK?)", soname, strings.Join(missing, ", "))
	}
	cfg, core := C.CString("openblas_get_config"), C.CString("openblas_get_corename")
	s.config = C.GoString(C.ob_str(C.ob_sym(h, cfg)))
	s.corename = C.GoString(C.ob_str(C.ob_sym(h, core)))
	C.free(unsafe.Pointer(cfg))
	C.free(unsafe.Pointer(core))
	return s, nil
}

// Info describes the loaded OpenBLAS (soname, build configuration and the
// kernel it picked for this CPU), or says why none is loaded.
func Info() string {
	if _, err := OpenBLAS(); err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%s: %s, core %s", obSyms.soname, strings.TrimSpace(obSyms.config), obSyms.corename)
}

var errShape = errors.New("linalg: bad dimensions")

type openblasBackend struct{ syms *openblasSyms }

func (b *openblasBackend) Name() string           { return "openblas" }
func (b *openblasBackend) BLAS() blas.Float64     { return obBLAS{s: b.syms} }
func (b *openblasBackend) LAPACK() lapack.Float64 { return obLAPACK{s: b.syms} }

// ptr returns the address of s[0], or nil for an empty slice.
func ptr(s []float64) *C.double {
	if len(s) == 0 {
		return nil
	}
	return (*C.double)(unsafe.Pointer(&s[0]))
}

// cblas enumerations (row-major 101 is fixed in the C helpers).
func cTrans(t blas.Transpose) C.int {
	if t == blas.NoTrans {
		return 111
	}
	return 112
}

func cUplo(u blas.Uplo) C.int {
	if u == blas.Upper {
		return 121
	}
	return 122
}

func cDiag(d blas.Diag) C.int {
	if d == blas.Unit {
		return 132
	}
	return 131
}

func cSide(s blas.Side) C.int {
	if s == blas.Left {
		return 141
	}
	return 142
}

// flip returns the Fortran uplo of a row-major triangle: a row-major lower
// triangle is the column-major upper one of the same buffer.
func flip(u blas.Uplo) C.char {
	if u == blas.Upper {
		return 'L'
	}
	return 'U'
}

// fits reports whether every dimension fits LP64 OpenBLAS's 32-bit int.
func fits(dims ...int) bool {
	for _, d := range dims {
		if d < 0 || d > math.MaxInt32 {
			return false
		}
	}
	return true
}

// obBLAS is gonum's BLAS with the level-3 kernels in OpenBLAS.
type obBLAS struct {
	gonumblas.Implementation
	s *openblasSyms
}

// Dgemm computes c = alpha·op(a)·op(b) + beta·c (row-major) in OpenBLAS.
func (o obBLAS) Dgemm(tA, tB blas.Transpose, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	if m == 0 || n == 0 || !fits(m, n, k, lda, ldb, ldc) {
		o.Implementation.Dgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	checkGemm(tA, tB, m, n, k, a, lda, b, ldb, c, ldc)
	C.ob_dgemm(o.s.dgemm, cTrans(tA), cTrans(tB), C.int(m), C.int(n), C.int(k), C.double(alpha), ptr(a), C.int(lda), ptr(b), C.int(ldb), C.double(beta), ptr(c), C.int(ldc))
}

// Sgemm computes c = alpha·op(a)·op(b) + beta·c (row-major, float32) in
// OpenBLAS.
func (o obBLAS) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 || !fits(m, n, k, lda, ldb, ldc) {
		o.Implementation.Sgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	ar, ac, br, bc := m, k, k, n
	if tA != blas.NoTrans {
		ar, ac = k, m
	}
	if tB != blas.NoTrans {
		br, bc = n, k
	}
	need32(a, ar, ac, lda)
	need32(b, br, bc, ldb)
	need32(c, m, n, ldc)
	C.ob_sgemm(o.s.sgemm, cTrans(tA), cTrans(tB), C.int(m), C.int(n), C.int(k), C.float(alpha), ptr32(a), C.int(lda), ptr32(b), C.int(ldb), C.float(beta), ptr32(c), C.int(ldc))
}

func ptr32(s []float32) *C.float {
	if len(s) == 0 {
		return nil
	}
	return (*C.float)(unsafe.Pointer(&s[0]))
}

func need32(s []float32, r, c, ld int) {
	if ld < max(1, c) || (r > 0 && c > 0 && len(s) < (r-1)*ld+c) {
		panic(fmt.Errorf("%w: %d×%d with stride %d in %d values", errShape, r, c, ld, len(s)))
	}
}

// Dsyrk computes the ul triangle of c = alpha·op(a)·op(a)ᵀ + beta·c in OpenBLAS.
func (o obBLAS) Dsyrk(ul blas.Uplo, tA blas.Transpose, n, k int, alpha float64, a []float64, lda int, beta float64, c []float64, ldc int) {
	if n == 0 || !fits(n, k, lda, ldc) {
		o.Implementation.Dsyrk(ul, tA, n, k, alpha, a, lda, beta, c, ldc)
		return
	}
	ar, ac := n, k
	if tA != blas.NoTrans {
		ar, ac = k, n
	}
	need(a, ar, ac, lda)
	need(c, n, n, ldc)
	C.ob_dsyrk(o.s.dsyrk, cUplo(ul), cTrans(tA), C.int(n), C.int(k), C.double(alpha), ptr(a), C.int(lda), C.double(beta), ptr(c), C.int(ldc))
}

// Dtrmm computes b = alpha·op(a)·b or alpha·b·op(a), a triangular, in OpenBLAS.
func (o obBLAS) Dtrmm(s blas.Side, ul blas.Uplo, tA blas.Transpose, d blas.Diag, m, n int, alpha float64, a []float64, lda int, b []float64, ldb int) {
	o.trxm(o.s.dtrmm, s, ul, tA, d, m, n, alpha, a, lda, b, ldb, o.Implementation.Dtrmm)
}

// Dtrsm solves op(a)·x = alpha·b or x·op(a) = alpha·b in OpenBLAS.
func (o obBLAS) Dtrsm(s blas.Side, ul blas.Uplo, tA blas.Transpose, d blas.Diag, m, n int, alpha float64, a []float64, lda int, b []float64, ldb int) {
	o.trxm(o.s.dtrsm, s, ul, tA, d, m, n, alpha, a, lda, b, ldb, o.Implementation.Dtrsm)
}

func (o obBLAS) trxm(f unsafe.Pointer, s blas.Side, ul blas.Uplo, tA blas.Transpose, d blas.Diag, m, n int, alpha float64, a []float64, lda int, b []float64, ldb int,
	fallback func(blas.Side, blas.Uplo, blas.Transpose, blas.Diag, int, int, float64, []float64, int, []float64, int)) {
	if m == 0 || n == 0 || !fits(m, n, lda, ldb) {
		fallback(s, ul, tA, d, m, n, alpha, a, lda, b, ldb)
		return
	}
	k := n
	if s == blas.Left {
		k = m
	}
	need(a, k, k, lda)
	need(b, m, n, ldb)
	C.ob_dtrxm(f, cSide(s), cUplo(ul), cTrans(tA), cDiag(d), C.int(m), C.int(n), C.double(alpha), ptr(a), C.int(lda), ptr(b), C.int(ldb))
}

// need panics (as gonum does) when the row-major r×c matrix with stride ld
// does not fit in s: OpenBLAS would read past the slice.
func need(s []float64, r, c, ld int) {
	if ld < max(1, c) || (r > 0 && c > 0 && len(s) < (r-1)*ld+c) {
		panic(fmt.Errorf("%w: %d×%d with stride %d in %d values", errShape, r, c, ld, len(s)))
	}
}

func checkGemm(tA, tB blas.Transpose, m, n, k int, a []float64, lda int, b []float64, ldb int, c []float64, ldc int) {
	if tA == blas.NoTrans {
		need(a, m, k, lda)
	} else {
		need(a, k, m, lda)
	}
	if tB == blas.NoTrans {
		need(b, k, n, ldb)
	} else {
		need(b, n, k, ldb)
	}
	need(c, m, n, ldc)
}

// obLAPACK is gonum's LAPACK with the factorizations onnxpost uses in
// OpenBLAS. A row-major matrix is the column-major transpose of the same
// buffer, so triangles swap (flip) and the SVD swaps its U and Vᵀ.
type obLAPACK struct {
	gonumlapack.Implementation
	s *openblasSyms
}

// Dpotrf computes the Cholesky factorization of a in OpenBLAS.
func (o obLAPACK) Dpotrf(ul blas.Uplo, n int, a []float64, lda int) bool {
	if n == 0 || !fits(n, lda) {
		return o.Implementation.Dpotrf(ul, n, a, lda)
	}
	need(a, n, n, lda)
	return C.ob_dpotrx(o.s.dpotrf, flip(ul), C.int(n), ptr(a), C.int(lda)) == 0
}

// Dpotri computes the inverse of a from its Cholesky factor in OpenBLAS.
func (o obLAPACK) Dpotri(ul blas.Uplo, n int, a []float64, lda int) bool {
	if n == 0 || !fits(n, lda) {
		return o.Implementation.Dpotri(ul, n, a, lda)
	}
	need(a, n, n, lda)
	return C.ob_dpotrx(o.s.dpotri, flip(ul), C.int(n), ptr(a), C.int(lda)) == 0
}

// Dtrtri inverts the triangular a in OpenBLAS.
func (o obLAPACK) Dtrtri(ul blas.Uplo, d blas.Diag, n int, a []float64, lda int) bool {
	if n == 0 || !fits(n, lda) {
		return o.Implementation.Dtrtri(ul, d, n, a, lda)
	}
	need(a, n, n, lda)
	diag := C.char('N')
	if d == blas.Unit {
		diag = 'U'
	}
	return C.ob_dtrtri(o.s.dtrtri, flip(ul), diag, C.int(n), ptr(a), C.int(lda)) == 0
}

// Dgesvd computes the SVD of the row-major a in OpenBLAS: the column-major
// SVD of aᵀ, with the roles of U and Vᵀ exchanged.
func (o obLAPACK) Dgesvd(jobU, jobVT lapack.SVDJob, m, n int, a []float64, lda int, s, u []float64, ldu int, vt []float64, ldvt int, work []float64, lwork int) bool {
	if jobU == lapack.SVDOverwrite || jobVT == lapack.SVDOverwrite || m == 0 || n == 0 || !fits(m, n, lda, ldu, ldvt, lwork) {
		return o.Implementation.Dgesvd(jobU, jobVT, m, n, a, lda, s, u, ldu, vt, ldvt, work, lwork)
	}
	if len(work) < max(1, lwork) && lwork != -1 {
		panic(fmt.Errorf("%w: Dgesvd work has %d values, lwork %d", errShape, len(work), lwork))
	}
	if lwork != -1 {
		need(a, m, n, lda)
	}
	ldu, ldvt = max(1, ldu), max(1, ldvt)
	info := C.ob_dgesvd(o.s.dgesvd, C.char(jobVT), C.char(jobU), C.int(n), C.int(m), ptr(a), C.int(lda), ptr(s),
		ptr(vt), C.int(ldvt), ptr(u), C.int(ldu), ptr(work), C.int(lwork))
	return info == 0
}

// SVD is Dgesdd (divide and conquer), falling back to Dgesvd on a copy of
// the input when Dgesdd does not converge.
func (b *openblasBackend) SVD(a blas64.General, s []float64, u, vt blas64.General) bool {
	checkSVD(a, s, u, vt)
	m, n := a.Rows, a.Cols
	k := min(m, n)
	if !fits(m, n, a.Stride, u.Stride, vt.Stride, 8*k) {
		return svdWith(gonumlapack.Implementation{}, a, s, u, vt)
	}
	need(a.Data, m, n, a.Stride)
	need(u.Data, m, k, u.Stride)
	need(vt.Data, k, n, vt.Stride)
	saved := blas64.General{Rows: m, Cols: n, Stride: n, Data: make([]float64, m*n)}
	for i := 0; i < m; i++ {
		copy(saved.Data[i*n:(i+1)*n], a.Data[i*a.Stride:i*a.Stride+n])
	}
	iwork := make([]C.int, 8*k)
	call := func(work []float64, lwork int) C.int {
		// Column-major: aᵀ is n×m; its U (n×k) is our Vᵀ, its Vᵀ (k×m) our U.
		return C.ob_dgesdd(b.syms.dgesdd, 'S', C.int(n), C.int(m), ptr(a.Data), C.int(a.Stride), ptr(s),
			ptr(vt.Data), C.int(max(1, vt.Stride)), ptr(u.Data), C.int(max(1, u.Stride)), ptr(work), C.int(lwork), &iwork[0])
	}
	q := []float64{0}
	if call(q, -1) == 0 && fits(int(q[0])) {
		work := make([]float64, max(1, int(q[0])))
		if call(work, len(work)) == 0 {
			return true
		}
	}
	return svdWith(obLAPACK{s: b.syms}, saved, s, u, vt)
}

// Orthonormalize copies a into column-major order (the columns of a tall
// matrix contiguous, as Householder QR wants them), runs Dgeqrf and Dorgqr,
// and copies Q back.
func (b *openblasBackend) Orthonormalize(a blas64.General) {
	m, l := a.Rows, a.Cols
	if l == 0 {
		return
	}
	if m < l {
		panic(fmt.Errorf("%w: orthonormalize %d×%d (wide)", errShape, m, l))
	}
	if !fits(m, l, m*l) {
		orthonormalizeQR(gonumlapack.Implementation{}, a)
		return
	}
	need(a.Data, m, l, a.Stride)
	cm := make([]float64, m*l)
	for i := 0; i < m; i++ {
		for j, v := range a.Data[i*a.Stride : i*a.Stride+l] {
			cm[j*m+i] = v
		}
	}
	tau := make([]float64, l)
	q := []float64{0}
	C.ob_dgeqrf(b.syms.dgeqrf, C.int(m), C.int(l), ptr(cm), C.int(m), ptr(tau), ptr(q), -1)
	lw := int(q[0])
	C.ob_dorgqr(b.syms.dorgqr, C.int(m), C.int(l), C.int(l), ptr(cm), C.int(m), ptr(tau), ptr(q), -1)
	lw = max(lw, int(q[0]), l, 1)
	work := make([]float64, lw)
	if C.ob_dgeqrf(b.syms.dgeqrf, C.int(m), C.int(l), ptr(cm), C.int(m), ptr(tau), ptr(work), C.int(lw)) != 0 ||
		C.ob_dorgqr(b.syms.dorgqr, C.int(m), C.int(l), C.int(l), ptr(cm), C.int(m), ptr(tau), ptr(work), C.int(lw)) != 0 {
		panic(fmt.Errorf("%w: QR of %d×%d failed", errShape, m, l))
	}
	for i := 0; i < m; i++ {
		row := a.Data[i*a.Stride : i*a.Stride+l]
		for j := range row {
			row[j] = cm[j*m+i]
		}
	}
}
