package linalg

import (
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack"
)

// openblas returns the OpenBLAS backend or skips; with
// ONNXPOST_LINALG=openblas its absence fails the test instead.
func openblas(t *testing.T) Backend {
	t.Helper()
	b, err := OpenBLAS()
	if err != nil {
		if os.Getenv(EnvVar) == "openblas" {
			t.Fatalf("%s=openblas but: %v", EnvVar, err)
		}
		t.Skipf("no OpenBLAS (install libopenblas0; make test does): %v", err)
	}
	return b
}

func randGeneral(rng *rand.Rand, r, c int) blas64.General {
	g := blas64.General{Rows: r, Cols: c, Stride: c, Data: make([]float64, r*c)}
	for i := range g.Data {
		g.Data[i] = rng.NormFloat64()
	}
	return g
}

func clone(g blas64.General) blas64.General {
	g.Data = append([]float64(nil), g.Data...)
	return g
}

func maxRelDiff(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	var scale float64
	for _, v := range want {
		scale = math.Max(scale, math.Abs(v))
	}
	for i := range got {
		if d := math.Abs(got[i] - want[i]); d > tol*math.Max(scale, 1e-300) || math.IsNaN(got[i]) {
			t.Fatalf("%s[%d] = %.17g, want %.17g (|Δ| %.3g > %.0e·%.3g)", what, i, got[i], want[i], d, tol, scale)
		}
	}
}

// svdOf returns the thin SVD of a copy of g with backend b.
func svdOf(t *testing.T, b Backend, g blas64.General) (s []float64, u, vt blas64.General) {
	t.Helper()
	k := min(g.Rows, g.Cols)
	s = make([]float64, k)
	u = blas64.General{Rows: g.Rows, Cols: k, Stride: k, Data: make([]float64, g.Rows*k)}
	vt = blas64.General{Rows: k, Cols: g.Cols, Stride: g.Cols, Data: make([]float64, k*g.Cols)}
	if !b.SVD(clone(g), s, u, vt) {
		t.Fatalf("%s SVD of %d×%d did not converge", b.Name(), g.Rows, g.Cols)
	}
	return s, u, vt
}

// TestSVDMatchesPure compares OpenBLAS's SVD with gonum's on random
// matrices of several shapes (tall, wide, square, with a decaying
// spectrum): singular values within 1e-10 relative, U·Σ·Vᵀ reconstructs
// the input, U and V orthonormal.
func TestSVDMatchesPure(t *testing.T) {
	ob := openblas(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, sh := range [][2]int{{1, 1}, {1, 7}, {7, 1}, {40, 40}, {97, 33}, {33, 97}, {200, 150}, {128, 512}} {
		m, n := sh[0], sh[1]
		g := randGeneral(rng, m, n)
		// Decaying spectrum: scale column j by 0.97^j.
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				g.Data[i*n+j] *= math.Pow(0.97, float64(j))
			}
		}
		sp, _, _ := svdOf(t, Pure(), g)
		so, u, vt := svdOf(t, ob, g)
		for i := range sp {
			if d := math.Abs(so[i] - sp[i]); d > 1e-10*sp[0] {
				t.Fatalf("%d×%d σ%d: openblas %.17g, go %.17g", m, n, i, so[i], sp[i])
			}
			if i > 0 && so[i] > so[i-1] {
				t.Fatalf("%d×%d: σ not non-increasing at %d", m, n, i)
			}
		}
		k := len(so)
		us := clone(u)
		for i := 0; i < m; i++ {
			for j := 0; j < k; j++ {
				us.Data[i*k+j] *= so[j]
			}
		}
		rec := blas64.General{Rows: m, Cols: n, Stride: n, Data: make([]float64, m*n)}
		Pure().BLAS().Dgemm(blas.NoTrans, blas.NoTrans, m, n, k, 1, us.Data, k, vt.Data, n, 0, rec.Data, n)
		maxRelDiff(t, "U·Σ·Vᵀ", rec.Data, g.Data, 1e-12)
		checkOrthonormal(t, "U", u, false)
		checkOrthonormal(t, "Vᵀ", vt, true)
	}
}

