package calib

import (
	"fmt"
	"math"
)

// TensorStats holds the statistics of one tensor over the dataset.
type TensorStats struct {
	// Name is the value name.
	Name string
	// Count is the number of elements seen; NaNs is how many were NaN and
	// Infs how many were +Inf or −Inf. Both are excluded from the other
	// statistics (Min, Max, Mean, Std, Hist); a caller that needs finite
	// activations (static quantization) checks them, see Finite.
	Count, NaNs, Infs int64
	// Min and Max are the extreme values; AbsMax is max(|Min|, |Max|).
	Min, Max, AbsMax float64
	// Mean and Std are the mean and standard deviation of the elements.
	Mean, Std float64
	// Hist is the histogram over [Min, Max] (see Histogram), or nil
	// without Bins.
	Hist *Histogram

	sum, sumSq float64
}

// Histogram counts values in equal-width bins over [Lo, Hi]; the last bin
// includes Hi, and a tensor whose values are all equal gets the range
// [v-0.5, v+0.5] (numpy.histogram's conventions).
type Histogram struct {
	Lo, Hi float64
	Counts []int64
}

// Edges returns the len(Counts)+1 bin edges.
func (h *Histogram) Edges() []float64 {
	n := len(h.Counts)
	e := make([]float64, n+1)
	step := (h.Hi - h.Lo) / float64(n)
	for i := range e {
		e[i] = float64(i)*step + h.Lo // numpy.linspace
	}
	e[n] = h.Hi
	return e
}

// Total returns the number of values counted.
func (h *Histogram) Total() int64 {
	var t int64
	for _, c := range h.Counts {
		t += c
	}
	return t
}

// Quantile returns the value below which a fraction q (0..1) of the counted
// values lie, interpolating linearly inside the bin.
func (h *Histogram) Quantile(q float64) float64 {
	total := h.Total()
	if total == 0 {
		return math.NaN()
	}
	target := q * float64(total)
	cum := 0.0
	e := h.Edges()
	for i, c := range h.Counts {
		if cum+float64(c) >= target && c > 0 {
			return e[i] + (e[i+1]-e[i])*(target-cum)/float64(c)
		}
		cum += float64(c)
	}
	return h.Hi
}

func (h *Histogram) add(v []float64) {
	n := len(h.Counts)
	w := h.Hi - h.Lo
	edges := h.Edges()
	norm := float64(n) / w
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) || x < h.Lo || x > h.Hi {
			continue
		}
		i := n - 1
		if w > 0 && !math.IsInf(w, 0) {
			// numpy.histogram's index computation and edge corrections.
			i = int((x - h.Lo) * norm)
			if i >= n {
				i = n - 1
			}
			i = max(i, 0) // (x − Lo)·norm is never negative; a guard all the same
			if i > 0 && x < edges[i] {
				i--
			} else if i != n-1 && x >= edges[i+1] {
				i++
			}
		}
		h.Counts[i]++
	}
}

func (ts *TensorStats) addRange(v []float64) {
	for _, x := range v {
		ts.Count++
		if math.IsNaN(x) {
			ts.NaNs++
			continue
		}
		if math.IsInf(x, 0) {
			ts.Infs++
			continue
		}
		ts.Min = math.Min(ts.Min, x)
		ts.Max = math.Max(ts.Max, x)
		ts.sum += x
		ts.sumSq += x * x
	}
}

// Finite returns nil when every value seen was finite, else an
// ErrNonFinite naming the tensor and how many values were NaN or infinite.
func (ts *TensorStats) Finite() error {
	if ts.NaNs == 0 && ts.Infs == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s: %d NaN and %d ±Inf among %d calibration values (do the calibration inputs hold Inf, NaN or values near the float32 limit?)",
		ErrNonFinite, ts.Name, ts.NaNs, ts.Infs, ts.Count)
}

func (ts *TensorStats) finish() {
	n := float64(ts.Count - ts.NaNs - ts.Infs)
	if n == 0 {
		ts.Min, ts.Max = math.NaN(), math.NaN()
		return
	}
	ts.AbsMax = math.Max(math.Abs(ts.Min), math.Abs(ts.Max))
	ts.Mean = ts.sum / n
	ts.Std = math.Sqrt(math.Max(0, ts.sumSq/n-ts.Mean*ts.Mean))
}

// HistogramOf returns the histogram of x in bins bins over its range,
// with the capture's conventions (see Stats.ActivationHistogram): the one
// histogram of onnxpost, for callers that hold the values. x must be
// finite and not empty.
func HistogramOf(x []float64, bins int) (counts []int64, edges []float64, err error) {
	if len(x) == 0 || bins <= 0 {
		return nil, nil, fmt.Errorf("%w: histogram of %d values in %d bins", ErrMissing, len(x), bins)
	}
	ts := &TensorStats{Name: "values", Min: math.Inf(1), Max: math.Inf(-1)}
	ts.addRange(x)
	if err := ts.Finite(); err != nil {
		return nil, nil, err
	}
	lo, hi := ts.Min, ts.Max
	if lo == hi {
		lo, hi = lo-0.5, hi+0.5
	}
	h := &Histogram{Lo: lo, Hi: hi, Counts: make([]int64, bins)}
	h.add(x)
	return h.Counts, h.Edges(), nil
}
