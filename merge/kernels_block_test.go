package merge

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The element-wise definitions the blocked kernels must reproduce bit for
// bit (the kernels before they were blocked).

func refTIES[T Float](dst, base []T, xs [][]T, weights, thresholds []float64, lambda float64) {
	tau := make([]uint64, len(xs))
	for j := range dst {
		b := float64(base[j])
		s := 0.0
		for i, x := range xs {
			t := float64(x[j]) - b
			if math.Abs(t) < thresholds[i] {
				t = 0
			}
			tau[i] = math.Float64bits(t)
			s += t
		}
		dst[j] = T(b + lambda*refDisjointMean(tau, weights, s))
	}
}

func refDisjointMean(tau []uint64, weights []float64, s float64) float64 {
	pos := s >= 0 // a zero sum elects +1
	num, den := 0.0, 0.0
	for i, tb := range tau {
		t := math.Float64frombits(tb)
		if t != 0 && (t > 0) == pos {
			num += weights[i] * t
			den += weights[i]
		}
	}
	if den == 0 {
		return 0
	}
	return num / den
}

func refDARE[T Float](dst, base []T, xs [][]T, p DAREParams) {
	tau := make([]uint64, len(xs))
	for j := range dst {
		b := float64(base[j])
		s := 0.0
		for i, x := range xs {
			t := 0.0
			if d := p.Densities[i]; Uniform(p.Keys[i], p.Offset+int64(j)) < d {
				t = (float64(x[j]) - b) / d
			}
			tau[i] = math.Float64bits(t)
			if p.TIES {
				s += t
			} else {
				s += p.Weights[i] * t
			}
		}
		if p.TIES {
			s = refDisjointMean(tau, p.Weights, s)
		}
		dst[j] = T(b + p.Lambda*s)
	}
}

func refLinear[T Float](dst []T, xs [][]T, coef []float64) {
	for j := range dst {
		acc := 0.0
		for i, x := range xs {
			acc += coef[i] * float64(x[j])
		}
		dst[j] = T(acc)
	}
}

func refTaskArithmetic[T Float](dst, base []T, xs [][]T, weights []float64, lambda float64) {
	for j := range dst {
		b := float64(base[j])
		acc := 0.0
		for i, x := range xs {
			acc += weights[i] * (float64(x[j]) - b)
		}
		dst[j] = T(b + lambda*acc)
	}
}

// hostileSlices returns a base and m models of length n whose entries
// exercise the kernels' edge cases: deltas exactly at the thresholds,
// equal values (τ = 0), signed zeros, sums that cancel to zero, and
// ordinary Gaussian deltas.
func hostileSlices(n, m int, seed uint64) (base []float32, xs [][]float32) {
	r := rand.New(rand.NewPCG(seed, 7))
	base = make([]float32, n)
	for j := range base {
		base[j] = float32(r.NormFloat64())
		if j%17 == 0 {
			base[j] = 0
		}
	}
	for i := range m {
		x := make([]float32, n)
		for j := range x {
			switch r.IntN(8) {
			case 0:
				x[j] = base[j] // τ = 0
			case 1:
				x[j] = base[j] + 0.25 // at the threshold 0.25 (exact for small bases)
			case 2:
				x[j] = base[j] - 0.25
			case 3:
				if i%2 == 0 { // cancels with the next model
					x[j] = base[j] + 0.5
				} else {
					x[j] = base[j] - 0.5
				}
			case 4:
				x[j] = float32(math.Copysign(0, -1))
			default:
				x[j] = base[j] + float32(0.3*r.NormFloat64())
			}
		}
		xs = append(xs, x)
	}
	return base, xs
}

func sameBits32(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for j := range want {
		if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
			t.Fatalf("%s: element %d = %v (%#x), want %v (%#x)", what, j, got[j], math.Float32bits(got[j]), want[j], math.Float32bits(want[j]))
		}
	}
}

