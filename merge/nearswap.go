package merge

import "math"

// NearSwapTo applies mergekit's nearswap to one tensor of a base a and one
// model b: wⱼ = clamp(t / max(|aⱼ − bⱼ|, 1e-6), 0, 1) and
// dst = w·b + (1 − w)·a — entries where the models are within t of each
// other take b's value, the others move from a towards b by t. It has no
// paper; mergekit's implementation is the definition.
func NearSwapTo[T Float](dst, a, b []T, t float64) {
	mustSameLen("model", len(dst), a, b)
	for j := range dst {
		x, y := float64(a[j]), float64(b[j])
		w := math.Min(1, math.Max(0, t/math.Max(math.Abs(x-y), 1e-6)))
		dst[j] = T(w*y + (1-w)*x)
	}
}
