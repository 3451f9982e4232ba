package merge

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// avx2Inputs returns float32 test vectors of length n: Gaussian values with
// small deltas, plus (when edge) NaNs, infinities, signed zeros, equal
// values, subnormals and values of very different magnitudes.
func avx2Inputs(r *rand.Rand, n, models int, edge bool) (base []float32, xs [][]float32) {
	special := []float32{0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)),
		float32(math.NaN()), math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32, math.MaxFloat32, -math.MaxFloat32, 1e-30, 3e30}
	pick := func() float32 {
		if edge && r.IntN(6) == 0 {
			return special[r.IntN(len(special))]
		}
		return float32(r.NormFloat64())
	}
	base = make([]float32, n)
	for j := range base {
		base[j] = pick()
	}
	for range models {
		x := make([]float32, n)
		for j := range x {
			switch {
			case r.IntN(10) == 0:
				x[j] = base[j] // unchanged
			case edge && r.IntN(5) == 0:
				x[j] = pick()
			default:
				x[j] = base[j] + float32(r.NormFloat64()*1e-2)
			}
		}
		xs = append(xs, x)
	}
	return base, xs
}

// TestAVX2KernelsMatchGo checks that the AVX2 loops of the TIES, DARE and
// DARE-TIES kernels and of the trim bracket scan give bit for bit the
// pure-Go results (NaN payloads aside), tails and special values included.
func TestAVX2KernelsMatchGo(t *testing.T) {
	if !haveAVX2 {
		t.Skip("no AVX2 kernels on this CPU/build (or ONNXPOST_SIMD=off)")
	}
	r := rand.New(rand.NewPCG(7, 11))
	for _, tc := range []struct {
		n, models int
		edge      bool
	}{
		{0, 3, false}, {1, 1, false}, {3, 2, true}, {4, 3, false}, {7, 3, true}, {8, 1, true},
		{255, 3, true}, {256, 3, false}, {257, 3, true}, {1000, 5, true}, {4099, 3, false},
		{10000, 9, true}, {9000, 3, false},
	} {
		base, xs := avx2Inputs(r, tc.n, tc.models, tc.edge)
		weights := make([]float64, tc.models)
		thr := make([]float64, tc.models)
		for i := range weights {
			weights[i] = 0.5 + r.Float64()
			thr[i] = 5e-3 * r.Float64()
		}
		thr[0] = 0 // keep everything
		for _, lambda := range []float64{1, 0.7} {
			want := make([]float32, tc.n)
			got := make([]float32, tc.n)
			tiesBlockedGo(want, base, xs, weights, thr, lambda)
			tiesBlockedF32(got, base, xs, weights, thr, lambda)
			for j := range want {
				if math.Float32bits(got[j]) != math.Float32bits(want[j]) && !(got[j] != got[j] && want[j] != want[j]) {
					t.Fatalf("TIES n=%d models=%d λ=%v: element %d = %v (%#x), pure Go %v (%#x)", tc.n, tc.models, lambda, j, got[j], math.Float32bits(got[j]), want[j], math.Float32bits(want[j]))
				}
			}
		}
		for _, ties := range []bool{false, true} {
			p := DAREParams{Weights: weights, Densities: make([]float64, tc.models), Keys: make([]uint64, tc.models),
				Offset: int64(r.IntN(1 << 40)), Lambda: 0.9, TIES: ties}
			for i := range p.Densities {
				p.Densities[i] = []float64{1, 0.3, 0.5, 1e-9, 0.77}[i%5]
				p.Keys[i] = StreamKey(int64(tc.n), "t", i)
			}
			want := make([]float32, tc.n)
			got := make([]float32, tc.n)
			dareBlockedGo(want, base, xs, p)
			dareBlockedF32(got, base, xs, p)
			for j := range want {
				if math.Float32bits(got[j]) != math.Float32bits(want[j]) && !(got[j] != got[j] && want[j] != want[j]) {
					t.Fatalf("DARE ties=%v n=%d models=%d: element %d = %v (%#x), pure Go %v (%#x)", ties, tc.n, tc.models, j, got[j], math.Float32bits(got[j]), want[j], math.Float32bits(want[j]))
				}
			}
		}
		for i, x := range xs {
			// a bracket around the middle of the deltas, and the open ones
			keys := make([]uint32, len(x))
			for j := range x {
				keys[j] = trimKey(absDelta(x[j], base[j]))
			}
			slices.Sort(keys)
			brs := [][2]uint32{{0, math.MaxUint32}, {0, 0}, {math.MaxUint32, math.MaxUint32}}
			if len(keys) > 0 {
				brs = append(brs, [2]uint32{keys[len(keys)/3], keys[len(keys)/2]}, [2]uint32{keys[len(keys)-1], math.MaxUint32})
			}
			for _, lh := range brs {
				want := &bracket{lo: lh[0], hi: lh[1]}
				got := &bracket{lo: lh[0], hi: lh[1]}
				bracketScanGo(want, base, x)
				bracketScanF32(got, base, x)
				if got.above.Load() != want.above.Load() || !slices.Equal(got.vals, want.vals) {
					t.Fatalf("bracket n=%d model %d [%#x, %#x]: above %d, %d values; pure Go %d, %d values",
						tc.n, i, lh[0], lh[1], got.above.Load(), len(got.vals), want.above.Load(), len(want.vals))
				}
			}
		}
	}
}

// TestFirstNonFinite: the bit test finds the first NaN or ±Inf of float32
// and float64 slices at every position of a chunk, and nothing in finite
// ones (the largest finite values and subnormals included).
func TestFirstNonFinite(t *testing.T) {
	for _, n := range []int{0, 1, 5, 1023, 1024, 1025, 3000} {
		v := make([]float32, n)
		for j := range v {
			v[j] = []float32{math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, 0, 1.5}[j%5]
		}
		if got := firstNonFinite(v); got != -1 {
			t.Fatalf("n=%d finite: got %d", n, got)
		}
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
			for _, at := range []int{0, n / 2, n - 1} {
				if at < 0 || at >= n {
					continue
				}
				w := slices.Clone(v)
				w[at] = bad
				if n > 2 && at != n-1 {
					w[n-1] = bad
				}
				if got := firstNonFinite(w); got != at {
					t.Fatalf("n=%d %v at %d: got %d", n, bad, at, got)
				}
				w64 := make([]float64, n)
				for j := range w {
					w64[j] = float64(w[j])
				}
				if got := firstNonFinite(w64); got != at {
					t.Fatalf("float64 n=%d %v at %d: got %d", n, bad, at, got)
				}
			}
		}
	}
}
