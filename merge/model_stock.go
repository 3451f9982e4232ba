package merge

import "math"

// ModelStock is mergekit's model_stock: t = N·cosθ/(1+(N−1)·cosθ) from the
// mean pairwise cosine of the task vectors; t·mean + (1−t)·base.
const ModelStock Method = "model-stock"

// modelStockSpec declares ModelStock's base model rule, model count and
// parameters.
var modelStockSpec = methodSpec{base: baseRequired, minModels: 2,
	params: []ParamSpec{{Name: "filter_wise", Kind: "bool", Default: "false", Doc: "one ratio per vector along the last axis instead of per tensor"}},
	doc:    "t = N·cosθ/(1+(N−1)·cosθ) from the mean pairwise cosine of the task vectors; t·mean + (1−t)·base"}

// ModelStockTo applies Model Stock (Jang et al., arXiv 2403.19522) as
// mergekit defines it, to one whole tensor of a base w₀ and N ≥ 2 models
// wᵢ: with τᵢ = wᵢ − w₀ and cos θ the mean over pairs i < j of
// ⟨τᵢ,τⱼ⟩ / max(‖τᵢ‖‖τⱼ‖, 1e-6) clamped to [−1, 1],
//
//	t = N·cos θ / (1 + (N − 1)·cos θ),  dst = t·mean(wᵢ) + (1 − t)·w₀.
//
// With filterWise, θ and t are computed per vector along the last axis of
// shape (a 1-D tensor is one vector) instead of over the whole tensor.
//
// Where the paper differs: it derives t for two models from their angle
// and, for N models, one angle assumed shared by every pair; mergekit (and
// this kernel) averages the pairwise cosines. Model weights are not used.
// Where mergekit differs: at cos θ = −1/(N − 1) its t is ±Inf (NaN
// output); here t = 0 (the base). Such task vectors cancel, e.g. two
// opposite ones, whose mean is the base for any t.
func ModelStockTo[T Float](dst, base []T, xs [][]T, shape []int64, filterWise bool) {
	mustSameLen("model", len(dst), append([][]T{base}, xs...)...)
	if len(xs) < 2 {
		panic("merge: model_stock needs at least two models besides the base")
	}
	n := len(xs)
	outer, m, inner := 1, len(dst), 1
	if filterWise && len(shape) > 0 {
		outer, m, inner = axisSplit(shape, len(shape)-1, len(dst))
	}
	for o := 0; o < outer; o++ {
		for in := 0; in < inner; in++ {
			at := func(k int) int { return (o*m+k)*inner + in }
			cs, pairs := 0.0, 0
			for a := 0; a < n; a++ {
				for b := a + 1; b < n; b++ {
					dot, na, nb := 0.0, 0.0, 0.0
					for k := 0; k < m; k++ {
						j := at(k)
						w0 := float64(base[j])
						ta, tb := float64(xs[a][j])-w0, float64(xs[b][j])-w0
						dot += ta * tb
						na += ta * ta
						nb += tb * tb
					}
					c := dot / math.Max(math.Sqrt(na)*math.Sqrt(nb), 1e-6)
					cs += math.Max(-1, math.Min(1, c))
					pairs++
				}
			}
			c := cs / float64(pairs)
			t := 0.0
			if den := 1 + float64(n-1)*c; den != 0 {
				t = float64(n) * c / den
			}
			for k := 0; k < m; k++ {
				j := at(k)
				avg := 0.0
				for _, x := range xs {
					avg += float64(x[j])
				}
				avg /= float64(n)
				dst[j] = T(t*avg + (1-t)*float64(base[j]))
			}
		}
	}
}
