// Package selectiontest is the conformance suite every pruner and
// selection routine of onnxpost passes: table-driven cases (ties, the NaN
// policy, N:M patterns, all-equal rows, the bounds of k) and random cases
// with many ties checked against a sorting reference written here, apart
// from the code under test.
//
// The reference order is the one of package selection: score ascending,
// then index descending (among equal scores the higher index is selected
// first).
package selectiontest

import (
	"math"
	"math/rand"
	"slices"
	"sort"
	"testing"
)

// Selector marks the k lowest of scores (true = selected).
type Selector func(scores []float64, k int) ([]bool, error)

// Pruner returns a copy of w with exactly zeros of its entries of smallest
// magnitude set to zero.
type Pruner func(w []float32, zeros int) ([]float32, error)

// NMPruner returns a copy of the rows×cols matrix w (row-major) in which
// every group of m consecutive entries of a row keeps its n entries of
// largest magnitude.
type NMPruner func(w []float32, rows, cols, n, m int) ([]float32, error)

// RefLowest is the suite's reference: it marks the k lowest scores by
// sorting, score ascending then index descending. Tests of code built on
// the selection (e.g. SparseGPT's block masks) compare with it.
func RefLowest(scores []float64, k int) []bool {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool {
		if scores[idx[a]] != scores[idx[b]] {
			return scores[idx[a]] < scores[idx[b]]
		}
		return idx[a] > idx[b]
	})
	out := make([]bool, len(scores))
	for _, i := range idx[:k] {
		out[i] = true
	}
	return out
}

func magnitudes(w []float32) []float64 {
	s := make([]float64, len(w))
	for i, v := range w {
		s[i] = math.Abs(float64(v))
	}
	return s
}

func zeroed(w []float32, mark []bool) []float32 {
	out := append([]float32(nil), w...)
	for i, m := range mark {
		if m {
			out[i] = 0
		}
	}
	return out
}

// tieHeavy returns n values drawn from few levels (many ties), signed.
func tieHeavy(r *rand.Rand, n int) []float32 {
	levels := 1 + r.Intn(6)
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(r.Intn(levels)) * 0.5
		if r.Intn(2) == 0 {
			w[i] = -w[i]
		}
	}
	return w
}

// call runs f on a copy of in and fails the test on an error or when f
// modified its input.
func call[T comparable, R any](t *testing.T, in []T, f func([]T) (R, error)) R {
	t.Helper()
	c := slices.Clone(in)
	got, err := f(c)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c, in) {
		t.Errorf("input modified: %v", c)
	}
	return got
}

// RunSelector checks sel: the table of ties and bounds, NaN refused, ±Inf
// ordered (or refused: sparsity's masks refuse non-finite scores), the input left unchanged, nested selections, and random
// tie-heavy scores against the reference.
func RunSelector(t *testing.T, sel Selector) {
	t.Helper()
	for _, tc := range []struct {
		name   string
		scores []float64
		k      int
		want   []int // selected indices
	}{
		{"issue #13 example", []float64{1, 1, 1, 1, 0.5, 2}, 3, []int{2, 3, 4}},
		{"all equal", []float64{7, 7, 7, 7, 7}, 2, []int{3, 4}},
		{"k = 0", []float64{3, 1, 2}, 0, nil},
		{"k = n", []float64{3, 1, 2}, 3, []int{0, 1, 2}},
		{"signed zeros are equal", []float64{0, math.Copysign(0, -1), 1}, 1, []int{1}},
		{"one value", []float64{4}, 1, []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := call(t, tc.scores, func(in []float64) ([]bool, error) { return sel(in, tc.k) })
			want := make([]bool, len(tc.scores))
			for _, i := range tc.want {
				want[i] = true
			}
			if !slices.Equal(got, want) {
				t.Errorf("selected %v, want %v", got, want)
			}
		})
	}
	t.Run("NaN refused", func(t *testing.T) {
		if _, err := sel([]float64{1, math.NaN(), 0}, 1); err == nil {
			t.Error("NaN score accepted")
		}
	})
	t.Run("infinities ordered or refused", func(t *testing.T) {
		got, err := sel([]float64{math.Inf(1), 0, math.Inf(-1), 5}, 2)
		if want := []bool{false, true, true, false}; err == nil && !slices.Equal(got, want) {
			t.Errorf("selected %v, want %v (or an error)", got, want)
		}
	})
	t.Run("random ties against the reference", func(t *testing.T) {
		r := rand.New(rand.NewSource(13))
		for trial := 0; trial < 200; trial++ {
			s := magnitudes(tieHeavy(r, 1+r.Intn(200)))
			var prev []bool
			for _, k := range []int{0, r.Intn(len(s) + 1), len(s)} {
				got, err := sel(slices.Clone(s), k)
				if err != nil {
					t.Fatal(err)
				}
				if want := RefLowest(s, k); !slices.Equal(got, want) {
					t.Fatalf("trial %d k=%d: %v, want %v (scores %v)", trial, k, got, want, s)
				}
				for i := range prev { // nested: k grows along the list
					if prev[i] && !got[i] {
						t.Fatalf("trial %d: selection of k=%d drops index %d of a smaller k", trial, k, i)
					}
				}
				prev = got
			}
		}
	})
}

