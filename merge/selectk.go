package merge

import (
	"fmt"
	"math"

	"github.com/onnxpost/onnxpost/internal/selection"
)

// TrimCount returns how many entries TIES keeps out of n at density d:
// ⌊d·n⌋, at least 1 (for n > 0) and at most n.
func TrimCount(d float64, n int64) int64 {
	if n <= 0 {
		return 0
	}
	k := int64(math.Floor(d * float64(n)))
	return min(max(k, 1), n)
}

// TopKThreshold returns the k-th largest of vals (1 ≤ k ≤ len(vals)): keeping
// the entries ≥ it keeps the top k, ties at the threshold included. vals is
// reordered. It panics when k is out of range.
func TopKThreshold(vals []float64, k int) float64 {
	if k < 1 || k > len(vals) {
		panic(fmt.Sprintf("merge: top-%d of %d values", k, len(vals)))
	}
	return selection.Value(vals, len(vals)-k)
}

// Selector finds the k-th largest of a multiset of non-negative float64
// values (e.g. |τ| over every merged tensor of a model) exactly, with
// constant memory, in a few passes over the data: a radix selection on the
// IEEE-754 bits, whose order equals the order of non-negative floats. Each
// pass histograms the next 16 bits of the values that share the prefix found
// so far (the first pass: sign, exponent and 4 mantissa bits); once the
// boundary bin holds at most CollectLimit values, the next pass collects
// them and selects in memory. At most four passes are needed.
//
// Use: for !s.Done() { p := s.NewPass(); feed every value to p.Add (or to
// several passes from several goroutines); s.EndPass(p...) }; s.Threshold().
type Selector struct {
	k       int64  // rank wanted among values with the current prefix (1 = largest)
	n       int64  // values seen in the first pass
	prefix  uint64 // bits found so far
	shift   uint   // the next pass reads bits [shift, shift+16)
	collect bool   // the next pass collects the candidates
	done    bool
	result  float64
	// CollectLimit is the boundary-bin size under which the next pass
	// collects values instead of histogramming them (default 1<<20).
	CollectLimit int64
}

// NewSelector returns a selector for the k-th largest value (k ≥ 1).
func NewSelector(k int64) *Selector {
	if k < 1 {
		panic(fmt.Sprintf("merge: selector for the %d-th largest value", k))
	}
	return &Selector{k: k, shift: 48, CollectLimit: 1 << 20}
}

// Pass accumulates one pass's values. A Pass is not safe for concurrent use;
// give each goroutine its own.
type Pass struct {
	prefix  uint64
	shift   uint
	collect bool
	counts  []int64
	vals    []float64
}

// NewPass starts a pass. It panics when the selection is done.
func (s *Selector) NewPass() *Pass {
	if s.done {
		panic("merge: Selector.NewPass after Done")
	}
	p := &Pass{prefix: s.prefix, shift: s.shift, collect: s.collect}
	if !s.collect {
		p.counts = make([]int64, 1<<16)
	}
	return p
}

// ResetPass readies p, a pass of an earlier tensor or round, for reuse in
// the current round (nil gives a new pass).
func (s *Selector) ResetPass(p *Pass) *Pass {
	if p == nil || p.collect != s.collect {
		return s.NewPass()
	}
	p.prefix, p.shift = s.prefix, s.shift
	clear(p.counts)
	p.vals = p.vals[:0]
	return p
}

// Add observes one value (non-negative; NaN counts as larger than +Inf).
func (p *Pass) Add(v float64) {
	u := math.Float64bits(v) &^ (1 << 63)
	if p.shift < 48 && u>>(p.shift+16) != p.prefix>>(p.shift+16) {
		return
	}
	if p.collect {
		p.vals = append(p.vals, v)
		return
	}
	p.counts[(u>>p.shift)&0xFFFF]++
}

// AddSlice observes vals.
func (p *Pass) AddSlice(vals []float64) {
	for _, v := range vals {
		p.Add(v)
	}
}

// Merge adds the values observed by q (a pass of the same round) to p, so
// that per-tensor or per-worker passes can be folded into one as they
// finish, keeping memory constant.
func (p *Pass) Merge(q *Pass) {
	if p.prefix != q.prefix || p.shift != q.shift || p.collect != q.collect {
		panic("merge: Pass.Merge of passes from different rounds")
	}
	if p.collect {
		p.vals = append(p.vals, q.vals...)
		return
	}
	for i, c := range q.counts {
		p.counts[i] += c
	}
}

// EndPass combines the passes fed with this round's values. It returns an
// error when the values counted are fewer than k (the data changed between
// passes or k exceeds the number of values).
func (s *Selector) EndPass(passes ...*Pass) error {
	if s.collect {
		var vals []float64
		for _, p := range passes {
			vals = append(vals, p.vals...)
		}
		if int64(len(vals)) < s.k {
			return fmt.Errorf("merge: selection lost track: %d candidates for rank %d", len(vals), s.k)
		}
		s.result = TopKThreshold(vals, int(s.k))
		s.done = true
		return nil
	}
	counts := make([]int64, 1<<16)
	for _, p := range passes {
		for i, c := range p.counts {
			counts[i] += c
		}
	}
	if s.shift == 48 {
		for _, c := range counts {
			s.n += c
		}
	}
	above := int64(0)
	for b := len(counts) - 1; b >= 0; b-- {
		if above+counts[b] >= s.k {
			s.prefix |= uint64(b) << s.shift
			s.k -= above
			if s.shift == 0 {
				s.result = math.Float64frombits(s.prefix)
				s.done = true
				return nil
			}
			s.collect = counts[b] <= s.CollectLimit
			s.shift -= 16
			return nil
		}
		above += counts[b]
	}
	return fmt.Errorf("merge: selection lost track: %d values for rank %d", above, s.k)
}

// Done reports whether the threshold is known.
func (s *Selector) Done() bool { return s.done }

// Threshold returns the k-th largest value; valid once Done.
func (s *Selector) Threshold() float64 { return s.result }