// TestBlockedKernelsMatchDefinition checks that the blocked TIES, DARE,
// DARE-TIES, linear and task-arithmetic kernels give bit for bit the
// element-wise definitions, for lengths around the block size, model counts
// up to and past the stack buffers, negative and zero weights, and dst
// aliasing the base or a model.
func TestBlockedKernelsMatchDefinition(t *testing.T) {
	for _, n := range []int{1, kernelBlock - 1, kernelBlock, kernelBlock + 1, 3*kernelBlock + 17} {
		for _, m := range []int{1, 2, 3, maxBlockModels, maxBlockModels + 3} {
			base, xs := hostileSlices(n, m, uint64(n*31+m))
			w := make([]float64, m)
			thr := make([]float64, m)
			dens := make([]float64, m)
			keys := make([]uint64, m)
			for i := range w {
				w[i] = []float64{1, 2, -0.5, 0, 1.5}[i%5]
				thr[i] = []float64{0.25, 0, 0.5, 0.1}[i%4]
				dens[i] = []float64{0.5, 1, 0.2, 0.9}[i%4]
				keys[i] = StreamKey(int64(m), "w", i)
			}
			got := make([]float32, n)
			want := make([]float32, n)
			TIESTo(got, base, xs, w, thr, 0.7)
			refTIES(want, base, xs, w, thr, 0.7)
			sameBits32(t, "ties", got, want)
			for _, ties := range []bool{false, true} {
				p := DAREParams{Weights: w, Densities: dens, Keys: keys, Offset: 5, Lambda: 1.3, TIES: ties}
				DARETo(got, base, xs, p)
				refDARE(want, base, xs, p)
				sameBits32(t, "dare", got, want)
			}
			LinearTo(got, xs, w, false)
			refLinear(want, xs, w)
			sameBits32(t, "linear", got, want)
			TaskArithmeticTo(got, base, xs, w, 0.9)
			refTaskArithmetic(want, base, xs, w, 0.9)
			sameBits32(t, "task arithmetic", got, want)
			// dst aliasing the base, then a model
			refTIES(want, base, xs, w, thr, 1)
			alias := append([]float32(nil), base...)
			TIESTo(alias, alias, xs, w, thr, 1)
			sameBits32(t, "ties into base", alias, want)
			xs0 := xs[0]
			xs[0] = append([]float32(nil), xs0...)
			TIESTo(xs[0], base, xs, w, thr, 1)
			sameBits32(t, "ties into model 1", xs[0], want)
			xs[0] = xs0
		}
	}
}

// linearKahan32 is the float32 alternative to linearBlocked that was
// measured and not adopted: Σ cᵢxᵢ accumulated in float32 with Kahan
// compensation. TestFloat32KahanBound bounds its error; the benchmark
// BenchmarkLinearAccumulation compares its speed with the float64
// accumulation the kernels use.
func linearKahan32(dst []float32, xs [][]float32, coef []float32) {
	for j := range dst {
		var s, c float32
		for i, x := range xs {
			y := coef[i]*x[j] - c
			t := s + y
			c = (t - s) - y
			s = t
		}
		dst[j] = s
	}
}

// TestFloat32KahanBound checks the float32 compensated sum against the
// float64 accumulation rounded to float32 (what LinearTo returns): the
// difference stays within 2⁻²² Σ|cᵢxᵢ| + half an ulp of the result (the
// compensated-summation bound 2u·Σ|terms| with u = 2⁻²⁴, plus the product
// roundings and the final rounding), for 2 to 16 models. It is accurate
// enough; it is not faster in Go's scalar code (see the benchmark), so the
// kernels keep float64 accumulation and their results stay bit for bit
// the float64 definition.
func TestFloat32KahanBound(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, m := range []int{2, 3, 8, 16} {
		n := 4096
		xs := make([][]float32, m)
		coef := make([]float32, m)
		coef64 := make([]float64, m)
		for i := range xs {
			coef[i] = float32(r.Float64()*2 - 0.5)
			coef64[i] = float64(coef[i])
			xs[i] = make([]float32, n)
			for j := range xs[i] {
				xs[i][j] = float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(6)-3)))
			}
		}
		got := make([]float32, n)
		want := make([]float32, n)
		linearKahan32(got, xs, coef)
		LinearTo(want, xs, coef64, false)
		worst := 0.0
		for j := range got {
			abs := 0.0
			for i := range xs {
				abs += math.Abs(coef64[i] * float64(xs[i][j]))
			}
			w := float64(want[j])
			ulp := float64(math.Nextafter32(float32(math.Abs(w)), float32(math.Inf(1)))) - math.Abs(w)
			bound := math.Ldexp(abs, -22) + ulp/2
			if d := math.Abs(float64(got[j]) - w); d > bound {
				t.Fatalf("%d models, element %d: |float32 Kahan − float64| = %g > bound %g", m, j, d, bound)
			} else if abs > 0 {
				worst = max(worst, d/abs)
			}
		}
		t.Logf("%d models: worst |error| / Σ|cᵢxᵢ| = %.3g (2⁻²² = %.3g)", m, worst, math.Ldexp(1, -22))
	}
}
