// Package selection holds onnxpost's one order-statistics routine: the value
// of a given rank of a slice (quickselect) and the set of the k lowest
// scores under one documented tie-break. Every pruner (sparsity's masks,
// the search's magnitude levels) and every threshold (merge's TIES trim)
// selects through it, so that two callers never disagree on which of two
// equal scores goes first.
//
// Tie-break: the order is score ascending, then index descending — among
// equal scores the higher index is selected (pruned) first. The sets
// Lowest(k) are therefore nested in k, and equal to the first k entries of a
// sort by (score, −index), which is how the tests' independent numpy oracle
// (compress/sparsity/testdata/oracle.py) states it.
//
// NaN policy: a NaN has no rank. Value's result is unspecified when a holds
// NaN (it still terminates); MarkLowest refuses scores holding NaN with
// ErrNaN. ±Inf order as usual.
package selection

import (
	"cmp"
	"errors"
	"fmt"
	"math"
)

// ErrNaN reports a NaN among the scores to select from.
var ErrNaN = errors.New("selection: NaN score")

// Value returns the value of rank r (0-based, ascending) of a, reordering a
// (any ordered type: merge selects on float32 key bits as well as floats).
// It is a quickselect (Hoare partition, median-of-three pivots), linear in
// len(a) on average and deterministic: the result is the exact r-th order
// statistic, whatever the input order. It panics when r is out of range.
func Value[T cmp.Ordered](a []T, r int) T {
	if r < 0 || r >= len(a) {
		panic(fmt.Sprintf("selection: rank %d of %d values", r, len(a)))
	}
	lo, hi := 0, len(a)-1
	for lo < hi {
		mid := lo + (hi-lo)/2
		// median of three into a[mid]
		if a[mid] < a[lo] {
			a[mid], a[lo] = a[lo], a[mid]
		}
		if a[hi] < a[lo] {
			a[hi], a[lo] = a[lo], a[hi]
		}
		if a[hi] < a[mid] {
			a[hi], a[mid] = a[mid], a[hi]
		}
		p := a[mid]
		i, j := lo, hi
		for i <= j {
			for a[i] < p {
				i++
			}
			for a[j] > p {
				j--
			}
			if i <= j {
				a[i], a[j] = a[j], a[i]
				i++
				j--
			}
		}
		switch {
		case r <= j:
			hi = j
		case r >= i:
			lo = i
		default:
			return a[r]
		}
	}
	return a[r]
}

// MarkLowest sets mark[i] for the k lowest scores (len(mark) ==
// len(scores)): every score below the k-th smallest, then, among the scores
// equal to it, those with the highest indices (see the package doc). k ≤ 0
// marks nothing, k ≥ len(scores) marks all. Entries of mark outside the
// selection are left as they are. It refuses scores holding NaN (ErrNaN)
// and marks nothing then.
func MarkLowest(mark []bool, scores []float64, k int) error {
	if len(mark) != len(scores) {
		panic(fmt.Sprintf("selection: %d marks for %d scores", len(mark), len(scores)))
	}
	for i, s := range scores {
		if math.IsNaN(s) {
			return fmt.Errorf("%w at index %d", ErrNaN, i)
		}
	}
	if k <= 0 {
		return nil
	}
	if k >= len(scores) {
		for i := range mark {
			mark[i] = true
		}
		return nil
	}
	t := Value(append([]float64(nil), scores...), k-1)
	n := 0
	for i, s := range scores {
		if s < t {
			mark[i] = true
			n++
		}
	}
	for i := len(scores) - 1; i >= 0 && n < k; i-- {
		if scores[i] == t {
			mark[i] = true
			n++
		}
	}
	return nil
}

// Lowest returns the mark of the k lowest scores (see MarkLowest).
func Lowest(scores []float64, k int) ([]bool, error) {
	mark := make([]bool, len(scores))
	if err := MarkLowest(mark, scores, k); err != nil {
		return nil, err
	}
	return mark, nil
}
