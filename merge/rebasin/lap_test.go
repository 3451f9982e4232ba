package rebasin

import (
	"math"
	"math/rand"
	"strings"
	"testing"
)

// bruteLAP returns the best Σ c[i, π(i)] over all permutations.
func bruteLAP(c []float64, n int) float64 {
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	best := math.Inf(-1)
	var rec func(k int)
	rec = func(k int) {
		if k == n {
			s := 0.0
			for i, j := range perm {
				s += c[i*n+j]
			}
			if s > best {
				best = s
			}
			return
		}
		for i := k; i < n; i++ {
			perm[k], perm[i] = perm[i], perm[k]
			rec(k + 1)
			perm[k], perm[i] = perm[i], perm[k]
		}
	}
	rec(0)
	return best
}

func checkPerm(t *testing.T, perm []int, n int) {
	t.Helper()
	seen := make([]bool, n)
	for _, j := range perm {
		if j < 0 || j >= n || seen[j] {
			t.Fatalf("not a permutation: %v", perm)
		}
		seen[j] = true
	}
}

func TestSolveLAPBruteForce(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for n := 1; n <= 7; n++ {
		for trial := 0; trial < 40; trial++ {
			c := make([]float64, n*n)
			for i := range c {
				switch trial % 3 {
				case 0:
					c[i] = rng.NormFloat64()
				case 1: // many ties
					c[i] = float64(rng.Intn(3))
				default: // large and negative
					c[i] = -1e6 * rng.Float64()
				}
			}
			perm, got, err := SolveLAP(c, n)
			if err != nil {
				t.Fatal(err)
			}
			checkPerm(t, perm, n)
			if want := bruteLAP(c, n); math.Abs(got-want) > 1e-9*(1+math.Abs(want)) {
				t.Fatalf("n=%d trial %d: got %v want %v (c=%v)", n, trial, got, want, c)
			}
		}
	}
}

func TestSolveLAPTiesAndIdentity(t *testing.T) {
	// All equal: every permutation is optimal; the result is a permutation
	// and is the same on every call.
	n := 6
	c := make([]float64, n*n)
	p1, s, err := SolveLAP(c, n)
	if err != nil || s != 0 {
		t.Fatal(err, s)
	}
	checkPerm(t, p1, n)
	p2, _, _ := SolveLAP(c, n)
	for i := range p1 {
		if p1[i] != p2[i] {
			t.Fatalf("not deterministic: %v %v", p1, p2)
		}
	}
	// A dominant diagonal of a permutation is recovered.
	want := []int{3, 0, 5, 1, 2, 4}
	for i, j := range want {
		c[i*n+j] = 1
	}
	p, s, err := SolveLAP(c, n)
	if err != nil || s != float64(n) {
		t.Fatal(err, s)
	}
	for i := range want {
		if p[i] != want[i] {
			t.Fatalf("got %v want %v", p, want)
		}
	}
}

func TestSolveLAPErrors(t *testing.T) {
	for _, tc := range []struct {
		c    []float64
		n    int
		want string
	}{
		{[]float64{1, 2, 3}, 2, "3 values for a 2×2"},
		{[]float64{1, math.NaN(), 0, 1}, 2, "entry (0, 1) is NaN"},
		{[]float64{math.Inf(1)}, 1, "entry (0, 0) is +Inf"},
	} {
		_, _, err := SolveLAP(tc.c, tc.n)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.c, err, tc.want)
		}
	}
	if p, s, err := SolveLAP(nil, 0); err != nil || len(p) != 0 || s != 0 {
		t.Fatal(p, s, err)
	}
}
