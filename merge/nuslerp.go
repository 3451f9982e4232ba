package merge

import "math"

// NuSlerp is mergekit's nuslerp: slerp of two models (or their task vectors)
// with t = w₂/(w₁+w₂).
const NuSlerp Method = "nuslerp"

// nuSlerpSpec declares NuSlerp's base model rule, model count and
// parameters.
var nuSlerpSpec = methodSpec{base: baseOptional, minModels: 2, maxModels: 2,
	params: []ParamSpec{pWeight,
		{Name: "nuslerp_flatten", Kind: "bool", Default: "true", Doc: "interpolate the whole tensor as one vector"},
		{Name: "nuslerp_row_wise", Kind: "bool", Default: "false", Doc: "without flatten: vectors along axis 0 instead of the last axis"}},
	doc: "slerp of two models (or their task vectors) with t = w₂/(w₁+w₂)"}

// NuSlerpParams holds what NuSlerpTo needs besides the tensors.
type NuSlerpParams struct {
	// Weights are the two models' weights; t = w₂/(w₁ + w₂), or 0.5 when
	// |w₁ + w₂| < 1e-6.
	Weights []float64
	// Shape is the tensor's shape (for the vectors of RowWise / !Flatten).
	Shape []int64
	// Flatten interpolates the whole tensor as one vector (mergekit's
	// nuslerp_flatten, default true).
	Flatten bool
	// RowWise, when not flattening, interpolates the vectors along axis 0
	// (mergekit's nuslerp_row_wise); otherwise along the last axis.
	RowWise bool
}

// NuSlerpT returns NuSLERP's interpolation parameter for two weights.
func NuSlerpT(w []float64) float64 {
	s := w[0] + w[1]
	if math.Abs(s) < 1e-6 {
		return 0.5
	}
	return w[1] / s
}

// NuSlerpTo applies mergekit's nuslerp to one tensor of two models v₀, v₁,
// or — with base non-nil — to their task vectors, adding the result to the
// base. For each vector (the whole tensor, or each vector along the chosen
// axis): with uᵢ = vᵢ / max(‖vᵢ‖, 1e-7), θ = acos(clamp(⟨u₀,u₁⟩, −1, 1)),
//
//	res = (sin((1 − t)θ)·v₀ + sin(tθ)·v₁) / sin θ,
//
// or (1 − t)·v₀ + t·v₁ when |sin θ| < 1e-8. Unlike slerp, the interpolation
// is not replaced by a linear one near |cos| = 0.9995, and t comes from the
// weights. It has no paper; mergekit's implementation is the definition.
func NuSlerpTo[T Float](dst, base []T, xs [][]T, p NuSlerpParams) {
	mustCount("models", len(xs), 2)
	mustCount("weights", len(p.Weights), 2)
	mustSameLen("model", len(dst), xs...)
	t := NuSlerpT(p.Weights)
	v := func(i, j int) float64 {
		x := float64(xs[i][j])
		if base != nil {
			x -= float64(base[j])
		}
		return x
	}
	outer, m, inner := 1, len(dst), 1
	if !p.Flatten && len(p.Shape) > 0 {
		axis := len(p.Shape) - 1
		if p.RowWise {
			axis = 0
		}
		outer, m, inner = axisSplit(p.Shape, axis, len(dst))
	}
	for o := 0; o < outer; o++ {
		for in := 0; in < inner; in++ {
			at := func(k int) int { return (o*m+k)*inner + in }
			n0, n1, dot := 0.0, 0.0, 0.0
			for k := 0; k < m; k++ {
				a, b := v(0, at(k)), v(1, at(k))
				n0 += a * a
				n1 += b * b
				dot += a * b
			}
			c := dot / (math.Max(math.Sqrt(n0), 1e-7) * math.Max(math.Sqrt(n1), 1e-7))
			theta := math.Acos(math.Max(-1, math.Min(1, c)))
			s := math.Sin(theta)
			c0, c1 := math.Sin((1-t)*theta)/s, math.Sin(t*theta)/s
			if math.Abs(s) < 1e-8 {
				c0, c1 = 1-t, t
			}
			for k := 0; k < m; k++ {
				j := at(k)
				r := c0*v(0, j) + c1*v(1, j)
				if base != nil {
					r += float64(base[j])
				}
				dst[j] = T(r)
			}
		}
	}
}
