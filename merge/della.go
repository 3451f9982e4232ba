package merge

// Della is mergekit's della: MagPrune: keep probability by rank in each row
// (density ± epsilon), sign election, disjoint mean.
const Della Method = "della"

// dellaSpec declares Della's base model rule, model count and parameters.
var dellaSpec = methodSpec{base: baseRequired, minModels: 1, gta: true, consensus: true, defNormalize: true, defRescl: true,
	params: gtaParams(true, true, pEpsilon, pSeed),
	doc:    "MagPrune: keep probability by rank in each row (density ± epsilon), sign election, disjoint mean"}

// DellaTo applies DELLA-Merging's MagPrune (Deep et al., arXiv 2406.11617)
// as mergekit's della (p.Consensus, normalize and rescale on by default)
// and della_linear define it, to one whole tensor. The task vector is cut
// into rows along axis 1 of the tensor as stored (a 1-D tensor is one
// row; for a rank-r tensor each row fixes every index but axis 1). Within
// a row of m entries, entry j has rank rⱼ ∈ 1..m by |τ| ascending (ties by
// position) and keep probability
//
//	pⱼ = (d − ε) + 2ε·(rⱼ − 1)/(m − 1)
//
// with d = p.Densities[i] and ε = p.Epsilons[i]; it is kept when
// Uniform(p.Keys[i], j) < pⱼ (j the entry's flat index). Then the GTA
// combination of gta.go: with rescale, L1 norm matching (mergekit's; the
// paper rescales each kept entry by 1/pⱼ).
//
// Where mergekit differs: a row of one entry gives 0/0 there (NaN); here
// its probability is d. Axis 1 is the stored layout's: a MatMul weight in
// ONNX is [in, out], the transpose of torch's Linear, so a "row" here is
// an input row, not an output neuron's weights.
func DellaTo[T Float](dst, base []T, xs [][]T, p GTAParams) {
	mustCount("epsilons", len(p.Epsilons), len(xs))
	mustCount("keys", len(p.Keys), len(xs))
	axis := 0
	if len(p.Shape) >= 2 {
		axis = 1
	}
	outer, m, inner := axisSplit(p.Shape, axis, len(dst))
	gtaTo(dst, base, xs, p, func(i int, tau []float64, keep []bool) {
		d, eps := p.Densities[i], p.Epsilons[i]
		keys := make([]keyed, m)
		for o := 0; o < outer; o++ {
			for in := 0; in < inner; in++ {
				for k := range keys {
					j := (o*m+k)*inner + in
					keys[k] = keyed{abs(tau[j]), j}
				}
				for r, j := range sortKeyed(keys, false) {
					prob := d
					if m > 1 {
						prob = (d - eps) + 2*eps*float64(r)/float64(m-1)
					}
					keep[j] = Uniform(p.Keys[i], int64(j)) < prob
				}
			}
		}
	})
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// axisSplit returns (outer, n, inner) for vectors along axis of shape:
// element k of vector (o, in) has flat index (o·n + k)·inner + in. An empty
// shape (or one that does not describe size elements) is one vector of
// size elements.
func axisSplit(shape []int64, axis, size int) (outer, n, inner int) {
	total := int64(1)
	for _, d := range shape {
		total *= d
	}
	if len(shape) == 0 || total != int64(size) || axis < 0 || axis >= len(shape) {
		return 1, size, 1
	}
	outer, inner = 1, 1
	for _, d := range shape[:axis] {
		outer *= int(d)
	}
	for _, d := range shape[axis+1:] {
		inner *= int(d)
	}
	return outer, int(shape[axis]), inner
}
