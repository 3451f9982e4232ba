package merge

import "math"

// The slice kernels work in blocks of kernelBlock elements: each model's
// contribution to a block is computed by one tight loop over that model's
// slice into small float64 buffers (which stay in the L1 cache), instead of
// one loop over elements with an inner loop over models. The arithmetic and
// its order are the same as the element-wise definition, so the results
// are bit for bit those of the formulas in the kernels' doc comments, and
// every element of a block is read before any element of it is written
// (dst may still alias an input).
const kernelBlock = 256

// maxBlockModels is the number of models whose per-block buffers live on
// the stack; kernels over more models allocate them once per call.
const maxBlockModels = 8

// blockBufs holds per-model block buffers.
type blockBufs struct {
	stack [maxBlockModels][kernelBlock]uint64
	heap  [][kernelBlock]uint64
}

// rows returns m per-model block buffers.
func (b *blockBufs) rows(m int) [][kernelBlock]uint64 {
	if m <= maxBlockModels {
		return b.stack[:m]
	}
	if len(b.heap) < m {
		b.heap = make([][kernelBlock]uint64, m)
	}
	return b.heap[:m]
}

// signMask is the float64 sign bit.
const signMask = 1 << 63

// oneBits is the bit pattern of 1.0.
const oneBits = 0x3FF0000000000000

// tiesBlocked is TIESTo over whole slices (lengths checked by the caller).
func tiesBlocked[T Float](dst, base []T, xs [][]T, weights, thresholds []float64, lambda float64) {
	if haveAVX2 {
		if d32, ok := any(dst).([]float32); ok {
			tiesBlockedF32(d32, any(base).([]float32), any(xs).([][]float32), weights, thresholds, lambda)
			return
		}
	}
	tiesBlockedGo(dst, base, xs, weights, thresholds, lambda)
}

// tiesBlockedGo is tiesBlocked's pure-Go loops.
func tiesBlockedGo[T Float](dst, base []T, xs [][]T, weights, thresholds []float64, lambda float64) {
	var bufs blockBufs
	tau := bufs.rows(len(xs))
	var s, num, den [kernelBlock]float64
	for lo := 0; lo < len(dst); lo += kernelBlock {
		hi := min(lo+kernelBlock, len(dst))
		n := hi - lo
		bb := base[lo:hi]
		clear(s[:n])
		// trim: τᵢ where |τᵢ| ≥ thresholdᵢ, else +0; s = Σ trimmed τᵢ
		for i, x := range xs {
			xx := x[lo:hi]
			xx = xx[:len(bb)]
			ti := tau[i][:]
			ti = ti[:len(bb)]
			ss := s[:]
			ss = ss[:len(bb)]
			thr := thresholds[i]
			for j, b := range bb {
				t := float64(xx[j]) - float64(b)
				drop := uint64(int64(math.Float64bits(math.Abs(t)-thr)) >> 63)
				tb := math.Float64bits(t) &^ drop
				ti[j] = tb
				ss[j] += math.Float64frombits(tb)
			}
		}
		// elect γ = sign(s) (+0 for a zero sum) and take the disjoint mean
		electFinal(dst[lo:hi], bb, tau, weights, s[:n], num[:n], den[:n], lambda)
	}
}

// dareBlocked is DARETo over whole slices (lengths checked by the caller).
func dareBlocked[T Float](dst, base []T, xs [][]T, p DAREParams) {
	if haveAVX2 {
		if d32, ok := any(dst).([]float32); ok {
			dareBlockedF32(d32, any(base).([]float32), any(xs).([][]float32), p)
			return
		}
	}
	dareBlockedGo(dst, base, xs, p)
}

