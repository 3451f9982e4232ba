package merge

// DARELinear is mergekit's dare_linear: random drops keeping each entry with
// p = density, L1 rescale, Σ wᵢτ̃ᵢ.
const DARELinear Method = "dare-linear"

// dareLinearSpec declares DARELinear's base model rule, model count and
// parameters.
var dareLinearSpec = methodSpec{base: baseRequired, minModels: 1, gta: true, defRescl: true,
	params: gtaParams(false, true, pSeed),
	doc:    "random drops keeping each entry with p = density, L1 rescale, Σ wᵢτ̃ᵢ"}

// DARELinearTo applies mergekit's dare_linear (and, with p.Consensus, the
// mergekit form of dare_ties) to one whole tensor: entry j of model i's
// task vector is kept when Uniform(p.Keys[i], j) < p.Densities[i] (the
// counter-based stream of rng.go, as DARETo draws it), then the GTA
// combination of gta.go.
//
// Rescaling differs from the DARE paper: with p.Rescale the kept entries
// are scaled so that the task vector keeps its L1 norm (mergekit's rescale,
// default true for dare_linear); the paper — and this package's "dare"
// method — divides by the density instead. Both agree in expectation.
func DARELinearTo[T Float](dst, base []T, xs [][]T, p GTAParams) {
	mustCount("keys", len(p.Keys), len(xs))
	gtaTo(dst, base, xs, p, func(i int, _ []float64, keep []bool) {
		d := p.Densities[i]
		for j := range keep {
			keep[j] = Uniform(p.Keys[i], int64(j)) < d
		}
	})
}
