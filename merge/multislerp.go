package merge

import (
	"errors"
	"math"
)

// MultiSlerp is mergekit's multislerp: weighted barycentre on the
// hypersphere (tangent space at the mean), scaled by the mean norm.
const MultiSlerp Method = "multislerp"

// multiSlerpSpec declares MultiSlerp's base model rule, model count and
// parameters.
var multiSlerpSpec = methodSpec{base: baseOptional, minModels: 1,
	params: []ParamSpec{pWeight,
		{Name: "normalize_weights", Kind: "bool", Default: "true", Doc: "divide the weights by their sum"}},
	doc: "weighted barycentre on the hypersphere (tangent space at the mean), scaled by the mean norm"}

// ErrDegenerate reports a tensor on which a spherical method is undefined
// (multislerp: the weighted mean of the unit vectors is zero).
var ErrDegenerate = errors.New("merge: degenerate tensor")

// multislerpEps is mergekit's eps for multislerp.
const multislerpEps = 1e-8

// MultiSlerpTo applies mergekit's multislerp (barycentric interpolation on
// the hypersphere) to one whole tensor of n ≥ 2 models, or — with base
// non-nil — to their task vectors, adding the result to the base. With
// weights wᵢ (divided by Σw when normalizeWeights), vᵢ the flattened
// tensors, uᵢ = vᵢ / (‖vᵢ‖ + 1e-8):
//
//	μ = Σ wᵢuᵢ / ‖Σ wᵢuᵢ‖,  tᵢ = uᵢ − ⟨uᵢ,μ⟩μ,  T = Σ wᵢtᵢ,  ν = ‖T‖ + 1e-8,
//	dst = (μ cos ν + T sin ν / ν) · Σ wᵢ‖vᵢ‖.
//
// When ‖Σ wᵢuᵢ‖ < 1e-8: two models give the linear w₀v₀ + w₁v₁, more give
// ErrDegenerate. One model is returned as is. It has no paper (mergekit
// cites a blog post); mergekit's implementation is the definition.
func MultiSlerpTo[T Float](dst, base []T, xs [][]T, weights []float64, normalizeWeights bool) error {
	mustCount("weights", len(weights), len(xs))
	mustSameLen("model", len(dst), xs...)
	n := len(xs)
	v := func(i, j int) float64 {
		x := float64(xs[i][j])
		if base != nil {
			x -= float64(base[j])
		}
		return x
	}
	if len(dst) == 0 {
		return nil
	}
	if n == 1 {
		for j := range dst {
			dst[j] = xs[0][j]
		}
		return nil
	}
	w := append([]float64(nil), weights...)
	if normalizeWeights {
		s := sum(w)
		for i := range w {
			w[i] /= s
		}
	}
	norms := make([]float64, n)
	for i := range xs {
		for j := range dst {
			norms[i] += v(i, j) * v(i, j)
		}
		norms[i] = math.Sqrt(norms[i])
	}
	scale := make([]float64, n) // uᵢ = scale[i]·vᵢ
	for i := range scale {
		scale[i] = 1 / (norms[i] + multislerpEps)
	}
	mean := make([]float64, len(dst))
	mn := 0.0
	for j := range mean {
		for i := range xs {
			mean[j] += w[i] * scale[i] * v(i, j)
		}
		mn += mean[j] * mean[j]
	}
	mn = math.Sqrt(mn)
	if mn < multislerpEps {
		if n == 2 {
			for j := range dst {
				r := w[0]*v(0, j) + w[1]*v(1, j)
				if base != nil {
					r += float64(base[j])
				}
				dst[j] = T(r)
			}
			return nil
		}
		return ErrDegenerate
	}
	for j := range mean {
		mean[j] /= mn
	}
	dots := make([]float64, n)
	for i := range xs {
		for j := range dst {
			dots[i] += scale[i] * v(i, j) * mean[j]
		}
	}
	tan := make([]float64, len(dst))
	tn := 0.0
	for j := range tan {
		for i := range xs {
			tan[j] += w[i] * (scale[i]*v(i, j) - dots[i]*mean[j])
		}
		tn += tan[j] * tan[j]
	}
	tn = math.Sqrt(tn) + multislerpEps
	avg := 0.0
	for i := range norms {
		avg += norms[i] * w[i]
	}
	c, s := math.Cos(tn), math.Sin(tn)/tn
	for j := range dst {
		r := (mean[j]*c + tan[j]*s) * avg
		if base != nil {
			r += float64(base[j])
		}
		dst[j] = T(r)
	}
	return nil
}
