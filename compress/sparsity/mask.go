package sparsity

import (
	"fmt"
	"math"

	"github.com/onnxpost/onnxpost/internal/selection"
)

// pruneLowest marks in pruned (len(scores)) the k lowest scores with
// onnxpost's one selection routine: every score below the k-th smallest,
// then, among scores equal to it, those with the highest indices
// (internal/selection). Callers have checked the scores (checkScores), so
// the selection cannot fail.
func pruneLowest(pruned []bool, scores []float64, k int) {
	if err := selection.MarkLowest(pruned, scores, k); err != nil {
		panic(fmt.Sprintf("sparsity: unchecked scores: %v", err))
	}
}

// checkScores returns an error when a score is not finite.
func checkScores(scores []float64) error {
	for i, s := range scores {
		if math.IsNaN(s) || math.IsInf(s, 0) {
			return fmt.Errorf("sparsity: non-finite score at %d (NaN or Inf weights or activations)", i)
		}
	}
	return nil
}

// MaskNM returns the prune mask (true = set to zero) of the N:M pattern p
// for scores of a matrix of Shape sh: in every group of M weights along the
// reduction axis of a row, the M−N lowest scores are pruned (ties: higher
// column first). The reduction axis must be a multiple of M.
func MaskNM(scores []float64, sh Shape, p Pattern) ([]bool, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if len(scores) != sh.Len() {
		return nil, fmt.Errorf("sparsity: %d scores for a %dx%d matrix", len(scores), sh.Rows, sh.Cols)
	}
	if !sh.Fits(p.M) {
		return nil, fmt.Errorf("sparsity: reduction size %d is not a multiple of %d", sh.Reduction(), p.M)
	}
	if err := checkScores(scores); err != nil {
		return nil, err
	}
	pruned := make([]bool, len(scores))
	idx := make([]int, p.M)
	drop := p.M - p.N
	for r := 0; r < sh.Rows; r++ {
		row := scores[r*sh.Cols : (r+1)*sh.Cols]
		prow := pruned[r*sh.Cols : (r+1)*sh.Cols]
		for s := 0; s < sh.Stride; s++ {
			for c0 := 0; c0 < sh.Reduction(); c0 += p.M {
				for t := range idx {
					idx[t] = (c0+t)*sh.Stride + s
				}
				markGroup(prow, row, idx, drop)
			}
		}
	}
	return pruned, nil
}

// markGroup prunes the drop lowest-scored columns idx (ascending) of row:
// repeatedly the lowest score, the later column among equals.
func markGroup(prow []bool, row []float64, idx []int, drop int) {
	for d := 0; d < drop; d++ {
		best := -1
		for _, j := range idx {
			if prow[j] {
				continue
			}
			if best < 0 || row[j] <= row[best] {
				best = j
			}
		}
		prow[best] = true
	}
}

// MaskUnstructured returns the prune mask that prunes exactly
// PrunedCount(sparsity, len(scores)) of the lowest scores (ties: higher
// index first).
func MaskUnstructured(scores []float64, sparsity float64) ([]bool, error) {
	if !(sparsity >= 0 && sparsity < 1) {
		return nil, fmt.Errorf("sparsity: sparsity %v must be in [0, 1)", sparsity)
	}
	return MaskLowest(scores, PrunedCount(sparsity, len(scores)))
}

// MaskLowest returns the prune mask of exactly k of the lowest scores
// (0 ≤ k ≤ len(scores); ties: higher index first, see internal/selection).
// Non-finite scores are refused.
func MaskLowest(scores []float64, k int) ([]bool, error) {
	if k < 0 || k > len(scores) {
		return nil, fmt.Errorf("sparsity: %d of %d weights to prune", k, len(scores))
	}
	if err := checkScores(scores); err != nil {
		return nil, err
	}
	pruned := make([]bool, len(scores))
	pruneLowest(pruned, scores, k)
	return pruned, nil
}

// PruneMagnitude returns a copy of w with exactly zeros of its entries of
// smallest magnitude set to zero (ties: higher index first). It is the one
// magnitude pruner: PruneLayer's magnitude method and the search's
// magnitude levels (through PruneWeightMagnitude) both come down to it, so
// equal weights are pruned in the same order everywhere. NaN or ±Inf
// weights are refused.
func PruneMagnitude(w []float32, zeros int) ([]float32, error) {
	mask, err := MaskLowest(MagnitudeScores(w), zeros)
	if err != nil {
		return nil, err
	}
	return Apply(w, mask), nil
}

