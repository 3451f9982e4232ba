package evalharness

import (
	"math"
	"testing"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestKL(t *testing.T) {
	cases := []struct {
		name      string
		ref, cand []float64
		want      float64
	}{
		{"identical", []float64{1, 2, 3}, []float64{1, 2, 3}, 0},
		{"shift invariant", []float64{1, 2, 3}, []float64{11, 12, 13}, 0},
		// p = (1/2, 1/2), q = (3/4, 1/4): KL = ½ln(2/3) + ½ln 2 = ½ln(4/3).
		{"two classes", []float64{0, 0}, []float64{math.Log(3), 0}, 0.5 * math.Log(4.0/3)},
		// p = (1, 0) in the limit, q = (1/2, 1/2): KL = ln 2.
		{"confident ref", []float64{1000, 0}, []float64{0, 0}, math.Log(2)},
		{"large logits stable", []float64{1e4, 0, 0}, []float64{1e4, 0, 0}, 0},
	}
	for _, c := range cases {
		if got := KL(c.ref, c.cand); !near(got, c.want, 1e-12) {
			t.Errorf("%s: KL = %.15g, want %.15g", c.name, got, c.want)
		}
	}
}

func TestCosine(t *testing.T) {
	cases := []struct {
		a, b []float64
		want float64
	}{
		{[]float64{1, 2}, []float64{2, 4}, 1},
		{[]float64{1, 0}, []float64{0, 3}, 0},
		{[]float64{1, 1}, []float64{-1, -1}, -1},
		{[]float64{0, 0}, []float64{0, 0}, 1},
		{[]float64{0, 0}, []float64{1, 0}, 0},
		{[]float64{1, 0}, []float64{1, 1}, 1 / math.Sqrt2},
	}
	for _, c := range cases {
		if got := Cosine(c.a, c.b); !near(got, c.want, 1e-15) {
			t.Errorf("Cosine(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	v := []float64{4, 1, 3, 2}
	// numpy.percentile([1,2,3,4], q) with linear interpolation.
	for _, c := range []struct{ p, want float64 }{{0, 1}, {50, 2.5}, {90, 3.7}, {100, 4}} {
		if got := Percentile(v, c.p); !near(got, c.want, 1e-12) {
			t.Errorf("Percentile(%v) = %v, want %v", c.p, got, c.want)
		}
	}
	if !math.IsNaN(Percentile(nil, 50)) {
		t.Error("empty input should give NaN")
	}
}

func TestTopK(t *testing.T) {
	row := []float64{0.1, 0.5, 0.3, 0.5, 0.2, 0.0, 0.05}
	cases := []struct {
		label int64
		k     int
		want  bool
	}{
		{1, 1, true}, {3, 1, true}, // tie at the top: both count
		{2, 1, false}, {2, 3, true}, {4, 3, false}, {4, 5, true}, {5, 5, false},
		{-1, 5, false}, {9, 5, false},
	}
	for _, c := range cases {
		if got := inTopK(row, c.label, c.k); got != c.want {
			t.Errorf("inTopK(label %d, k %d) = %v", c.label, c.k, got)
		}
	}
	if got := Argmax([]float64{1, 3, 3, 0, math.NaN(), 2}, 3); got[0] != 1 || got[1] != 2 {
		t.Errorf("Argmax = %v, want [1 2]", got)
	}
}

func TestParseMetrics(t *testing.T) {
	if m, err := ParseMetrics("accuracy, kl,latency,kl"); err != nil || len(m) != 3 {
		t.Errorf("ParseMetrics = %v, %v", m, err)
	}
	if m, err := ParseMetrics("all"); err != nil || len(m) != len(AllMetrics) {
		t.Errorf("all = %v, %v", m, err)
	}
	if _, err := ParseMetrics("accuracy,f1"); err == nil {
		t.Error("unknown metric accepted")
	}
}
