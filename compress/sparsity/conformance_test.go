package sparsity

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/onnxpost/onnxpost/internal/selection/selectiontest"
)

// The masks and the magnitude pruner pass the shared pruner suite: one
// selection routine, ties pruned at the higher index first (the order of
// testdata/oracle.py).

func TestMaskLowestConforms(t *testing.T) {
	selectiontest.RunSelector(t, MaskLowest)
}

func TestPruneMagnitudeConforms(t *testing.T) {
	selectiontest.RunPruner(t, PruneMagnitude)
}

// TestPruneLayerMagnitudeConforms runs sparsify's own path (PruneLayer,
// magnitude, per-layer unstructured) through the suite.
func TestPruneLayerMagnitudeConforms(t *testing.T) {
	selectiontest.RunPruner(t, func(w []float32, zeros int) ([]float32, error) {
		if zeros < 0 || zeros > len(w) {
			return PruneMagnitude(w, zeros) // the refusal under test
		}
		if zeros == len(w) { // PruneLayer takes a sparsity < 1
			return make([]float32, len(w)), checkScores(MagnitudeScores(w))
		}
		s := float64(zeros) / float64(len(w))
		for PrunedCount(s, len(w)) < zeros {
			s = math.Nextafter(s, 1)
		}
		out, _, err := PruneLayer(context.Background(), Layer{Name: "w", Layout: LayoutNK, Dims: []int64{1, int64(len(w))}, Data: w},
			Options{Method: Magnitude, Sparsity: s}, nil)
		return out, err
	})
}

func TestMaskNMConforms(t *testing.T) {
	selectiontest.RunNM(t, func(w []float32, rows, cols, n, m int) ([]float32, error) {
		mask, err := MaskNM(MagnitudeScores(w), Shape{Rows: rows, Cols: cols, Stride: 1}, Pattern{N: n, M: m})
		if err != nil {
			return nil, err
		}
		return Apply(w, mask), nil
	})
}

func TestPruneLayerNMConforms(t *testing.T) {
	selectiontest.RunNM(t, func(w []float32, rows, cols, n, m int) ([]float32, error) {
		out, rep, err := PruneLayer(context.Background(), Layer{Name: "w", Layout: LayoutNK, Dims: []int64{int64(rows), int64(cols)}, Data: w},
			Options{Method: Magnitude, Pattern: Pattern{N: n, M: m}}, nil)
		if err == nil && out == nil {
			err = fmt.Errorf("skipped: %s", rep.Skipped)
		}
		return out, err
	})
}
