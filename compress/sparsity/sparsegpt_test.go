package sparsity

import (
	"context"
	"math"
	"math/rand"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/onnxpost/onnxpost/internal/selection/selectiontest"
)

func TestUpperCholOfInverse(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	d := 23
	H := gram(correlated(rng, 60, d), d)
	for j := 0; j < d; j++ {
		H[j*d+j] += 0.1
	}
	U := append([]float64(nil), H...)
	if err := upperCholOfInverse(U, d); err != nil {
		t.Fatal(err)
	}
	// UᵀU H = I, U upper with a positive diagonal.
	u := mat.NewDense(d, d, U)
	var p, q mat.Dense
	p.Mul(u.T(), u)
	q.Mul(&p, mat.NewDense(d, d, H))
	for i := 0; i < d; i++ {
		if U[i*d+i] <= 0 {
			t.Fatalf("U[%d,%d] = %v", i, i, U[i*d+i])
		}
		for j := 0; j < d; j++ {
			want := 0.0
			if i == j {
				want = 1
			}
			if math.Abs(q.At(i, j)-want) > 1e-8 {
				t.Fatalf("(UᵀU H)[%d,%d] = %v", i, j, q.At(i, j))
			}
			if j < i && U[i*d+j] != 0 {
				t.Fatalf("U not upper")
			}
		}
	}
	bad := make([]float64, 4) // 2x2 zero matrix
	if err := upperCholOfInverse(bad, 2); err == nil {
		t.Error("singular H: want error")
	}
}

// naiveSparseGPT follows the paper's algorithm without lazy batching:
// H⁻¹ by gonum's general inverse, its upper Cholesky factor by gonum's
// Cholesky, each column's error applied to all later columns at once.
// Columns are visited in order perm (nil: identity); the unstructured mask
// is chosen at the start of each block of bs visited columns.
func naiveSparseGPT(t *testing.T, w []float32, rows, d int, xtx []float64, p Pattern, s float64, damp float64, bs int, perm []int) []float64 {
	t.Helper()
	if perm == nil {
		perm = make([]int, d)
		for i := range perm {
			perm[i] = i
		}
	}
	W := make([]float64, rows*d)
	H := mat.NewDense(d, d, nil)
	for r := 0; r < rows; r++ {
		for q, j := range perm {
			W[r*d+q] = float64(w[r*d+j])
		}
	}
	for a, i := range perm {
		for b, j := range perm {
			H.Set(a, b, xtx[i*d+j])
		}
	}
	mean := 0.0
	for j := 0; j < d; j++ {
		if H.At(j, j) == 0 {
			H.Set(j, j, 1)
			for r := 0; r < rows; r++ {
				W[r*d+j] = 0
			}
		}
		mean += H.At(j, j) / float64(d)
	}
	for j := 0; j < d; j++ {
		H.Set(j, j, H.At(j, j)+damp*mean)
	}
	var Hinv mat.Dense
	if err := Hinv.Inverse(H); err != nil {
		t.Fatal(err)
	}
	sym := mat.NewSymDense(d, nil)
	for i := 0; i < d; i++ {
		for j := i; j < d; j++ {
			sym.SetSym(i, j, (Hinv.At(i, j)+Hinv.At(j, i))/2)
		}
	}
	var ch mat.Cholesky
	if !ch.Factorize(sym) {
		t.Fatal("Hinv not PD")
	}
	var U mat.TriDense
	ch.UTo(&U)
	pruned := make([]bool, rows*d)
	var blockCounts []int
	if p.IsZero() {
		var sizes []int
		for i1 := 0; i1 < d; i1 += bs {
			sizes = append(sizes, rows*(min(i1+bs, d)-i1))
		}
		blockCounts = splitCounts(s, sizes)
	}
	for i := 0; i < d; i++ {
		if p.IsZero() && i%bs == 0 {
			i2 := min(i+bs, d)
			cnt := i2 - i
			sc := make([]float64, rows*cnt)
			for r := 0; r < rows; r++ {
				for c := 0; c < cnt; c++ {
					x := W[r*d+i+c] / U.At(i+c, i+c)
					sc[r*cnt+c] = x * x
				}
			}
			bm := selectiontest.RefLowest(sc, blockCounts[i/bs])
			for r := 0; r < rows; r++ {
				for c := 0; c < cnt; c++ {
					pruned[r*d+i+c] = bm[r*cnt+c]
				}
			}
		}
		for r := 0; r < rows; r++ {
			if !p.IsZero() && i%p.M == 0 {
				sc := make([]float64, p.M)
				for q := range sc {
					x := W[r*d+i+q] / U.At(i+q, i+q)
					sc[q] = x * x
				}
				for q, v := range selectiontest.RefLowest(sc, p.M-p.N) {
					pruned[r*d+i+q] = v
				}
			}
			if !pruned[r*d+i] {
				continue
			}
			e := W[r*d+i] / U.At(i, i)
			W[r*d+i] = 0
			for j := i + 1; j < d; j++ {
				W[r*d+j] -= e * U.At(i, j)
			}
		}
	}
	out := make([]float64, rows*d)
	for r := 0; r < rows; r++ {
		for q, j := range perm {
			out[r*d+j] = W[r*d+q]
		}
	}
	return out
}

