package quant

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"

	"github.com/onnxpost/onnxpost/internal/linalg"
)

// GPTQOptions configures GPTQ.
type GPTQOptions struct {
	// Block chooses bits, block (group) size and symmetry; its Rule
	// defaults to RuleGPTQ.
	Block BlockOptions
	// Damp is the fraction of the mean diagonal of H added to its diagonal
	// (default 0.01, the reference's percdamp).
	Damp float64
	// ActOrder processes columns in order of decreasing diag(H). Block
	// parameters are then computed up front on the original weights
	// (the reference's static_groups), so that blocks stay contiguous in K
	// as MatMulNBits requires.
	ActOrder bool
	// LazyBlock is the number of columns updated together before the
	// remaining columns receive the accumulated error (default 128).
	LazyBlock int
}

// GPTQInfo reports how a GPTQ run went.
type GPTQInfo struct {
	// Damp is the damping fraction finally used (raised ×10 per retry
	// when H + damp·I was not positive definite).
	Damp float64
	// DeadColumns counts inputs whose diag(H) was 0 (their weights are
	// set to 0, as in the reference).
	DeadColumns int
	// Loss is the reference's proxy loss Σ (w − q)²/(2·[H⁻¹]ᵢᵢ) over all
	// weights.
	Loss float64
}

// GPTQ quantizes the MatMul weight w [K, N] (row-major) block-wise along K
// with the GPTQ algorithm (Frantar et al. 2023), given H = XᵀX [K, K]
// (row-major, from calibration). It follows the reference implementation:
// dead inputs zeroed, damping Damp·mean(diag H), upper Cholesky factor of
// H⁻¹, columns quantized one by one with the error propagated to the
// not-yet-quantized columns inside a lazy block and to the rest after it,
// block parameters computed when a block starts (or up front with
// ActOrder). It panics with ErrShape when len(w) != k·n or
// len(xtx) != k·k. It stops with ctx's error, checked before each lazy
// block, when ctx is cancelled.
func GPTQ(ctx context.Context, w []float32, k, n int, xtx []float64, opt GPTQOptions) (*Blockwise, GPTQInfo, error) {
	return gptq(ctx, w, k, n, xtx, false, gptqChunkRows(k), opt)
}

// gptqChunkBytes bounds GPTQ's float64 working copy of the weight: the
// output channels (rows of Wᵀ) are quantized in chunks of rows that fit,
// each through every column, since rows are independent given H⁻¹.
const gptqChunkBytes = 64 << 20

// gptqChunkRows is the number of rows of K float64s that fit in
// gptqChunkBytes (at least one).
func gptqChunkRows(k int) int { return max(1, gptqChunkBytes/(8*max(k, 1))) }

// gptq is GPTQ, rows (output channels) chunkRows at a time; with owned,
// xtx is the caller's to give: it becomes H and then the factor U in
// place instead of a copy (K² float64s). The results do not depend on
// chunkRows, bit for bit.
func gptq(ctx context.Context, w []float32, k, n int, xtx []float64, owned bool, chunkRows int, opt GPTQOptions) (*Blockwise, GPTQInfo, error) {
	if k < 0 || n < 0 || len(w) != k*n {
		panic(fmt.Errorf("%w: %d values for [%d, %d]", ErrShape, len(w), k, n))
	}
	if len(xtx) != k*k {
		panic(fmt.Errorf("%w: Gram has %d values, want %d×%d", ErrShape, len(xtx), k, k))
	}
	bo := opt.Block.withDefaults()
	if bo.Rule == RuleDefault {
		bo.Rule = RuleGPTQ
	}
	if err := bo.validate(); err != nil {
		return nil, GPTQInfo{}, err
	}
	if err := checkFinite(w); err != nil {
		return nil, GPTQInfo{}, err
	}
	for i, v := range xtx {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, GPTQInfo{}, fmt.Errorf("%w: Gram element %d is %v", ErrNonFinite, i, v)
		}
	}
	damp := opt.Damp
	if damp == 0 {
		damp = 0.01
	}
	if damp < 0 {
		return nil, GPTQInfo{}, fmt.Errorf("%w: negative damping %g", ErrOptions, damp)
	}
	lazy := opt.LazyBlock
	if lazy <= 0 {
		lazy = 128
	}
	chunkRows = max(1, min(chunkRows, n))
	info := GPTQInfo{}

	H := xtx
	if !owned {
		H = append([]float64(nil), xtx...)
	}
	var dead []int // inputs never seen: their weights are zeroed
	for i := 0; i < k; i++ {
		if H[i*k+i] == 0 {
			H[i*k+i] = 1
			dead = append(dead, i)
		}
	}
	info.DeadColumns = len(dead)
	perm := make([]int, k)
	for i := range perm {
		perm[i] = i
	}
	if opt.ActOrder {
		sort.SliceStable(perm, func(a, b int) bool { return H[perm[a]*k+perm[a]] > H[perm[b]*k+perm[b]] })
		H = permuteSym(H, k, perm)
	}
	U := H // the factor, in place
	ok := false
	for try := 0; try < 4 && !ok; try++ {
		if try > 0 {
			damp *= 10
		}
		ok = hinvUpper(U, k, damp)
	}
	if !ok {
		return nil, info, fmt.Errorf("%w: H + damping is not positive definite even with damping %g", ErrCalibration, damp)
	}
	info.Damp = damp

	out := newBlockwise(k, n, bo)
	loss := make([]float64, n) // per row, summed in row order at the end
	for c0 := 0; c0 < n; c0 += chunkRows {
		if err := gptqRows(ctx, w, k, n, c0, min(c0+chunkRows, n), U, perm, dead, lazy, bo, opt.ActOrder, out, loss); err != nil {
			return nil, info, err
		}
	}
	for _, l := range loss {
		info.Loss += l
	}
	return out, info, nil
}