// checkOrthonormal checks gᵀg = I (rows=false) or g·gᵀ = I (rows=true).
func checkOrthonormal(t *testing.T, what string, g blas64.General, rows bool) {
	t.Helper()
	r, c := g.Rows, g.Cols
	if rows {
		r, c = c, r
	}
	p := make([]float64, c*c)
	if rows {
		Pure().BLAS().Dgemm(blas.NoTrans, blas.Trans, c, c, r, 1, g.Data, g.Stride, g.Data, g.Stride, 0, p, c)
	} else {
		Pure().BLAS().Dgemm(blas.Trans, blas.NoTrans, c, c, r, 1, g.Data, g.Stride, g.Data, g.Stride, 0, p, c)
	}
	for i := 0; i < c; i++ {
		for j := 0; j < c; j++ {
			want := 0.0
			if i == j {
				want = 1
			}
			if math.Abs(p[i*c+j]-want) > 1e-12 {
				t.Fatalf("%s not orthonormal: [%d,%d] = %g", what, i, j, p[i*c+j])
			}
		}
	}
}

// TestDgesvdMatchesPure checks the LAPACK-interface Dgesvd (row-major to
// column-major mapping) against gonum's, including a strided input.
func TestDgesvdMatchesPure(t *testing.T) {
	ob := openblas(t)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, sh := range [][2]int{{30, 20}, {20, 30}} {
		m, n := sh[0], sh[1]
		k := min(m, n)
		lda := n + 3
		a := make([]float64, m*lda)
		for i := range a {
			a[i] = rng.NormFloat64()
		}
		run := func(l lapack.Float64) (s, u, vt []float64) {
			a := append([]float64(nil), a...)
			s, u, vt = make([]float64, k), make([]float64, m*k), make([]float64, k*n)
			work := []float64{0}
			l.Dgesvd(lapack.SVDStore, lapack.SVDStore, m, n, a, lda, s, u, k, vt, n, work, -1)
			work = make([]float64, int(work[0]))
			if !l.Dgesvd(lapack.SVDStore, lapack.SVDStore, m, n, a, lda, s, u, k, vt, n, work, len(work)) {
				t.Fatal("no convergence")
			}
			return s, u, vt
		}
		sp, up, vp := run(Pure().LAPACK())
		so, uo, vo := run(ob.LAPACK())
		maxRelDiff(t, "σ", so, sp, 1e-12)
		// Vectors agree up to the sign of each pair.
		for j := 0; j < k; j++ {
			sign := 1.0
			if up[j]*uo[j] < 0 || (up[j] == 0 && vp[j*n]*vo[j*n] < 0) {
				sign = -1
			}
			for i := 0; i < m; i++ {
				if math.Abs(sign*uo[i*k+j]-up[i*k+j]) > 1e-9 {
					t.Fatalf("%d×%d: U[%d,%d] %g vs %g", m, n, i, j, uo[i*k+j], up[i*k+j])
				}
			}
			for i := 0; i < n; i++ {
				if math.Abs(sign*vo[j*n+i]-vp[j*n+i]) > 1e-9 {
					t.Fatalf("%d×%d: Vᵀ[%d,%d] %g vs %g", m, n, j, i, vo[j*n+i], vp[j*n+i])
				}
			}
		}
	}
}

