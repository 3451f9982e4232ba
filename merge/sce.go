package merge

import "math"

// SCE is mergekit's sce: select by variance, weights ∝ mean τ², sign
// election, weighted disjoint mean.
const SCE Method = "sce"

// sceSpec declares SCE's base model rule, model count and parameters.
var sceSpec = methodSpec{base: baseRequired, minModels: 1,
	params: []ParamSpec{
		{Name: "select_topk", Kind: "float", Default: "1", Doc: "fraction of the entries of largest variance across models kept"},
		pInt8},
	doc: "select by variance, weights ∝ mean τ², sign election, weighted disjoint mean"}

// SCETo applies SCE (Select, Calculate, Erase; FuseChat, Wan et al.,
// arXiv 2408.07990) as mergekit defines it, to one whole tensor of a base
// and n models, with τᵢ = xᵢ − base:
//
//  1. select (when topK < 1): the per-entry population variance of τᵢ over
//     the models; of the entries with nonzero variance, the k = ⌊topK·nnz⌋
//     largest (ties by position) are kept in every τᵢ, the rest zeroed
//     (k = 0 zeroes all; topK ≤ 0 too);
//  2. calculate: model weights wᵢ = mean(τᵢ²) / Σₖ mean(τₖ²), or 1/n when
//     that sum is under 1e-6;
//  3. erase: γ = +1 where Σᵢ τᵢ ≥ 0, else −1; mᵢ = [sign(τᵢ) = γ];
//     dst = base + Σᵢ wᵢmᵢτᵢ / max(Σᵢ wᵢmᵢ, 1e-6).
//
// The config's model weights are not used. The paper computes the weights
// from the selected entries the same way; mergekit's 1e-6 floors (which
// fire for small fine-tuning deltas, mean τ² ~ 1e-6) are kept.
func SCETo[T Float](dst, base []T, xs [][]T, topK float64) {
	mustSameLen("model", len(dst), append([][]T{base}, xs...)...)
	n := len(xs)
	taus := make([][]float64, n)
	for i, x := range xs {
		taus[i] = taskVector(x, base)
	}
	if topK < 1 {
		keep := make([]bool, len(dst))
		if topK > 0 {
			vars := make([]float64, len(dst))
			var nz []keyed
			for j := range dst {
				mean := 0.0
				for _, t := range taus {
					mean += t[j]
				}
				mean /= float64(n)
				v := 0.0
				for _, t := range taus {
					v += (t[j] - mean) * (t[j] - mean)
				}
				vars[j] = v / float64(n)
				if vars[j] != 0 {
					nz = append(nz, keyed{vars[j], j})
				}
			}
			k := int(float64(len(nz)) * topK)
			for _, j := range sortKeyed(nz, true)[:k] {
				keep[j] = true
			}
		}
		for _, t := range taus {
			for j := range t {
				if !keep[j] {
					t[j] = 0
				}
			}
		}
	}
	w := make([]float64, n)
	for i, t := range taus {
		for _, e := range t {
			w[i] += e * e
		}
		if len(t) > 0 {
			w[i] /= float64(len(t))
		}
	}
	if ws := sum(w); math.Abs(ws) < 1e-6 {
		for i := range w {
			w[i] = 1 / float64(n)
		}
	} else {
		for i := range w {
			w[i] /= ws
		}
	}
	for j := range dst {
		s := 0.0
		for _, t := range taus {
			s += t[j]
		}
		pos := s >= 0
		num, den := 0.0, 0.0
		for i, t := range taus {
			if t[j] != 0 && (t[j] > 0) == pos {
				num += w[i] * t[j]
				den += w[i]
			}
		}
		dst[j] = T(float64(base[j]) + num/math.Max(den, 1e-6))
	}
}
