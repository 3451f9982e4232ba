package merge

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/onnxpost/onnxpost/internal/selection"
	"github.com/onnxpost/onnxpost/onnxio"
)

// Global trim selection in one pass over the data (plus a small sample).
//
// The threshold of model i is the k-th largest a = |xᵢ − base| (float64)
// over every merged tensor. Let key(a) be the bits of float32(a): rounding
// to float32 is monotone, so a₁ ≤ a₂ implies key(a₁) ≤ key(a₂), and for any
// keys lo ≤ hi the values split into three groups: key > hi (all larger
// than any value of the middle group), lo ≤ key ≤ hi, and key < lo (all
// smaller). A sample (every sampleStride-th block of sampleBlock elements,
// counted over the concatenation of the tensors in plan order, so every
// tensor is sampled in proportion to its size) gives a bracket [lo, hi]
// that very likely holds the k-th largest key. One pass then counts the
// values with key > hi and collects the exact float64 values with
// lo ≤ key ≤ hi. If count < k ≤ count + collected, the threshold is the
// (k − count)-th largest collected value, exactly what a full sort would
// give; otherwise (a bad sample, or more than collectCap values in the
// bracket) the radix passes of Selector run as before. Either way the
// threshold is exact and does not depend on the sample, the workers or the
// order of the tensors.

const (
	sampleBlock   = 256
	bracketSigmas = 16 // half-width of the global bracket, in binomial standard deviations of the sample rank
	tensorSigmas  = 8  // the same for a per-tensor bracket (a miss costs one tensor's radix selection)
	bracketSlack  = 64 // plus this many sample ranks
)

// testBracketMiss, when set by a test, is called with the number of models
// whose bracket missed.
var testBracketMiss func(models int)

// Variables so that tests can force the bracketing path and its fallback.
var (
	sampleBlocks int64 = 1 << 14 // blocks per model at most (≈ 4 M values)
	collectCap         = 1 << 22 // values collected per model at most (32 MB)
)

// trimKey returns the order-preserving float32 key of a ≥ 0 (NaN sorts
// above +Inf, as in Selector).
func trimKey(a float64) uint32 { return math.Float32bits(float32(a)) &^ (1 << 31) }

// absDelta returns |x − b| in float64; equal values give 0 even when
// infinite (a −Inf mask in both), where the subtraction would give NaN.
func absDelta[T Float](x, b T) float64 {
	d := math.Abs(float64(x) - float64(b))
	if d != d && x == b {
		d = 0
	}
	return d
}

// sampleRanges calls fn with the sampled [lo, hi) ranges of a tensor of n
// elements whose first element has index off in the concatenation.
func sampleRanges(off, n, stride int64, fn func(lo, hi int)) {
	q := off / sampleBlock
	if r := q % stride; r != 0 {
		q += stride - r
	}
	for ; q*sampleBlock < off+n; q += stride {
		lo := max(q*sampleBlock, off) - off
		hi := min(q*sampleBlock+sampleBlock, off+n) - off
		if hi > lo {
			fn(int(lo), int(hi))
		}
	}
}

// bracket is one model's sample-derived key range and the pass's findings.
type bracket struct {
	lo, hi   uint32
	above    atomic.Int64 // values with key > hi
	mu       sync.Mutex
	vals     []uint64 // float64 bits of the values with lo ≤ key ≤ hi
	overflow bool     // more than collectCap values in the bracket
}

