package quant

import (
	"fmt"
	"math"
)

// CalibMethod chooses how an activation range is derived from its histogram.
type CalibMethod int

const (
	// CalibMinMax uses the smallest and largest values seen.
	CalibMinMax CalibMethod = iota
	// CalibPercentile clips the given percentile on each side.
	CalibPercentile
	// CalibEntropy picks the symmetric clipping threshold that minimizes the
	// KL divergence between the clipped distribution and its 128-level
	// quantized version (TensorRT's entropy calibration).
	CalibEntropy
)

// ParseCalibMethod parses "minmax", "percentile" or "entropy".
func ParseCalibMethod(s string) (CalibMethod, error) {
	switch s {
	case "minmax", "":
		return CalibMinMax, nil
	case "percentile":
		return CalibPercentile, nil
	case "entropy":
		return CalibEntropy, nil
	}
	return 0, fmt.Errorf("%w: unknown calibration method %q (want minmax, percentile or entropy)", ErrOptions, s)
}

// String returns the method's flag name.
func (m CalibMethod) String() string {
	return [...]string{"minmax", "percentile", "entropy"}[m]
}

func checkHistogram(counts []int64, edges []float64) (total int64, err error) {
	if len(counts) == 0 || len(edges) != len(counts)+1 {
		return 0, fmt.Errorf("%w: histogram with %d counts and %d edges", ErrCalibration, len(counts), len(edges))
	}
	for i, e := range edges {
		if math.IsNaN(e) || math.IsInf(e, 0) {
			return 0, fmt.Errorf("%w: histogram edge %d is %v", ErrNonFinite, i, e)
		}
		if i > 0 && e < edges[i-1] {
			return 0, fmt.Errorf("%w: histogram edges decrease at %d", ErrCalibration, i)
		}
	}
	for _, c := range counts {
		if c < 0 {
			return 0, fmt.Errorf("%w: negative histogram count", ErrCalibration)
		}
		total += c
	}
	if total == 0 {
		return 0, fmt.Errorf("%w: empty histogram", ErrCalibration)
	}
	return total, nil
}

// MinMaxRange returns the first and last edges of the histogram.
func MinMaxRange(counts []int64, edges []float64) (lo, hi float64, err error) {
	if _, err := checkHistogram(counts, edges); err != nil {
		return 0, 0, err
	}
	return edges[0], edges[len(edges)-1], nil
}

// PercentileRange returns the (100−p)-th and p-th percentiles of the histogram, interpolating linearly
// inside bins; p in (50, 100] (ONNX Runtime's default is 99.999).
func PercentileRange(counts []int64, edges []float64, p float64) (lo, hi float64, err error) {
	total, err := checkHistogram(counts, edges)
	if err != nil {
		return 0, 0, err
	}
	if !(p > 50 && p <= 100) {
		return 0, 0, fmt.Errorf("%w: percentile %g not in (50, 100]", ErrOptions, p)
	}
	return quantileHist(counts, edges, total, (100-p)/100), quantileHist(counts, edges, total, p/100), nil
}

// quantileHist returns the value at cumulative fraction q.
func quantileHist(counts []int64, edges []float64, total int64, q float64) float64 {
	target := q * float64(total)
	var cum float64
	for i, c := range counts {
		if c == 0 {
			continue
		}
		if cum+float64(c) >= target {
			f := (target - cum) / float64(c)
			return edges[i] + f*(edges[i+1]-edges[i])
		}
		cum += float64(c)
	}
	return edges[len(edges)-1]
}

// EntropyRange returns [max(lo, −T), min(hi, T)] where T is the clipping
// threshold of |x| that minimizes KL(P‖Q), P the distribution of |x| clipped
// at T (outliers added to the last bin) and Q its quantization into
// quantBins levels expanded back over P's non-empty bins. The histogram is
// folded onto |x| with its own bin width (bins are assumed uniform), and
// the bin holding 0 is left out (zero is exactly representable);
// candidate thresholds are bin edges, at most about 512 of them.
func EntropyRange(counts []int64, edges []float64, quantBins int) (lo, hi float64, err error) {
	if _, err := checkHistogram(counts, edges); err != nil {
		return 0, 0, err
	}
	if quantBins < 2 {
		return 0, 0, fmt.Errorf("%w: %d quantization bins", ErrOptions, quantBins)
	}
	lo, hi = edges[0], edges[len(edges)-1]
	width := (hi - lo) / float64(len(counts))
	amax := math.Max(math.Abs(lo), math.Abs(hi))
	if width == 0 || amax == 0 {
		return lo, hi, nil
	}
	nAbs := int(math.Ceil(amax/width - 1e-9))
	abs := make([]float64, nAbs)
	for i, c := range counts {
		mid := math.Abs((edges[i] + edges[i+1]) / 2)
		b := min(int(mid/width), nAbs-1)
		abs[b] += float64(c)
	}
	// Zero is exactly representable, so the mass at 0 (half of a ReLU
	// output, most of a sparse input) carries no quantization error; left
	// in, it dominates both distributions and drives the threshold far
	// into the tail's body.
	abs[0] = 0
	if nAbs <= quantBins {
		return lo, hi, nil
	}
	best, bestKL := nAbs, math.Inf(1)
	p := make([]float64, nAbs)
	q := make([]float64, nAbs)
	// At most ~512 candidate thresholds (every bin for histograms of up to
	// 512 bins beyond quantBins).
	step := max(1, (nAbs-quantBins)/512)
	for i := quantBins; i <= nAbs; i += step {
		copy(p[:i], abs[:i])
		var outl float64
		for _, v := range abs[i:] {
			outl += v
		}
		p[i-1] += outl
		// Quantize abs[:i] into quantBins groups, expand over non-zero bins.
		for g := 0; g < quantBins; g++ {
			s := g * i / quantBins
			e := (g + 1) * i / quantBins
			var sum float64
			nz := 0
			for j := s; j < e; j++ {
				sum += abs[j]
				if abs[j] != 0 {
					nz++
				}
			}
			for j := s; j < e; j++ {
				q[j] = 0
				if abs[j] != 0 && nz > 0 {
					q[j] = sum / float64(nz)
				}
			}
		}
		kl := klDiv(p[:i], q[:i])
		if kl < bestKL {
			best, bestKL = i, kl
		}
	}
	t := float64(best) * width
	return math.Max(lo, -t), math.Min(hi, t), nil
}

// klDiv returns KL(p‖q) of the normalized non-negative vectors, with a
// small floor on q where p > 0.
func klDiv(p, q []float64) float64 {
	var sp, sq float64
	for i := range p {
		sp += p[i]
		sq += q[i]
	}
	if sp == 0 || sq == 0 {
		return math.Inf(1)
	}
	var kl float64
	for i := range p {
		if p[i] == 0 {
			continue
		}
		pi := p[i] / sp
		qi := math.Max(q[i]/sq, 1e-12)
		kl += pi * math.Log(pi/qi)
	}
	return kl
}

// ActivationRange returns the range of an activation by method (p is the
// percentile, used by CalibPercentile).
func ActivationRange(counts []int64, edges []float64, m CalibMethod, p float64) (lo, hi float64, err error) {
	switch m {
	case CalibPercentile:
		return PercentileRange(counts, edges, p)
	case CalibEntropy:
		return EntropyRange(counts, edges, 128)
	}
	return MinMaxRange(counts, edges)
}