// gptqRows quantizes rows c0..c1 of Wᵀ (output channels; W [K, N] is w)
// through every column, given U, the upper Cholesky factor of H⁻¹ in the
// column order perm, into out, and adds each row's proxy loss to loss.
// Its working set is (c1−c0)·K float64s plus a lazy block.
func gptqRows(ctx context.Context, w []float32, k, n, c0, c1 int, U []float64, perm, dead []int, lazy int, bo BlockOptions, actOrder bool, out *Blockwise, loss []float64) error {
	rows := c1 - c0
	gs := bo.BlockSize
	nb := (k + gs - 1) / gs
	// W is [rows][K] (rows = outputs, columns = inputs), as in the reference.
	W := make([]float64, rows*k)
	for kk := 0; kk < k; kk++ {
		for c := 0; c < rows; c++ {
			W[c*k+kk] = float64(w[kk*n+c0+c])
		}
	}
	for _, i := range dead {
		for c := 0; c < rows; c++ {
			W[c*k+i] = 0
		}
	}
	scales := make([]float64, rows) // current block's parameters, per row
	zeros := make([]int, rows)
	xs := make([]float64, gs)
	findParams := func(src []float64, cols []int, blk int) {
		for c := 0; c < rows; c++ {
			xs = xs[:0]
			for _, col := range cols {
				xs = append(xs, src[c*k+col])
			}
			s, z := blockParams(xs, bo.Bits, bo.Symmetric, bo.Rule)
			scales[c], zeros[c] = float64(float32(s)), z
			if blk >= 0 {
				out.Scales[(c0+c)*nb+blk], out.ZeroPoints[(c0+c)*nb+blk] = float32(s), uint8(z)
			}
		}
	}

	// Static groups (act-order): parameters of every block from the
	// original weights, before any update.
	var static [][]float64
	var staticZ [][]int
	if actOrder {
		static, staticZ = make([][]float64, nb), make([][]int, nb)
		for j := 0; j < nb; j++ {
			cols := make([]int, 0, gs)
			for col := j * gs; col < min((j+1)*gs, k); col++ {
				cols = append(cols, col)
			}
			findParams(W, cols, j)
			static[j] = append([]float64(nil), scales...)
			staticZ[j] = append([]int(nil), zeros...)
		}
		W = permuteCols(W, rows, k, perm)
	}

	maxq := float64(int(1)<<bo.Bits - 1)
	W1 := make([]float64, rows*min(lazy, k))
	Err1 := make([]float64, rows*min(lazy, k))
	for i1 := 0; i1 < k; i1 += lazy {
		if err := ctx.Err(); err != nil {
			return err
		}
		i2 := min(i1+lazy, k)
		cnt := i2 - i1
		W1, Err1 := W1[:rows*cnt], Err1[:rows*cnt]
		for c := 0; c < rows; c++ {
			copy(W1[c*cnt:(c+1)*cnt], W[c*k+i1:c*k+i2])
		}
		for i := 0; i < cnt; i++ {
			col := i1 + i
			orig := perm[col]
			if actOrder {
				j := orig / gs
				copy(scales, static[j])
				copy(zeros, staticZ[j])
			} else if col%gs == 0 {
				cols := make([]int, 0, gs)
				for cc := col; cc < min(col+gs, k); cc++ {
					cols = append(cols, cc)
				}
				findParams(W, cols, col/gs)
			}
			d := U[col*k+col]
			for c := 0; c < rows; c++ {
				x := W1[c*cnt+i]
				s, z := scales[c], zeros[c]
				var code, q float64
				if s == 0 {
					code, q = float64(z), 0
				} else {
					code = math.Max(0, math.Min(math.RoundToEven(x/s)+float64(z), maxq))
					q = s * (code - float64(z))
				}
				out.Codes[(c0+c)*k+orig] = uint8(code)
				e := (x - q) / d
				loss[c0+c] += (x - q) * (x - q) / (d * d) / 2
				row := W1[c*cnt : (c+1)*cnt]
				urow := U[col*k+i1 : col*k+i2]
				for jj := i; jj < cnt; jj++ {
					row[jj] -= e * urow[jj]
				}
				Err1[c*cnt+i] = e
			}
		}
		// W[:, i2:] -= Err1 · U[i1:i2, i2:] (the lazy batch update, the
		// O(N·K²) part: a BLAS GEMM on strided views, OpenBLAS when present).
		if i2 < k {
			linalg.Gemm(blas.NoTrans, blas.NoTrans, -1,
				blas64.General{Rows: rows, Cols: cnt, Stride: cnt, Data: Err1},
				blas64.General{Rows: cnt, Cols: k - i2, Stride: k, Data: U[i1*k+i2:]},
				1,
				blas64.General{Rows: rows, Cols: k - i2, Stride: k, Data: W[i2:]})
		}
	}
	return nil
}

