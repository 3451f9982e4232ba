package selection_test

import (
	"errors"
	"math"
	"math/rand"
	"slices"
	"testing"

	"github.com/onnxpost/onnxpost/internal/selection"
	"github.com/onnxpost/onnxpost/internal/selection/selectiontest"
)

func TestLowestConforms(t *testing.T) {
	selectiontest.RunSelector(t, selection.Lowest)
}

func TestLowestNaNIsErrNaN(t *testing.T) {
	mark := make([]bool, 3)
	err := selection.MarkLowest(mark, []float64{1, math.NaN(), 0}, 1)
	if !errors.Is(err, selection.ErrNaN) {
		t.Fatalf("err = %v, want ErrNaN", err)
	}
	if slices.Contains(mark, true) {
		t.Errorf("marked %v on error", mark)
	}
}

// TestValueIsOrderStatistic checks quickselect against a sort, with ties,
// for every rank.
func TestValueIsOrderStatistic(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	for trial := 0; trial < 100; trial++ {
		a := make([]float64, 1+r.Intn(60))
		for i := range a {
			a[i] = float64(r.Intn(8)) - 3
		}
		sorted := slices.Sorted(slices.Values(a))
		for rank := range a {
			if got := selection.Value(slices.Clone(a), rank); got != sorted[rank] {
				t.Fatalf("rank %d of %v: %v, want %v", rank, a, got, sorted[rank])
			}
		}
	}
}

func TestValueRankOutOfRangePanics(t *testing.T) {
	for _, r := range []int{-1, 3} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("rank %d of 3: no panic", r)
				}
			}()
			selection.Value([]float64{1, 2, 3}, r)
		}()
	}
}