func maxRelDiff(got []float32, want []float64) float64 {
	scale := 0.0
	for _, v := range want {
		scale = math.Max(scale, math.Abs(v))
	}
	m := 0.0
	for i := range got {
		m = math.Max(m, math.Abs(float64(got[i])-want[i])/scale)
	}
	return m
}

func TestSparseGPTMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewSource(10))
	tests := []struct {
		name     string
		sh       Shape
		p        Pattern
		s        float64
		bs       int
		workers  int
		deadCols []int
	}{
		{"2:4 blocks of 8", Shape{9, 32, 1}, Pattern{2, 4}, 0, 8, 3, nil},
		{"4:8 one block", Shape{5, 24, 1}, Pattern{4, 8}, 0, 128, 1, nil},
		{"50% blocks of 8", Shape{9, 30, 1}, Pattern{}, 0.5, 8, 2, nil},
		{"70% ragged block", Shape{4, 21, 1}, Pattern{}, 0.7, 16, 4, []int{3}},
		{"conv 2:4 3x3", Shape{6, 8 * 9, 9}, Pattern{2, 4}, 0, 8, 2, []int{5}},
		{"dead column 2:4", Shape{3, 16, 1}, Pattern{2, 4}, 0, 4, 1, []int{0, 7}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.sh.Cols
			x := correlated(rng, 3*d, d)
			for _, j := range tc.deadCols {
				for r := 0; r < 3*d; r++ {
					x[r*d+j] = 0
				}
			}
			xtx := gram(x, d)
			w := randMat(rng, tc.sh.Len())
			w0 := append([]float32(nil), w...)
			opt := Options{Pattern: tc.p, Sparsity: tc.s, BlockSize: tc.bs, Workers: tc.workers, Damp: 0.01}
			res, err := PruneSparseGPT(context.Background(), w, tc.sh, xtx, opt)
			if err != nil {
				t.Fatal(err)
			}
			for i := range w {
				if w[i] != w0[i] {
					t.Fatal("input modified")
				}
			}
			var perm []int
			if !tc.p.IsZero() && tc.sh.Stride > 1 {
				c := tc.sh.Reduction()
				for s := 0; s < tc.sh.Stride; s++ {
					for ch := 0; ch < c; ch++ {
						perm = append(perm, ch*tc.sh.Stride+s)
					}
				}
			}
			want := naiveSparseGPT(t, w, tc.sh.Rows, d, xtx, tc.p, tc.s, 0.01, tc.bs, perm)
			if diff := maxRelDiff(res.W, want); diff > 1e-5 {
				t.Errorf("max relative difference to the naive algorithm %v", diff)
			}
			for i := range want {
				if (want[i] == 0) != (res.W[i] == 0) {
					t.Fatalf("zero pattern differs at %d: %v vs %v", i, res.W[i], want[i])
				}
			}
			if tc.p.IsZero() {
				if got := countTrue(res.Pruned); got != PrunedCount(tc.s, tc.sh.Len()) {
					t.Errorf("pruned %d, want %d", got, PrunedCount(tc.s, tc.sh.Len()))
				}
			} else {
				l := LayoutNK
				dims := []int64{int64(tc.sh.Rows), int64(d)}
				if tc.sh.Stride > 1 {
					l, dims = LayoutConv, []int64{int64(tc.sh.Rows), int64(tc.sh.Reduction()), 3, 3}
				}
				c, err := VerifyNM(res.W, l, dims, tc.p)
				if err != nil || !c.OK() {
					t.Errorf("N:M check %+v %v", c, err)
				}
			}
		})
	}
}