// MaskRows returns the prune mask that selects within each row (Wanda's
// per-output comparison): row r prunes floor(S·(r+1)·Cols) − floor(S·r·Cols)
// of its lowest scores, so the matrix total is exactly floor(S·Rows·Cols).
func MaskRows(scores []float64, sh Shape, sparsity float64) ([]bool, error) {
	if !(sparsity >= 0 && sparsity < 1) {
		return nil, fmt.Errorf("sparsity: sparsity %v must be in [0, 1)", sparsity)
	}
	if len(scores) != sh.Len() {
		return nil, fmt.Errorf("sparsity: %d scores for a %dx%d matrix", len(scores), sh.Rows, sh.Cols)
	}
	if err := checkScores(scores); err != nil {
		return nil, err
	}
	sizes := make([]int, sh.Rows)
	for i := range sizes {
		sizes[i] = sh.Cols
	}
	counts := splitCounts(sparsity, sizes)
	pruned := make([]bool, len(scores))
	for r := 0; r < sh.Rows; r++ {
		pruneLowest(pruned[r*sh.Cols:(r+1)*sh.Cols], scores[r*sh.Cols:(r+1)*sh.Cols], counts[r])
	}
	return pruned, nil
}

// MaskGlobal returns the prune masks of several layers under one threshold:
// exactly PrunedCount(sparsity, total) of the lowest scores over all layers
// (ties: later layer, then higher index, first).
func MaskGlobal(scores [][]float64, sparsity float64) ([][]bool, error) {
	n := 0
	for _, s := range scores {
		n += len(s)
	}
	all := make([]float64, 0, n)
	for _, s := range scores {
		all = append(all, s...)
	}
	flat, err := MaskUnstructured(all, sparsity)
	if err != nil {
		return nil, err
	}
	out := make([][]bool, len(scores))
	off := 0
	for i, s := range scores {
		out[i] = flat[off : off+len(s) : off+len(s)]
		off += len(s)
	}
	return out, nil
}

// Apply returns a copy of w with the pruned entries set to zero.
func Apply(w []float32, pruned []bool) []float32 {
	out := make([]float32, len(w))
	for i, v := range w {
		if !pruned[i] {
			out[i] = v
		}
	}
	return out
}

// MagnitudeScores returns |w| as scores.
func MagnitudeScores(w []float32) []float64 {
	s := make([]float64, len(w))
	for i, v := range w {
		s[i] = math.Abs(float64(v))
	}
	return s
}

// WandaScores returns |W_ij|·‖X_j‖₂ for a matrix of Shape sh, where
// ‖X_j‖₂² is diag[j]/n: the diagonal of XᵀX over n calibration rows (the
// mean squared norm, as Wanda's scaler_row, so scores of layers compare).
func WandaScores(w []float32, sh Shape, diag []float64, n int64) ([]float64, error) {
	if len(w) != sh.Len() {
		return nil, fmt.Errorf("sparsity: %d weights for a %dx%d matrix", len(w), sh.Rows, sh.Cols)
	}
	if len(diag) != sh.Cols {
		return nil, fmt.Errorf("sparsity: %d activation norms for %d reduction entries", len(diag), sh.Cols)
	}
	if n <= 0 {
		return nil, fmt.Errorf("sparsity: no calibration samples")
	}
	norm := make([]float64, len(diag))
	for j, d := range diag {
		if d < 0 || math.IsNaN(d) || math.IsInf(d, 0) {
			return nil, fmt.Errorf("sparsity: invalid XᵀX diagonal %v at %d", d, j)
		}
		norm[j] = math.Sqrt(d / float64(n))
	}
	s := make([]float64, len(w))
	for r := 0; r < sh.Rows; r++ {
		for j := 0; j < sh.Cols; j++ {
			s[r*sh.Cols+j] = math.Abs(float64(w[r*sh.Cols+j])) * norm[j]
		}
	}
	return s, nil
}
