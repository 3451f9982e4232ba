package merge

// Breadcrumbs is mergekit's breadcrumbs: drop the gamma largest and the
// smallest |τ| (keep density), Σ wᵢτ̃ᵢ.
const Breadcrumbs Method = "breadcrumbs"

// breadcrumbsSpec declares Breadcrumbs's base model rule, model count and
// parameters.
var breadcrumbsSpec = methodSpec{base: baseRequired, minModels: 1, gta: true,
	params: gtaParams(false, false, pGamma),
	doc:    "drop the gamma largest and the smallest |τ| (keep density), Σ wᵢτ̃ᵢ"}

// BreadcrumbsTo applies Model Breadcrumbs (Davari & Belilovsky,
// arXiv 2312.06795) as mergekit's breadcrumbs and breadcrumbs_ties
// (p.Consensus) define it, to one whole tensor: for model i with density d
// and γ = p.Gammas[i] over n entries, let k = ⌊d·n⌋, top = ⌊γ·n⌋ and
// bottom = n − k − top (when bottom < 0, top += bottom and bottom = 0);
// sorting |τᵢ| ascending (ties by position), the entries of rank
// [bottom, n − top) are kept: the smallest and the γ largest are dropped.
// Then the GTA combination of gta.go.
//
// Where mergekit differs: its slice indices[n_bot:-n_top] keeps nothing
// when top = 0 (γ·n < 1); here top = 0 drops no large entry, which is the
// paper's definition. Ties in |τ| are broken by position here, arbitrarily
// by torch's sort there.
func BreadcrumbsTo[T Float](dst, base []T, xs [][]T, p GTAParams) {
	mustCount("gammas", len(p.Gammas), len(xs))
	gtaTo(dst, base, xs, p, func(i int, tau []float64, keep []bool) {
		n := len(tau)
		k := int(p.Densities[i] * float64(n))
		top := int(p.Gammas[i] * float64(n))
		bottom := n - k - top
		if bottom < 0 {
			top += bottom
			bottom = 0
		}
		idx := ascendingByMagnitude(tau)
		for _, j := range idx[bottom : n-top] {
			keep[j] = true
		}
	})
}