// reconErr is ‖X(W−Ŵ)ᵀ‖²_F = Σ_r (w_r−ŵ_r)ᵀ XᵀX (w_r−ŵ_r).
func reconErr(w, wh []float32, rows, d int, xtx []float64) float64 {
	e := 0.0
	dv := make([]float64, d)
	for r := 0; r < rows; r++ {
		for j := range dv {
			dv[j] = float64(w[r*d+j] - wh[r*d+j])
		}
		for i := 0; i < d; i++ {
			for j := 0; j < d; j++ {
				e += dv[i] * xtx[i*d+j] * dv[j]
			}
		}
	}
	return e
}

// TestCriteriaQuality checks the expected ordering of layer-output error:
// SparseGPT < Wanda < magnitude, on activations with uneven column scales.
func TestCriteriaQuality(t *testing.T) {
	rng := rand.New(rand.NewSource(11))
	rows, d := 16, 64
	x := correlated(rng, 256, d)
	c := gramCalib{x: map[string][]float64{"w": x}, d: map[string]int{"w": d}}
	w := randMat(rng, rows*d)
	l := []Layer{{Name: "w", Layout: LayoutNK, Dims: []int64{int64(rows), int64(d)}, Data: w}}
	xtx := gram(x, d)
	for _, o := range []Options{{Pattern: Pattern{2, 4}}, {Sparsity: 0.7}} {
		errs := map[Method]float64{}
		for _, m := range []Method{Magnitude, Wanda, SparseGPT} {
			o.Method = m
			outs, _, err := Prune(context.Background(), l, o, c)
			if err != nil {
				t.Fatal(err)
			}
			errs[m] = reconErr(w, outs[0], rows, d, xtx)
		}
		if !(errs[SparseGPT] < errs[Wanda] && errs[Wanda] < errs[Magnitude]) {
			t.Errorf("%+v: errors %v, want sparsegpt < wanda < magnitude", o, errs)
		}
	}
}

func TestSparseGPTErrors(t *testing.T) {
	sh := Shape{2, 4, 1}
	w := []float32{1, 2, 3, 4, 5, 6, 7, 8}
	if _, err := PruneSparseGPT(context.Background(), w, sh, make([]float64, 9), Options{Pattern: Pattern{2, 4}}); err == nil {
		t.Error("XᵀX of wrong size: want error")
	}
	xtx := make([]float64, 16)
	xtx[0] = math.NaN()
	if _, err := PruneSparseGPT(context.Background(), w, sh, xtx, Options{Pattern: Pattern{2, 4}}); err == nil {
		t.Error("NaN XᵀX: want error")
	}
	w[3] = float32(math.Inf(1))
	if _, err := PruneSparseGPT(context.Background(), w, sh, make([]float64, 16), Options{Pattern: Pattern{2, 4}}); err == nil {
		t.Error("Inf weight: want error")
	}
	// all-zero XᵀX: every column dead, weights zeroed, no error
	res, err := PruneSparseGPT(context.Background(), []float32{1, 2, 3, 4, 5, 6, 7, 8}, sh, make([]float64, 16), Options{Pattern: Pattern{2, 4}})
	if err != nil || CountZeros(res.W) != 8 {
		t.Errorf("dead layer: %v %v", res.W, err)
	}
}
