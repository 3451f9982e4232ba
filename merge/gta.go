package merge

import (
	"math"
	"slices"
)

// The generalized task arithmetic (GTA) family, as mergekit groups it:
// dare_linear, breadcrumbs, breadcrumbs_ties, della and della_linear share
// one combination step and differ in how each task vector is sparsified
// (dare.go's random drops, breadcrumbs.go's magnitude outliers, della.go's
// rank-dependent drops). For one tensor, with τᵢ = xᵢ − base:
//
//  1. sparsify: τ̃ᵢ = maskᵢ ⊙ τᵢ; with rescale, τ̃ᵢ is multiplied by
//     ‖τᵢ‖₁ / ‖τ̃ᵢ‖₁ (L1 norm matching, mergekit's rescale) unless either
//     norm is under 1e-7; a density ≥ 1 leaves τᵢ whole.
//  2. weight: δᵢ = wᵢ τ̃ᵢ.
//  3. with sign consensus (the _ties variants and della): γ = +1 where
//     Σᵢ δᵢ ≥ 0, else −1; mᵢ = [sign(δᵢ) = γ] (zeros never agree);
//     mixed = Σᵢ mᵢδᵢ and divisor = Σᵢ mᵢwᵢ (0 becomes 1). Without it:
//     mixed = Σᵢ δᵢ and divisor = Σᵢ wᵢ (|divisor| < 1e-8 becomes 1).
//  4. with normalize, mixed /= divisor; dst = base + λ·mixed.
//
// The sign election runs on the weighted deltas, as mergekit does (the
// TIES paper elects on unweighted trimmed deltas: our "ties" method follows
// the paper, these methods follow mergekit).

// gtaCombine performs steps 2–4 over sparsified task vectors taus (float64,
// one slice per model) into dst.
func gtaCombine[T Float](dst, base []T, taus [][]float64, weights []float64, consensus, normalize bool, lambda float64) {
	mustCount("weights", len(weights), len(taus))
	wsum := sum(weights)
	if math.Abs(wsum) < 1e-8 {
		wsum = 1
	}
	for j := range dst {
		mixed, div := 0.0, 0.0
		if consensus {
			s := 0.0
			for i, t := range taus {
				s += weights[i] * t[j]
			}
			pos := s >= 0
			for i, t := range taus {
				d := weights[i] * t[j]
				if d != 0 && (d > 0) == pos {
					mixed += d
					div += weights[i]
				}
			}
			if div == 0 {
				div = 1
			}
		} else {
			for i, t := range taus {
				mixed += weights[i] * t[j]
			}
			div = wsum
		}
		if normalize {
			mixed /= div
		}
		dst[j] = T(float64(base[j]) + lambda*mixed)
	}
}

// rescaleEps is the norm under which mergekit's L1 rescale is skipped.
const rescaleEps = 1e-7

// taskVector returns x − base in float64.
func taskVector[T Float](x, base []T) []float64 {
	t := make([]float64, len(x))
	for j := range x {
		t[j] = float64(x[j]) - float64(base[j])
	}
	return t
}

// applyMask zeroes tau where keep is false and, with rescale, matches the
// L1 norm of the result to tau's (skipped when either norm is under 1e-7).
func applyMask(tau []float64, keep []bool, rescale bool) {
	before, after := 0.0, 0.0
	for j, t := range tau {
		before += math.Abs(t)
		if !keep[j] {
			tau[j] = 0
		}
		after += math.Abs(tau[j])
	}
	if !rescale || before < rescaleEps || after < rescaleEps {
		return
	}
	s := before / after
	for j := range tau {
		tau[j] *= s
	}
}

// ascendingByMagnitude returns the indices of v sorted by |v| ascending,
// ties by index (the order a stable sort gives, so that masks are
// deterministic).
func ascendingByMagnitude(v []float64) []int {
	keys := make([]keyed, len(v))
	for i, x := range v {
		keys[i] = keyed{math.Abs(x), i}
	}
	return sortKeyed(keys, false)
}

// keyed is a value and its position.
type keyed struct {
	k float64
	i int
}

// sortKeyed returns the positions of keys ordered by k (ascending, or
// descending with desc), ties by position ascending. It sorts in
// O(n log n) (pdqsort on a total order), unlike a stable sort's n log² n.
func sortKeyed(keys []keyed, desc bool) []int {
	slices.SortFunc(keys, func(a, b keyed) int {
		switch {
		case a.k < b.k:
			if desc {
				return 1
			}
			return -1
		case a.k > b.k:
			if desc {
				return -1
			}
			return 1
		}
		return a.i - b.i
	})
	idx := make([]int, len(keys))
	for j, k := range keys {
		idx[j] = k.i
	}
	return idx
}

// GTAParams holds what the GTA-family kernels (DARELinearTo, BreadcrumbsTo,
// DellaTo) need besides the tensors. Per-model slices have one entry per
// model; those a method does not use may be nil.
type GTAParams struct {
	// Weights are the models' weights wᵢ.
	Weights []float64
	// Densities are the fractions of each task vector kept, in (0, 1].
	Densities []float64
	// Gammas are breadcrumbs' fractions of largest |τ| dropped.
	Gammas []float64
	// Epsilons are della's half-widths of the keep-probability range.
	Epsilons []float64
	// Keys are the random streams per model for this tensor (StreamKey):
	// dare_linear and della.
	Keys []uint64
	// Shape is the tensor's shape (della ranks within rows of axis 1).
	Shape []int64
	// Lambda scales the merged delta.
	Lambda float64
	// Rescale matches the L1 norm of each sparsified task vector to the
	// original's.
	Rescale bool
	// Normalize divides the mixed delta by the divisor (see above).
	Normalize bool
	// Consensus elects a sign per entry and keeps the agreeing deltas.
	Consensus bool
}

// gtaTo sparsifies each model's task vector with mask (which sets keep for
// model i) and combines them.
func gtaTo[T Float](dst, base []T, xs [][]T, p GTAParams, mask func(i int, tau []float64, keep []bool)) {
	mustCount("weights", len(p.Weights), len(xs))
	mustCount("densities", len(p.Densities), len(xs))
	mustSameLen("model", len(dst), append([][]T{base}, xs...)...)
	taus := make([][]float64, len(xs))
	keep := make([]bool, len(dst))
	for i, x := range xs {
		taus[i] = taskVector(x, base)
		if p.Densities[i] >= 1 {
			continue
		}
		for j := range keep {
			keep[j] = false
		}
		mask(i, taus[i], keep)
		applyMask(taus[i], keep, p.Rescale)
	}
	gtaCombine(dst, base, taus, p.Weights, p.Consensus, p.Normalize, p.Lambda)
}
