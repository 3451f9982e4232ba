package merge

import "math"

// TIESSumTo is TIESTo with the disjoint mean replaced by the disjoint sum
// (mergekit's ties with normalize: false): after the same trim and sign
// election, dst = base + λ·Σ wᵢτᵢ over the models whose trimmed τᵢ is
// nonzero with the elected sign.
func TIESSumTo[T Float](dst, base []T, xs [][]T, weights, thresholds []float64, lambda float64) {
	mustCount("weights", len(weights), len(xs))
	mustCount("thresholds", len(thresholds), len(xs))
	mustSameLen("model", len(dst), append([][]T{base}, xs...)...)
	tau := make([]float64, len(xs))
	for j := range dst {
		b := float64(base[j])
		s := 0.0
		for i, x := range xs {
			t := float64(x[j]) - b
			if math.Abs(t) < thresholds[i] {
				t = 0
			}
			tau[i] = t
			s += t
		}
		pos := s >= 0
		acc := 0.0
		for i, t := range tau {
			if t != 0 && (t > 0) == pos {
				acc += weights[i] * t
			}
		}
		dst[j] = T(b + lambda*acc)
	}
}
