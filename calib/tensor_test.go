package calib

import (
	"errors"
	"math"
	"testing"
)

func TestHistogram(t *testing.T) {
	h := &Histogram{Lo: 0, Hi: 99, Counts: make([]int64, 10)}
	v := make([]float64, 100)
	for i := range v {
		v[i] = float64(i)
	}
	h.add(append(v, math.NaN(), -1, 100)) // NaN and out-of-range values are skipped
	for i, c := range h.Counts {
		if c != 10 {
			t.Fatalf("bin %d has %d values, want 10: %v", i, c, h.Counts)
		}
	}
	if h.Total() != 100 {
		t.Errorf("total %d", h.Total())
	}
	// Half the mass lies below the end of bin 4: 5 × 9.9.
	if q := h.Quantile(0.5); !near(q, 49.5, 1e-12) {
		t.Errorf("median %v, want 49.5", q)
	}
	if q := h.Quantile(1); !near(q, 99, 1e-12) {
		t.Errorf("max %v, want 99", q)
	}
	e := h.Edges()
	if len(e) != 11 || e[0] != 0 || e[10] != 99 {
		t.Errorf("edges %v", e)
	}
}

// A histogram whose range is infinite (built by hand: Capture never makes
// one) must not index out of its bins.
func TestHistogramInfiniteRange(t *testing.T) {
	for _, h := range []*Histogram{
		{Lo: 0, Hi: math.Inf(1), Counts: make([]int64, 8)},
		{Lo: math.Inf(-1), Hi: 0, Counts: make([]int64, 8)},
		{Lo: -math.MaxFloat64, Hi: math.MaxFloat64, Counts: make([]int64, 8)},
	} {
		h.add([]float64{0, 1, -1, math.Inf(1), math.Inf(-1), math.NaN(), math.MaxFloat64, -math.MaxFloat64})
	}
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestHistogramOf(t *testing.T) {
	c, e, err := HistogramOf([]float64{0, 1, 2, 3, 4}, 4)
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{1, 1, 1, 2} // the last bin is closed
	for i := range want {
		if c[i] != want[i] {
			t.Fatalf("counts %v, want %v", c, want)
		}
	}
	if e[0] != 0 || e[4] != 4 {
		t.Fatalf("edges %v", e)
	}
	if _, _, err := HistogramOf([]float64{1, math.Inf(1)}, 4); !errors.Is(err, ErrNonFinite) {
		t.Fatalf("Inf: %v", err)
	}
	if _, _, err := HistogramOf(nil, 4); !errors.Is(err, ErrMissing) {
		t.Fatalf("empty: %v", err)
	}
}
