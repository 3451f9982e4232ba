package merge

import "math"

// NearSwap is mergekit's nearswap: w = clamp(t/|base−x|, 0, 1); w·x +
// (1−w)·base.
const NearSwap Method = "nearswap"

// nearSwapSpec declares NearSwap's base model rule, model count and
// parameters.
var nearSwapSpec = methodSpec{base: baseRequired, minModels: 1, maxModels: 1,
	params: []ParamSpec{{Name: "t", Kind: "float", Default: "", Doc: "distance under which the model's value replaces the base's (required, > 0)"}},
	doc:    "w = clamp(t/|base−x|, 0, 1); w·x + (1−w)·base"}

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
