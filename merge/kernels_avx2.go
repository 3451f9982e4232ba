package merge

import "math"

// The float32 kernels' AVX2 paths (kernels_amd64.s, used when haveAVX2):
// the same block structure and the same arithmetic in the same order as
// the pure-Go loops, so the results are bit for bit theirs.

// tiesBlockedF32 is tiesBlocked for float32 slices through the AVX2 loops
// (lengths checked by the caller); a tail of fewer than 4 elements goes
// through the Go loops (elements are independent).
func tiesBlockedF32(dst, base []float32, xs [][]float32, weights, thresholds []float64, lambda float64) {
	n4 := len(dst) &^ 3
	base = base[:len(dst)]
	var bufs blockBufs
	tau := bufs.rows(len(xs))
	var s, num, den [kernelBlock]float64
	for lo := 0; lo < n4; lo += kernelBlock {
		hi := min(lo+kernelBlock, n4)
		n := hi - lo
		clear(s[:n])
		for i, x := range xs {
			x = x[:len(dst)]
			tiesTrimF32(&tau[i][0], &s[0], &x[lo], &base[lo], n, thresholds[i])
		}
		electFinalF32(dst[lo:hi], base[lo:hi], tau, s[:n], num[:n], den[:n], weights, lambda)
	}
	if n4 < len(dst) {
		tiesBlockedGo(dst[n4:], base[n4:], tails(xs, n4, len(dst)), weights, thresholds, lambda)
	}
}

// electFinalF32 ends a TIES block of n = len(dst) elements (a multiple of
// 4) through the AVX2 loops: the disjoint-mean terms of every model (tau,
// s) summed into num and den (cleared first), then dst = b + λ·num/den.
func electFinalF32(dst, base []float32, tau [][kernelBlock]uint64, s, num, den, weights []float64, lambda float64) {
	n := len(dst)
	clear(num[:n])
	clear(den[:n])
	for i := range tau {
		electMeanF64(&num[0], &den[0], &tau[i][0], &s[0], n, weights[i])
	}
	tiesFinalF32(&dst[0], &base[0], &num[0], &den[0], n, lambda)
}

// tails returns xs[i][lo:hi] for every model i.
func tails(xs [][]float32, lo, hi int) [][]float32 {
	t := make([][]float32, len(xs))
	for i, x := range xs {
		t[i] = x[lo:hi]
	}
	return t
}

// bracketChunk is how many elements bracketScanF32 hands to the AVX2 loop
// at a time (its index buffer lives on the stack).
const bracketChunk = 4096

// bracketScanF32 is bracketScan for float32 slices through the AVX2 loop:
// it computes the same keys, counts the same values above the bracket and
// collects the same float64 values in the same order.
func bracketScanF32(br *bracket, base, x []float32) {
	br.add(bracketCollectF32(br, base, x, nil))
}

// bracketCollectF32 is bracketCollectGo for float32 slices through the
// AVX2 loop.
func bracketCollectF32(br *bracket, base, x []float32, local []uint64) (int64, []uint64) {
	x = x[:len(base)]
	const maxKey = math.MaxInt32 // keys have no sign bit
	lo, hi := min(br.lo, maxKey), min(br.hi, maxKey)
	var above int64
	var idx [bracketChunk]int32
	n8 := len(base) &^ 7
	for c := 0; c < n8; c += bracketChunk {
		n := min(bracketChunk, n8-c)
		a, k := bracketKeysF32(&x[c], &base[c], n, lo, hi, &idx[0])
		above += a
		for _, j := range idx[:k] {
			local = append(local, math.Float64bits(absDelta(x[c+int(j)], base[c+int(j)])))
		}
	}
	a, local := bracketCollectGo(br, base[n8:], x[n8:], local)
	return above + a, local
}

// keepBound returns c = ⌈d·2⁵³⌉, so that Uniform(key, j) < d exactly when
// mix(key + j·golden)>>11 < c: Uniform is k·2⁻⁵³ for the integer k =
// mix(…)>>11, and k·2⁻⁵³ < d ⟺ k < d·2⁵³ ⟺ k < ⌈d·2⁵³⌉ (d·2⁵³ is exact).
func keepBound(d float64) uint64 {
	return uint64(math.Ceil(d * (1 << 53)))
}

// dareBlockedF32 is dareBlocked for float32 slices through the AVX2 loops
// (lengths checked by the caller); a tail of fewer than 4 elements goes
// through the Go loops with the right offset (elements are independent).
func dareBlockedF32(dst, base []float32, xs [][]float32, p DAREParams) {
	n4 := len(dst) &^ 3
	base = base[:len(dst)]
	var bufs blockBufs
	tau := bufs.rows(len(xs))
	var s, num, den, ones [kernelBlock]float64
	for j := range ones {
		ones[j] = 1
	}
	bounds := make([]uint64, len(xs))
	for i, d := range p.Densities {
		bounds[i] = keepBound(d)
	}
	for lo := 0; lo < n4; lo += kernelBlock {
		hi := min(lo+kernelBlock, n4)
		n := hi - lo
		clear(s[:n])
		for i, x := range xs {
			x = x[:len(dst)]
			var ctr [4]uint64
			for l := range ctr {
				ctr[l] = p.Keys[i] + uint64(p.Offset+int64(lo+l))*golden
			}
			w := p.Weights[i]
			if p.TIES {
				w = 1 // s += τ: 1·τ is τ, bit for bit
			}
			dareTauF32(&tau[i][0], &s[0], &x[lo], &base[lo], n, &ctr, bounds[i], p.Densities[i], w)
		}
		if !p.TIES {
			// dst = b + λ·s: s/1 is s, bit for bit
			tiesFinalF32(&dst[lo], &base[lo], &s[0], &ones[0], n, p.Lambda)
			continue
		}
		electFinalF32(dst[lo:hi], base[lo:hi], tau, s[:n], num[:n], den[:n], p.Weights, p.Lambda)
	}
	if n4 < len(dst) {
		q := p
		q.Offset += int64(n4)
		dareBlockedGo(dst[n4:], base[n4:], tails(xs, n4, len(dst)), q)
	}
}