// TestBLASMatchesPure compares the level-3 kernels on random strided
// operands, every transpose, side and triangle.
func TestBLASMatchesPure(t *testing.T) {
	ob := openblas(t).BLAS()
	pb := Pure().BLAS()
	rng := rand.New(rand.NewPCG(5, 6))
	rnd := func(n int) []float64 {
		x := make([]float64, n)
		for i := range x {
			x[i] = rng.NormFloat64()
		}
		return x
	}
	const m, n, k = 37, 29, 41
	for _, tA := range []blas.Transpose{blas.NoTrans, blas.Trans} {
		for _, tB := range []blas.Transpose{blas.NoTrans, blas.Trans} {
			a, b, c := rnd(64*64), rnd(64*64), rnd(m*50)
			want := append([]float64(nil), c...)
			pb.Dgemm(tA, tB, m, n, k, 0.7, a, 64, b, 64, -0.3, want, 50)
			ob.Dgemm(tA, tB, m, n, k, 0.7, a, 64, b, 64, -0.3, c, 50)
			maxRelDiff(t, "Dgemm", c, want, 1e-13)
			a32, b32, c32 := f32(a), f32(b), f32(c)
			want32 := append([]float32(nil), c32...)
			pb.(blas.Float32).Sgemm(tA, tB, m, n, k, 0.7, a32, 64, b32, 64, -0.3, want32, 50)
			ob.(blas.Float32).Sgemm(tA, tB, m, n, k, 0.7, a32, 64, b32, 64, -0.3, c32, 50)
			maxRelDiff(t, "Sgemm", f64(c32), f64(want32), 1e-5)
		}
		for _, ul := range []blas.Uplo{blas.Upper, blas.Lower} {
			a, c := rnd(64*64), rnd(n*40)
			want := append([]float64(nil), c...)
			pb.Dsyrk(ul, tA, n, k, 1.3, a, 64, 0.5, want, 40)
			ob.Dsyrk(ul, tA, n, k, 1.3, a, 64, 0.5, c, 40)
			maxRelDiff(t, "Dsyrk", c, want, 1e-13)
			for _, s := range []blas.Side{blas.Left, blas.Right} {
				for _, d := range []blas.Diag{blas.NonUnit, blas.Unit} {
					tri := rnd(64 * 64)
					for i := range tri {
						tri[i] *= 0.1 // well conditioned, also with a unit diagonal
					}
					for i := 0; i < 64; i++ {
						tri[i*64+i] = 4 + math.Abs(tri[i*64+i])
					}
					b := rnd(m * 60)
					want := append([]float64(nil), b...)
					pb.Dtrmm(s, ul, tA, d, m, n, 0.9, tri, 64, want, 60)
					ob.Dtrmm(s, ul, tA, d, m, n, 0.9, tri, 64, b, 60)
					maxRelDiff(t, "Dtrmm", b, want, 1e-13)
					pb.Dtrsm(s, ul, tA, d, m, n, 1.1, tri, 64, want, 60)
					ob.Dtrsm(s, ul, tA, d, m, n, 1.1, tri, 64, b, 60)
					maxRelDiff(t, "Dtrsm", b, want, 1e-12)
				}
			}
		}
	}
}

// TestCholeskyMatchesPure compares Dpotrf, Dpotri and Dtrtri on a random
// symmetric positive definite matrix, both triangles, and checks that a
// matrix that is not positive definite is reported as such.
func TestCholeskyMatchesPure(t *testing.T) {
	ob := openblas(t).LAPACK()
	pl := Pure().LAPACK()
	rng := rand.New(rand.NewPCG(7, 8))
	const n = 150
	g := randGeneral(rng, n, n+20)
	spd := make([]float64, n*n)
	Pure().BLAS().Dgemm(blas.NoTrans, blas.Trans, n, n, n+20, 1, g.Data, n+20, g.Data, n+20, 0, spd, n)
	for _, ul := range []blas.Uplo{blas.Upper, blas.Lower} {
		a, b := append([]float64(nil), spd...), append([]float64(nil), spd...)
		if !pl.Dpotrf(ul, n, a, n) || !ob.Dpotrf(ul, n, b, n) {
			t.Fatal("SPD matrix reported not positive definite")
		}
		maxRelDiff(t, "Dpotrf", b, a, 1e-12)
		ta, tb := append([]float64(nil), a...), append([]float64(nil), b...)
		if !pl.Dtrtri(ul, blas.NonUnit, n, ta, n) || !ob.Dtrtri(ul, blas.NonUnit, n, tb, n) {
			t.Fatal("Dtrtri failed")
		}
		maxRelDiff(t, "Dtrtri", tb, ta, 1e-10)
		if !pl.Dpotri(ul, n, a, n) || !ob.Dpotri(ul, n, b, n) {
			t.Fatal("Dpotri failed")
		}
		maxRelDiff(t, "Dpotri", b, a, 1e-10)
		bad := append([]float64(nil), spd...)
		bad[(n/2)*n+n/2] = -1
		if ob.Dpotrf(ul, n, bad, n) {
			t.Fatal("Dpotrf accepted a matrix with a negative diagonal")
		}
	}
}

// TestOrthonormalize checks both backends' Q against each other (same
// span, orthonormal columns) on a tall matrix.
func TestOrthonormalize(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	g := randGeneral(rng, 300, 25)
	for _, b := range []Backend{Pure(), openblasOrNil()} {
		if b == nil {
			continue
		}
		q := clone(g)
		b.Orthonormalize(q)
		checkOrthonormal(t, b.Name()+" Q", q, false)
		// Q·Qᵀ·g = g: the span is the columns of g.
		c := make([]float64, 25*25)
		Pure().BLAS().Dgemm(blas.Trans, blas.NoTrans, 25, 25, 300, 1, q.Data, 25, g.Data, 25, 0, c, 25)
		back := make([]float64, 300*25)
		Pure().BLAS().Dgemm(blas.NoTrans, blas.NoTrans, 300, 25, 25, 1, q.Data, 25, c, 25, 0, back, 25)
		maxRelDiff(t, b.Name()+" Q·Qᵀ·g", back, g.Data, 1e-12)
	}
}