// RunPruner checks prune: the issue #13 example
// (w = [1, −1, 1, −1, 0.5, 2] at 3 zeros → [1, −1, 0, 0, 0, 2]), all-equal
// weights, the bounds of zeros, non-finite weights refused, the input left
// unchanged, and random tie-heavy weights against the reference.
func RunPruner(t *testing.T, prune Pruner) {
	t.Helper()
	for _, tc := range []struct {
		name  string
		w     []float32
		zeros int
		want  []float32
	}{
		{"issue #13 example", []float32{1, -1, 1, -1, 0.5, 2}, 3, []float32{1, -1, 0, 0, 0, 2}},
		{"all equal", []float32{2, -2, 2, -2}, 2, []float32{2, -2, 0, 0}},
		{"zeros = 0", []float32{3, -1, 2}, 0, []float32{3, -1, 2}},
		{"zeros = n", []float32{3, -1, 2}, 3, []float32{0, 0, 0}},
		{"existing zeros go first", []float32{0, 5, 0, -5}, 2, []float32{0, 5, 0, -5}},
		{"sign ignored", []float32{-3, 2, -1, 4}, 2, []float32{-3, 0, 0, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := call(t, tc.w, func(in []float32) ([]float32, error) { return prune(in, tc.zeros) })
			if !slices.Equal(got, tc.want) {
				t.Errorf("pruned %v, want %v", got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name  string
		w     []float32
		zeros int
	}{
		{"NaN weight", []float32{1, float32(math.NaN()), 2}, 1},
		{"Inf weight", []float32{1, float32(math.Inf(1)), 2}, 1},
		{"negative zeros", []float32{1, 2}, -1},
		{"too many zeros", []float32{1, 2}, 3},
	} {
		t.Run(tc.name+" refused", func(t *testing.T) {
			if got, err := prune(tc.w, tc.zeros); err == nil {
				t.Errorf("accepted: %v", got)
			}
		})
	}
	t.Run("random ties against the reference", func(t *testing.T) {
		r := rand.New(rand.NewSource(31))
		for trial := 0; trial < 100; trial++ {
			w := tieHeavy(r, 1+r.Intn(200))
			k := r.Intn(len(w) + 1)
			got, err := prune(w, k)
			if err != nil {
				t.Fatal(err)
			}
			if want := zeroed(w, RefLowest(magnitudes(w), k)); !slices.Equal(got, want) {
				t.Fatalf("trial %d k=%d: %v, want %v (w %v)", trial, k, got, want, w)
			}
		}
	})
}

// RunNM checks prune on N:M patterns: all-equal rows prune the later
// entries of each group, the issue #13 weights per group, NaN refused, a
// row length that is not a multiple of m refused, and random tie-heavy
// matrices against the reference applied group by group.
func RunNM(t *testing.T, prune NMPruner) {
	t.Helper()
	for _, tc := range []struct {
		name             string
		w                []float32
		rows, cols, n, m int
		want             []float32
	}{
		{"all-equal rows 2:4", []float32{1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1}, 2, 8, 2, 4,
			[]float32{1, 1, 0, 0, 1, 1, 0, 0, -1, -1, 0, 0, -1, -1, 0, 0}},
		{"issue #13 weights 3:6", []float32{1, -1, 1, -1, 0.5, 2}, 1, 6, 3, 6, []float32{1, -1, 0, 0, 0, 2}},
		{"1:3", []float32{3, 2, 1, 1, 2, 3}, 1, 6, 1, 3, []float32{3, 0, 0, 0, 0, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := call(t, tc.w, func(in []float32) ([]float32, error) { return prune(in, tc.rows, tc.cols, tc.n, tc.m) })
			if !slices.Equal(got, tc.want) {
				t.Errorf("pruned %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("NaN refused", func(t *testing.T) {
		if _, err := prune([]float32{1, float32(math.NaN()), 2, 3}, 1, 4, 2, 4); err == nil {
			t.Error("NaN weight accepted")
		}
	})
	t.Run("ragged groups refused", func(t *testing.T) {
		if _, err := prune(make([]float32, 6), 1, 6, 2, 4); err == nil {
			t.Error("6 columns with m = 4 accepted")
		}
	})
	t.Run("random ties against the reference", func(t *testing.T) {
		r := rand.New(rand.NewSource(24))
		for trial := 0; trial < 50; trial++ {
			n, m := 2, 4
			if trial%2 == 1 {
				n, m = 4, 8
			}
			rows, cols := 1+r.Intn(5), m*(1+r.Intn(4))
			w := tieHeavy(r, rows*cols)
			got, err := prune(w, rows, cols, n, m)
			if err != nil {
				t.Fatal(err)
			}
			want := slices.Clone(w)
			for g := 0; g < len(w); g += m {
				sel := RefLowest(magnitudes(w[g:g+m]), m-n)
				copy(want[g:g+m], zeroed(w[g:g+m], sel))
			}
			if !slices.Equal(got, want) {
				t.Fatalf("trial %d %d:%d: %v, want %v (w %v)", trial, n, m, got, want, w)
			}
		}
	})
}