// permuteCols returns W[:, perm] for W [rows][cols].
func permuteCols(W []float64, rows, cols int, perm []int) []float64 {
	out := make([]float64, len(W))
	for r := 0; r < rows; r++ {
		for j, p := range perm {
			out[r*cols+j] = W[r*cols+p]
		}
	}
	return out
}

// permuteSym returns H[perm][:, perm].
func permuteSym(H []float64, k int, perm []int) []float64 {
	out := make([]float64, len(H))
	for i, pi := range perm {
		for j, pj := range perm {
			out[i*k+j] = H[pi*k+pj]
		}
	}
	return out
}

// hinvUpper overwrites the symmetric H (K×K, row-major) with the upper
// Cholesky factor U of (H + damp·mean(diag H)·I)⁻¹ (so that the inverse
// is UᵀU, zero below the diagonal) and returns true, or leaves H as it was
// and returns false when the damped H is not positive definite. With J
// the reversal permutation and J·H·J = M·Mᵀ (Cholesky), H = R·Rᵀ with
// R = J·M·J upper triangular, so H⁻¹ = R⁻ᵀR⁻¹ and U = R⁻¹: one Cholesky
// factorization and one triangular inverse. J·A·J of a row-major K×K A
// is A's elements in reverse order.
func hinvUpper(H []float64, k int, damp float64) bool {
	var mean float64
	for i := 0; i < k; i++ {
		mean += H[i*k+i]
	}
	mean /= float64(k)
	diag := make([]float64, k) // of J·H·J, to restore H on failure
	A := H[:k*k]
	slices.Reverse(A) // J·H·J
	for i := 0; i < k; i++ {
		diag[i] = A[i*k+i]
		A[i*k+i] += damp * mean
	}
	// Cholesky factor of J·H·J (LAPACK dpotrf, lower, row-major); the strict
	// upper triangle still holds J·H·J.
	_, ok := linalg.Potrf(blas64.Symmetric{Uplo: blas.Lower, N: k, Stride: k, Data: A})
	if ok {
		for i := 0; i < k; i++ {
			if !(A[i*k+i] > 0) {
				ok = false
			}
		}
	}
	if !ok {
		for i := 0; i < k; i++ {
			A[i*k+i] = diag[i]
			for j := i + 1; j < k; j++ {
				A[j*k+i] = A[i*k+j]
			}
		}
		slices.Reverse(A)
		return false
	}
	slices.Reverse(A) // R = J·M·J: upper; below it, J·H·J's upper triangle reversed
	for i := 1; i < k; i++ {
		clear(A[i*k : i*k+i])
	}
	// U = R⁻¹ in place (LAPACK dtrtri; R's diagonal is positive, so it
	// is invertible).
	linalg.Trtri(blas64.Triangular{Uplo: blas.Upper, Diag: blas.NonUnit, N: k, Stride: k, Data: A})
	return true
}
