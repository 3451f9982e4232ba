package merge

import (
	"fmt"
	"math"
)

// Float is the element type of the slice-level kernels: float32 storage (the
// usual case, fp16/bf16 tensors are widened to it) or float64. Every kernel
// accumulates in float64 whatever T is.
type Float interface{ ~float32 | ~float64 }

// mustSameLen panics when a slice's length differs from n: a caller bug, not
// a data outcome (STYLE.md "panic vs error").
func mustSameLen[T Float](what string, n int, xs ...[]T) {
	for i, x := range xs {
		if len(x) != n {
			panic(fmt.Sprintf("merge: %s %d has length %d, want %d", what, i, len(x), n))
		}
	}
}

func mustCount(what string, got, want int) {
	if got != want {
		panic(fmt.Sprintf("merge: %d %s for %d models", got, what, want))
	}
}

// LinearTo sets dst to the weighted average Σ wᵢ xᵢ / Σ wᵢ, or to the
// weighted sum Σ wᵢ xᵢ when normalize is false. dst may alias one of xs.
// It panics when lengths disagree; Σ wᵢ = 0 with normalize gives ±Inf/NaN,
// so callers validate weights first (Options.Validate does).
func LinearTo[T Float](dst []T, xs [][]T, weights []float64, normalize bool) {
	mustCount("weights", len(weights), len(xs))
	mustSameLen("model", len(dst), xs...)
	coef := weights
	if normalize {
		coef = normalized(weights)
	}
	linearBlocked(dst, xs, coef)
}

// normalized returns wᵢ / Σ w, computed on weights scaled by their largest
// magnitude first, so that weights near the float64 range (1e308, 1e308)
// give their true ratios (½, ½) instead of an infinite sum.
func normalized(weights []float64) []float64 {
	out := normalizedScale(weights)
	s := sum(out)
	for i := range out {
		out[i] /= s
	}
	return out
}

// normalizedScale returns the weights divided by their largest magnitude
// (their sum is then finite; it is zero exactly when theirs is).
func normalizedScale(weights []float64) []float64 {
	big := 0.0
	for _, w := range weights {
		big = math.Max(big, math.Abs(w))
	}
	out := make([]float64, len(weights))
	for i, w := range weights {
		if big > 0 {
			out[i] = w / big
		}
	}
	return out
}

// TaskArithmeticTo sets dst = base + λ Σ wᵢ (xᵢ − base).
func TaskArithmeticTo[T Float](dst, base []T, xs [][]T, weights []float64, lambda float64) {
	mustCount("weights", len(weights), len(xs))
	mustSameLen("model", len(dst), append([][]T{base}, xs...)...)
	taskArithmeticBlocked(dst, base, xs, weights, lambda)
}

// TIESTo applies TIES-Merging to one tensor (or a chunk of one) given each
// model's trim threshold: τᵢ = xᵢ − base; trim: τᵢ is kept where
// |τᵢ| ≥ thresholds[i] (ties at the threshold kept) and zeroed elsewhere;
// elect: γ = sign(Σᵢ trimmed τᵢ), a zero sum counting as +1; disjoint mean:
// τ = Σ wᵢτᵢ / Σ wᵢ over the models whose trimmed τᵢ has sign γ (zero
// entries never agree; no agreeing model gives τ = 0); dst = base + λτ.
// With all weights 1 the disjoint mean divides by the count of agreeing
// models, as in the paper. The thresholds come from TopKThreshold (per
// tensor) or a Selector run over all merged tensors (global).
func TIESTo[T Float](dst, base []T, xs [][]T, weights, thresholds []float64, lambda float64) {
	mustCount("weights", len(weights), len(xs))
	mustCount("thresholds", len(thresholds), len(xs))
	mustSameLen("model", len(dst), append([][]T{base}, xs...)...)
	tiesBlocked(dst, base, xs, weights, thresholds, lambda)
}

// DAREParams holds what DARETo needs besides the tensors.
type DAREParams struct {
	// Weights are the models' weights wᵢ.
	Weights []float64
	// Densities are the keep probabilities (1 − p) per model, in (0, 1].
	Densities []float64
	// Keys are the random streams per model for this tensor (StreamKey).
	Keys []uint64
	// Offset is the index within the whole tensor of the chunk's first
	// element, so that a chunked merge draws the same mask as a whole one.
	Offset int64
	// Lambda scales the merged delta.
	Lambda float64
	// TIES selects DARE-TIES: sign election and disjoint mean on the
	// rescaled deltas instead of their weighted sum.
	TIES bool
}