// globalThresholds finds, for each model, the k-th largest |τ| over all its
// merged tensors with k = TrimCount(density, total): a sample and one
// bracketing pass (see above), with the radix selection passes as the
// fallback for models whose bracket missed.
func (m *Merger) globalThresholds(ctx context.Context, progress Progress) error {
	nm := len(m.in.Models)
	offs := make([]int64, len(m.plan))
	var total int64
	for i, p := range m.plan {
		offs[i] = total
		n, _ := onnxio.NumElements(p.Shape)
		total += n
	}
	stride := max(1, total/(sampleBlock*sampleBlocks))
	// 1. sample the keys
	samples := make([][]uint32, nm)
	var mu sync.Mutex
	index := func(p *TensorPlan) int { return m.index[p.Out] }
	err := m.forEach(ctx, func(p *TensorPlan) error {
		base, xs, err := m.groupPages(p, nil, false) // reads 1 block in sampleStride
		defer m.releaseGroup(base, xs)
		if err != nil {
			return err
		}
		local := make([][]uint32, nm)
		err = eachDelta(base, xs, func(i int, b, x any) {
			switch b := b.(type) {
			case []float32:
				local[i] = sampleKeys(local[i], b, x.([]float32), offs[index(p)], stride)
			case []float64:
				local[i] = sampleKeys(local[i], b, x.([]float64), offs[index(p)], stride)
			}
		})
		if err != nil {
			return fmt.Errorf("tensor %q: %w", p.Out, err)
		}
		mu.Lock()
		for i := range local {
			samples[i] = append(samples[i], local[i]...)
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	// 2. brackets
	brs := make([]*bracket, nm)
	for i := range brs {
		brs[i] = newBracket(samples[i], TrimCount(m.opt.Densities[i], total), total, bracketSigmas)
		samples[i] = nil
	}
	// 3. one pass: count above, collect inside
	var seen atomic.Int64
	err = m.forEach(ctx, func(p *TensorPlan) error {
		base, xs, err := m.group(p, nil)
		defer m.releaseGroup(base, xs)
		if err != nil {
			return err
		}
		err = eachDelta(base, xs, func(i int, b, x any) {
			switch b := b.(type) {
			case []float32:
				bracketScan(brs[i], b, x.([]float32))
			case []float64:
				bracketScan(brs[i], b, x.([]float64))
			}
		})
		if err != nil {
			return fmt.Errorf("tensor %q: %w", p.Out, err)
		}
		if progress != nil {
			n, _ := onnxio.NumElements(p.Shape)
			progress("trim pass 1", seen.Add(n), total)
		}
		return nil
	})
	if err != nil {
		return err
	}
	m.thresholds = make([]float64, nm)
	var missed []int
	for i, br := range brs {
		k := TrimCount(m.opt.Densities[i], total)
		above := br.above.Load()
		if br.overflow || above >= k || k > above+int64(len(br.vals)) {
			missed = append(missed, i)
			continue
		}
		r := int(k - above) // rank among the collected, 1 = largest
		m.thresholds[i] = math.Float64frombits(selection.Value(br.vals, len(br.vals)-r))
		br.vals = nil
	}
	if len(missed) > 0 {
		if testBracketMiss != nil {
			testBracketMiss(len(missed))
		}
		return m.radixThresholds(ctx, progress, missed)
	}
	return nil
}

// eachDelta calls fn(i, base, x) with the element slices ([]float32 or
// []float64, widening other float types to float32) of the base and of
// each model i.
func eachDelta(base *onnxio.Tensor, xs []*onnxio.Tensor, fn func(i int, b, x any)) error {
	if base.DType == onnxio.Double {
		b, err := view64(base)
		if err != nil {
			return err
		}
		for i, x := range xs {
			v, err := view64(x)
			if err != nil {
				return err
			}
			fn(i, b, v)
		}
		return nil
	}
	b, err := view32(base)
	if err != nil {
		return err
	}
	for i, x := range xs {
		v, err := view32(x)
		if err != nil {
			return err
		}
		fn(i, b, v)
	}
	return nil
}

// sampleKeys appends the keys of the sampled elements of one tensor.
func sampleKeys[T Float](dst []uint32, base, x []T, off, stride int64) []uint32 {
	sampleRanges(off, int64(len(base)), stride, func(lo, hi int) {
		bb, xx := base[lo:hi], x[lo:hi]
		xx = xx[:len(bb)]
		for j, b := range bb {
			dst = append(dst, trimKey(absDelta(xx[j], b)))
		}
	})
	return dst
}

// newBracket derives the key range [lo, hi] likely to hold the k-th largest
// of n values from a sample of their keys (reordered), sigmas binomial
// standard deviations of the sample rank (plus bracketSlack) to each side.
func newBracket(sample []uint32, k, n int64, sigmas float64) *bracket {
	br := &bracket{lo: 0, hi: math.MaxUint32}
	s := int64(len(sample))
	if s == 0 {
		return br
	}
	kk := float64(k) * float64(s) / float64(n) // expected rank in the sample, 1 = largest
	p := kk / float64(s)
	d := sigmas*math.Sqrt(float64(s)*p*(1-p)) + bracketSlack
	if r := int64(math.Floor(kk - d)); r >= 1 {
		br.hi = selection.Value(sample, int(s-r))
	}
	if r := int64(math.Ceil(kk + d)); r <= s {
		br.lo = selection.Value(sample, int(s-r))
	}
	return br
}

// bracketScan counts the values of one tensor with key > hi and collects
// those with lo ≤ key ≤ hi.
func bracketScan[T Float](br *bracket, base, x []T) {
	br.add(bracketCollect(br, base, x, nil))
}

// bracketCollect returns the number of values |x − base| with key > br.hi
// and local with the float64 bits of those with br.lo ≤ key ≤ br.hi
// appended (in order); br itself is not changed.
func bracketCollect[T Float](br *bracket, base, x []T, local []uint64) (int64, []uint64) {
	if haveAVX2 {
		if b32, ok := any(base).([]float32); ok {
			return bracketCollectF32(br, b32, any(x).([]float32), local)
		}
	}
	return bracketCollectGo(br, base, x, local)
}

// bracketScanGo is bracketScan's pure-Go loop.
func bracketScanGo[T Float](br *bracket, base, x []T) {
	br.add(bracketCollectGo(br, base, x, nil))
}

// bracketCollectGo is bracketCollect's pure-Go loop.
func bracketCollectGo[T Float](br *bracket, base, x []T, local []uint64) (int64, []uint64) {
	x = x[:len(base)]
	lo, span, hi := br.lo, br.hi-br.lo, uint64(br.hi)
	var above int64
	for j, b := range base {
		a := absDelta(x[j], b)
		key := trimKey(a)
		above += int64((hi - uint64(key)) >> 63) // 1 when key > hi
		if key-lo <= span {
			local = append(local, math.Float64bits(a))
		}
	}
	return above, local
}

// scanBlock is how many elements of a tensor bracketScanAll scans for
// every model before it moves on, so that the base's block is read from
// memory once and from the cache for the other models.
const scanBlock = 1 << 14

// bracketScanAll is bracketScan of every model i (brs[i], xs[i]) over one
// tensor, block by block.
func bracketScanAll[T Float](brs []*bracket, base []T, xs [][]T) {
	n := len(base)
	above := make([]int64, len(brs))
	local := make([][]uint64, len(brs))
	for lo := 0; lo < n; lo += scanBlock {
		hi := min(lo+scanBlock, n)
		for i, br := range brs {
			var a int64
			a, local[i] = bracketCollect(br, base[lo:hi], xs[i][lo:hi], local[i])
			above[i] += a
		}
	}
	for i, br := range brs {
		br.add(above[i], local[i])
	}
}

// add records one scan's count above the bracket and its collected values.
func (br *bracket) add(above int64, local []uint64) {
	br.above.Add(above)
	if len(local) == 0 {
		return
	}
	br.mu.Lock()
	defer br.mu.Unlock()
	if br.overflow {
		return
	}
	if len(br.vals)+len(local) > collectCap {
		br.overflow, br.vals = true, nil
		return
	}
	br.vals = append(br.vals, local...)
}
