package merge

import "math"

// Karcher is mergekit's karcher: Riemannian mean of the directions (equal
// weights), scaled by the mean norm.
const Karcher Method = "karcher"

// karcherSpec declares Karcher's base model rule, model count and
// parameters.
var karcherSpec = methodSpec{base: baseNone, minModels: 1,
	params: []ParamSpec{
		{Name: "max_iter", Kind: "int", Default: "10", Doc: "iterations of the Karcher mean"},
		{Name: "tol", Kind: "float", Default: "1e-5", Doc: "convergence tolerance"}},
	doc: "Riemannian mean of the directions (equal weights), scaled by the mean norm"}

// KarcherTo applies mergekit's karcher to one whole tensor of n models:
// the weighted Riemannian (Karcher/Fréchet) mean of the directions on the
// unit sphere, scaled by the weighted mean norm. With αᵢ = 1/n (mergekit
// uses equal weights whatever the config says), ‖vᵢ‖ the norms and
// uᵢ = vᵢ/‖vᵢ‖ over the models with ‖vᵢ‖ > tol (α renormalized over
// them; none gives zeros):
//
//	u ← Σ αᵢuᵢ / ‖Σ αᵢuᵢ‖ (u₁ when that norm is < tol);
//	repeat maxIter times: T = Σ αᵢ·θᵢ/sin θᵢ·(uᵢ − cos θᵢ·u) over the
//	  models with θᵢ = acos(clamp(⟨u,uᵢ⟩)) ≥ tol; stop when ‖T‖ < tol;
//	  u ← cos‖T‖·u + sin‖T‖·T/‖T‖, then u ← u/‖u‖ when ‖u‖ > tol;
//	dst = (Σ αᵢ‖vᵢ‖)·u, the sum over all models.
//
// Where mergekit differs: it iterates in the tensors' dtype; here every
// step is float64.
func KarcherTo[T Float](dst []T, xs [][]T, maxIter int, tol float64) {
	mustSameLen("model", len(dst), xs...)
	n := len(xs)
	if n == 1 {
		copy(dst, xs[0])
		return
	}
	norms := make([]float64, n)
	for i, x := range xs {
		for _, e := range x {
			norms[i] += float64(e) * float64(e)
		}
		norms[i] = math.Sqrt(norms[i])
	}
	var valid []int
	for i, nm := range norms {
		if nm > tol {
			valid = append(valid, i)
		}
	}
	if len(valid) == 0 {
		for j := range dst {
			dst[j] = 0
		}
		return
	}
	alpha := 1 / float64(len(valid)) // equal αᵢ renormalized over the valid models
	unit := func(i, j int) float64 { return float64(xs[i][j]) / norms[i] }
	u := make([]float64, len(dst))
	for j := range u {
		for _, i := range valid {
			u[j] += alpha * unit(i, j)
		}
	}
	if nu := norm2(u); nu < tol {
		for j := range u {
			u[j] = unit(valid[0], j)
		}
	} else {
		scaleVec(u, 1/nu)
	}
	tv := make([]float64, len(dst))
	for it := 0; it < maxIter; it++ {
		for j := range tv {
			tv[j] = 0
		}
		for _, i := range valid {
			dot := 0.0
			for j := range u {
				dot += u[j] * unit(i, j)
			}
			dot = math.Max(-1, math.Min(1, dot))
			theta := math.Acos(dot)
			if theta < tol {
				continue
			}
			f := alpha * theta / math.Sin(theta)
			for j := range tv {
				tv[j] += f * (unit(i, j) - dot*u[j])
			}
		}
		nt := norm2(tv)
		if nt < tol {
			break
		}
		c, s := math.Cos(nt), math.Sin(nt)
		for j := range u {
			u[j] = c*u[j] + s*tv[j]/nt
		}
		if nu := norm2(u); nu > tol {
			scaleVec(u, 1/nu)
		}
	}
	scale := 0.0
	for _, nm := range norms {
		scale += nm / float64(n)
	}
	for j := range dst {
		dst[j] = T(scale * u[j])
	}
}

func norm2(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s)
}

func scaleVec(v []float64, s float64) {
	for j := range v {
		v[j] *= s
	}
}