// DARETo applies DARE to one tensor (or chunk): each delta entry τᵢⱼ is kept
// with probability dᵢ = Densities[i] (dropped with p = 1 − dᵢ) and kept
// entries are rescaled by 1/(1 − p), giving τ̂ᵢ. The drop decision for entry
// j of model i is Uniform(Keys[i], Offset+j) ≥ dᵢ, so it depends only on the
// seed, the tensor, the model and the position. Without TIES,
// dst = base + λ Σ wᵢ τ̂ᵢ; with TIES, dst = base + λ·disjoint mean of τ̂ᵢ
// after sign election, exactly as TIESTo with no magnitude trim.
func DARETo[T Float](dst, base []T, xs [][]T, p DAREParams) {
	m := len(xs)
	mustCount("weights", len(p.Weights), m)
	mustCount("densities", len(p.Densities), m)
	mustCount("keys", len(p.Keys), m)
	mustSameLen("model", len(dst), append([][]T{base}, xs...)...)
	dareBlocked(dst, base, xs, p)
}

// SlerpDotThreshold is the |cos| above which SLERP falls back to linear
// interpolation (mergekit's DOT_THRESHOLD).
const SlerpDotThreshold = 0.9995

// slerpEps is the norm under which a vector counts as zero (mergekit's eps).
const slerpEps = 1e-8

// SlerpCoefficients returns (c0, c1) such that SLERP(t; v0, v1) =
// c0·v0 + c1·v1 for vectors with the given inner product and norms: with
// cos = dot/(‖v0‖‖v1‖) and θ = acos(cos), c0 = sin((1−t)θ)/sin θ and
// c1 = sin(tθ)/sin θ; when |cos| > SlerpDotThreshold, or either norm is
// under 1e-8 (the angle is undefined), the linear (1−t, t).
func SlerpCoefficients(dot, norm0, norm1, t float64) (c0, c1 float64) {
	if norm0 <= slerpEps || norm1 <= slerpEps {
		return 1 - t, t
	}
	c := dot / (norm0 * norm1)
	if math.Abs(c) > SlerpDotThreshold {
		return 1 - t, t
	}
	c = math.Max(-1, math.Min(1, c))
	theta := math.Acos(c)
	s := math.Sin(theta)
	return math.Sin(theta-theta*t) / s, math.Sin(theta*t) / s
}

// SLERPTo sets dst to the spherical interpolation between v0 (t = 0) and v1
// (t = 1) of the flattened tensors, as SlerpCoefficients describes.
func SLERPTo[T Float](dst, v0, v1 []T, t float64) {
	mustSameLen("model", len(dst), v0, v1)
	dot, n0, n1 := SlerpStats(v0, v1)
	c0, c1 := SlerpCoefficients(dot, math.Sqrt(n0), math.Sqrt(n1), t)
	for j := range dst {
		dst[j] = T(c0*float64(v0[j]) + c1*float64(v1[j]))
	}
}

// SlerpStats returns ⟨v0,v1⟩, ‖v0‖² and ‖v1‖² accumulated in float64;
// partial results of chunks add up.
func SlerpStats[T Float](v0, v1 []T) (dot, sq0, sq1 float64) {
	mustSameLen("model", len(v0), v1)
	for j := range v0 {
		a, b := float64(v0[j]), float64(v1[j])
		dot += a * b
		sq0 += a * a
		sq1 += b * b
	}
	return dot, sq0, sq1
}

// FisherTo sets dst = Σ cᵢ F̃ᵢ xᵢ / Σ cᵢ F̃ᵢ elementwise with
// F̃ᵢ = max(Fᵢ, floor): Fisher-weighted averaging (Matena & Raffel). The
// coefficients cᵢ are the models' weights λᵢ, already divided by ‖Fᵢ‖ when
// the caller normalizes. A zero denominator (possible only with floor 0 or
// cancelling coefficients) gives the unweighted mean of xᵢ.
func FisherTo[T Float](dst []T, xs, fishers [][]T, coeffs []float64, floor float64) {
	mustCount("fisher tensors", len(fishers), len(xs))
	mustCount("coefficients", len(coeffs), len(xs))
	mustSameLen("tensor", len(dst), append(append([][]T{}, xs...), fishers...)...)
	for j := range dst {
		num, den := 0.0, 0.0
		for i, x := range xs {
			f := math.Max(float64(fishers[i][j]), floor) * coeffs[i]
			num += f * float64(x[j])
			den += f
		}
		if den == 0 {
			for _, x := range xs {
				num += float64(x[j])
			}
			den = float64(len(xs))
		}
		dst[j] = T(num / den)
	}
}

func sum(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s
}