func openblasOrNil() Backend {
	b, err := OpenBLAS()
	if err != nil {
		return nil
	}
	return b
}

// TestShapeMisusePanics checks that an operand too short for its
// dimensions panics rather than reaching OpenBLAS.
func TestShapeMisusePanics(t *testing.T) {
	ob := openblas(t).BLAS()
	defer func() {
		if recover() == nil {
			t.Fatal("Dgemm with a short c did not panic")
		}
	}()
	ob.Dgemm(blas.NoTrans, blas.NoTrans, 4, 4, 4, 1, make([]float64, 16), 4, make([]float64, 16), 4, 0, make([]float64, 15), 4)
}

// TestDefaultFollowsEnv checks that ONNXPOST_LINALG=go (as set for the
// pure-Go test run) selects the pure-Go backend, and that otherwise the
// default is OpenBLAS exactly when it loads.
func TestDefaultFollowsEnv(t *testing.T) {
	if err := Check(); err != nil {
		t.Fatal(err)
	}
	_, obErr := OpenBLAS()
	want := "openblas"
	if os.Getenv(EnvVar) == "go" || obErr != nil {
		want = "go"
	}
	if got := Default().Name(); got != want {
		t.Fatalf("Default() = %s, want %s (%s=%q, probe: %v)", got, want, EnvVar, os.Getenv(EnvVar), obErr)
	}
	t.Logf("backend: %s; %s", Describe(), Info())
}

// TestSelectBackend covers every ONNXPOST_LINALG value, with and without
// the library.
func TestSelectBackend(t *testing.T) {
	_, obErr := OpenBLAS()
	have := obErr == nil
	cases := []struct {
		mode    string
		want    string // backend name
		wantErr bool
	}{
		{"go", "go", false},
		{"", map[bool]string{true: "openblas", false: "go"}[have], false},
		{"auto", map[bool]string{true: "openblas", false: "go"}[have], false},
		{"openblas", map[bool]string{true: "openblas", false: "go"}[have], !have},
		{"mkl", "go", true},
		{"GO", "go", true},
	}
	for _, c := range cases {
		b, _, err := selectBackend(c.mode)
		if b.Name() != c.want || (err != nil) != c.wantErr {
			t.Errorf("%s=%q: backend %s, error %v; want %s, error %v", EnvVar, c.mode, b.Name(), err, c.want, c.wantErr)
		}
	}
}

// TestConcurrentCalls: lowrank.Apply decomposes layers on several
// goroutines at once; concurrent SVDs and products through OpenBLAS give
// the same results as sequential ones.
func TestConcurrentCalls(t *testing.T) {
	ob := openblas(t)
	rng := rand.New(rand.NewPCG(15, 16))
	const workers = 4
	inputs := make([]blas64.General, workers)
	want := make([][]float64, workers)
	for i := range inputs {
		inputs[i] = randGeneral(rng, 90+7*i, 60)
		want[i], _, _ = svdOf(t, ob, inputs[i])
	}
	errs := make(chan string, workers)
	done := make(chan struct{})
	for i := 0; i < workers; i++ {
		go func(i int) {
			defer func() { done <- struct{}{} }()
			for rep := 0; rep < 5; rep++ {
				g := inputs[i]
				k := min(g.Rows, g.Cols)
				s := make([]float64, k)
				u := blas64.General{Rows: g.Rows, Cols: k, Stride: k, Data: make([]float64, g.Rows*k)}
				vt := blas64.General{Rows: k, Cols: g.Cols, Stride: g.Cols, Data: make([]float64, k*g.Cols)}
				if !ob.SVD(clone(g), s, u, vt) {
					errs <- "no convergence"
					return
				}
				for j := range s {
					if math.Abs(s[j]-want[i][j]) > 1e-12*want[i][0] {
						errs <- "concurrent SVD differs from the sequential one"
						return
					}
				}
				c := make([]float64, g.Rows*g.Rows)
				ob.BLAS().Dgemm(blas.NoTrans, blas.Trans, g.Rows, g.Rows, g.Cols, 1, g.Data, g.Cols, g.Data, g.Cols, 0, c, g.Rows)
			}
		}(i)
	}
	for i := 0; i < workers; i++ {
		<-done
	}
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

func f32(x []float64) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v)
	}
	return out
}

func f64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}
