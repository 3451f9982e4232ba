package merge

import (
	"math"
	"sort"
)

// ArceeFusion is mergekit's arcee_fusion: keep the model's entries whose
// |Δ|·KL(softmax) reaches median + 1.5·IQR, the base's elsewhere.
const ArceeFusion Method = "arcee-fusion"

// arceeFusionSpec declares ArceeFusion's base model rule, model count and
// parameters.
var arceeFusionSpec = methodSpec{base: baseRequired, minModels: 1, maxModels: 1,
	doc: "keep the model's entries whose |Δ|·KL(softmax) reaches median + 1.5·IQR, the base's elsewhere"}

// ArceeFusionTo applies mergekit's arcee_fusion to one tensor of a base a
// and one model b. Along the last axis of shape (a 1-D tensor is one
// vector), with p = softmax(b) + 1e-8 and q = softmax(a) + 1e-8 per vector,
// KL = Σ p·log(p/q) for the vector, and each entry's importance is
// sⱼ = |bⱼ − aⱼ|·KL of its vector. With the sorted importances s₍₀₎ ≤ … ≤
// s₍N₋₁₎ and Q(q) = s₍⌊q·(N−1)⌋₎, the threshold is
// Q(0.5) + 1.5·(Q(0.75) − Q(0.25)), and dst = a + (b − a)·[s ≥ threshold].
//
// Where mergekit differs: above 10⁶ entries it estimates the quantiles
// from a random sample of 10⁶; here they are always exact (deterministic).
// The softmax runs over the stored layout's last axis (for a MatMul weight
// in ONNX, [in, out], over the outputs of one input row). It has no paper;
// mergekit's implementation is the definition.
func ArceeFusionTo[T Float](dst, a, b []T, shape []int64) {
	mustSameLen("model", len(dst), a, b)
	if len(dst) == 0 {
		return
	}
	outer, m, inner := 1, len(dst), 1
	if len(shape) > 0 {
		outer, m, inner = axisSplit(shape, len(shape)-1, len(dst))
	}
	s := make([]float64, len(dst))
	for o := 0; o < outer; o++ {
		for in := 0; in < inner; in++ {
			at := func(k int) int { return (o*m+k)*inner + in }
			mb, ma := math.Inf(-1), math.Inf(-1)
			for k := 0; k < m; k++ {
				mb = math.Max(mb, float64(b[at(k)]))
				ma = math.Max(ma, float64(a[at(k)]))
			}
			zb, za := 0.0, 0.0
			for k := 0; k < m; k++ {
				zb += math.Exp(float64(b[at(k)]) - mb)
				za += math.Exp(float64(a[at(k)]) - ma)
			}
			kl := 0.0
			for k := 0; k < m; k++ {
				p := math.Exp(float64(b[at(k)])-mb)/zb + 1e-8
				q := math.Exp(float64(a[at(k)])-ma)/za + 1e-8
				kl += p * math.Log(p/q)
			}
			for k := 0; k < m; k++ {
				j := at(k)
				s[j] = math.Abs(float64(b[j])-float64(a[j])) * kl
			}
		}
	}
	sorted := append([]float64(nil), s...)
	sort.Float64s(sorted)
	q := func(f float64) float64 { return sorted[int(f*float64(len(sorted)-1))] }
	thr := q(0.5) + 1.5*(q(0.75)-q(0.25))
	for j := range dst {
		if s[j] >= thr {
			dst[j] = b[j]
		} else {
			dst[j] = a[j]
		}
	}
}