// dareBlockedGo is dareBlocked's pure-Go loops.
func dareBlockedGo[T Float](dst, base []T, xs [][]T, p DAREParams) {
	var bufs blockBufs
	tau := bufs.rows(len(xs))
	var s, num, den [kernelBlock]float64
	for lo := 0; lo < len(dst); lo += kernelBlock {
		hi := min(lo+kernelBlock, len(dst))
		n := hi - lo
		bb := base[lo:hi]
		clear(s[:n])
		for i, x := range xs {
			xx := x[lo:hi]
			xx = xx[:len(bb)]
			ti := tau[i][:]
			ti = ti[:len(bb)]
			d := p.Densities[i]
			w := p.Weights[i]
			key := p.Keys[i]
			off := p.Offset + int64(lo)
			ss := s[:]
			ss = ss[:len(bb)]
			for j, b := range bb {
				t := (float64(xx[j]) - float64(b)) / d
				// dropped entries become +0 without a branch
				keep := uint64(0)
				if Uniform(key, off+int64(j)) < d {
					keep = ^uint64(0)
				}
				tb := math.Float64bits(t) & keep
				ti[j] = tb
				if p.TIES {
					ss[j] += math.Float64frombits(tb)
				} else {
					ss[j] += w * math.Float64frombits(tb)
				}
			}
		}
		dd := dst[lo:hi]
		dd = dd[:len(bb)]
		if !p.TIES {
			ss := s[:]
			ss = ss[:len(bb)]
			for j, b := range bb {
				dd[j] = T(float64(b) + p.Lambda*ss[j])
			}
			continue
		}
		electFinal(dd, bb, tau, p.Weights, s[:n], num[:n], den[:n], p.Lambda)
	}
}

// electFinal ends a TIES block (the Go loops' twin of electFinalF32): the
// disjoint-mean terms of every model summed into num and den (electMean),
// then dd[j] = b[j] + λ·num[j]/den[j], or b[j] where den[j] is 0.
func electFinal[T Float](dd, bb []T, tau [][kernelBlock]uint64, weights, s, num, den []float64, lambda float64) {
	electMean(tau, weights, s, num, den)
	dd = dd[:len(bb)]
	nn, de := num[:len(bb)], den[:len(bb)]
	for j, b := range bb {
		mean := 0.0
		if d := de[j]; d != 0 {
			mean = nn[j] / d
		}
		dd[j] = T(float64(b) + lambda*mean)
	}
}

// linearBlocked sets dst[j] = Σ coef[i]·xs[i][j] accumulated in float64 in
// model order (lengths checked by the caller).
func linearBlocked[T Float](dst []T, xs [][]T, coef []float64) {
	var acc [kernelBlock]float64
	for lo := 0; lo < len(dst); lo += kernelBlock {
		hi := min(lo+kernelBlock, len(dst))
		a := acc[:hi-lo]
		clear(a)
		for i, x := range xs {
			xx := x[lo:hi]
			xx = xx[:len(a)]
			c := coef[i]
			for j, v := range xx {
				a[j] += c * float64(v)
			}
		}
		dd := dst[lo:hi]
		dd = dd[:len(a)]
		for j, v := range a {
			dd[j] = T(v)
		}
	}
}

// taskArithmeticBlocked sets dst = base + λ Σ wᵢ (xᵢ − base) (lengths
// checked by the caller).
func taskArithmeticBlocked[T Float](dst, base []T, xs [][]T, weights []float64, lambda float64) {
	var acc [kernelBlock]float64
	for lo := 0; lo < len(dst); lo += kernelBlock {
		hi := min(lo+kernelBlock, len(dst))
		bb := base[lo:hi]
		a := acc[:len(bb)]
		clear(a)
		for i, x := range xs {
			xx := x[lo:hi]
			xx = xx[:len(bb)]
			w := weights[i]
			for j, b := range bb {
				a[j] += w * (float64(xx[j]) - float64(b))
			}
		}
		dd := dst[lo:hi]
		dd = dd[:len(bb)]
		for j, b := range bb {
			dd[j] = T(float64(b) + lambda*a[j])
		}
	}
}

// electMean adds, for each element j of a block, the disjoint-mean terms of
// every model to num and den: wᵢτᵢ and wᵢ when τᵢ (float64 bits) is
// nonzero with the sign of s[j] (+ for a zero sum). It has no
// data-dependent branches: the signs of merged deltas are close to random,
// and mispredicted branches would dominate the cost.
func electMean(tau [][kernelBlock]uint64, weights []float64, s, num, den []float64) {
	n := len(s)
	num = num[:n]
	den = den[:n]
	clear(num)
	clear(den)
	for i := range tau {
		ti := tau[i][:]
		ti = ti[:n]
		wb := math.Float64bits(weights[i])
		for j, tb := range ti {
			sb := math.Float64bits(s[j] + 0) // −0 becomes +0
			same := ^(tb ^ sb) >> 63         // 1 when τᵢ has γ's sign bit
			x := tb << 1
			nonzero := (x | -x) >> 63 // 1 when τᵢ ≠ ±0
			a := math.Float64frombits(wb & -(same & nonzero))
			num[j] += a * math.Float64frombits(tb)
			den[j] += a
		}
	}
}
