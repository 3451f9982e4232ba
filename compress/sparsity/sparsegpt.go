package sparsity

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"unsafe"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/blas/gonum"
	"gonum.org/v1/gonum/lapack/lapack64"

	"github.com/onnxpost/onnxpost/internal/linalg"
	"github.com/onnxpost/onnxpost/internal/safe"
)

// ErrNotPositiveDefinite is returned when XᵀX + λI has no Cholesky
// factorization (raise the dampening).
var ErrNotPositiveDefinite = errors.New("sparsity: XᵀX + λI is not positive definite; raise the damp parameter")

// SparseGPTResult is the output of PruneSparseGPT.
type SparseGPTResult struct {
	// W is the pruned and updated matrix (Rows×Cols, row-major).
	W []float32
	// Pruned is the prune mask chosen by the algorithm (true = zero).
	Pruned []bool
	// Loss is the OBS objective Σ (w−q)²/[U]ᵢᵢ² summed over all pruned
	// weights, with U the upper Cholesky factor of H⁻¹.
	Loss float64
}

// PruneSparseGPT prunes a Rows×Cols matrix w (row-major, see ToMatrix) with
// SparseGPT, given xtx = XᵀX (Cols×Cols, row-major) of its input
// activations: H = XᵀX + λI with λ = opt.Damp·mean(diag) (columns whose
// diagonal is 0 are dead: their weights are zeroed and their diagonal set to
// 1 first, as in the reference), U = the upper Cholesky factor of H⁻¹, then
// columns are processed in blocks of opt.BlockSize with lazy batched
// updates. With a Pattern, the M−N lowest w²/U_jj² of each group are pruned
// when the sweep reaches the group (after the earlier columns' updates); the
// sweep runs over columns ordered so that groups are consecutive (kernel
// position, then channel, for Conv). Unstructured, each block prunes its
// share of floor(S·n) (see the package doc) of the lowest w²/U_jj² over the
// block. w is not modified. It stops with ctx's error, checked before each
// column block, when ctx is cancelled; a panic in one of its workers comes
// back as a *safe.PanicError.
func PruneSparseGPT(ctx context.Context, w []float32, sh Shape, xtx []float64, opt Options) (SparseGPTResult, error) {
	W := append([]float32(nil), w...)
	mask := make([]bool, len(W))
	_, loss, err := sparseGPT(ctx, viewRows{v: W, rows: sh.Rows, cols: sh.Cols}, sh, xtx, false, opt, sgptChunkRows(sh.Cols), mask, nil)
	if err != nil {
		return SparseGPTResult{}, err
	}
	return SparseGPTResult{W: W, Pruned: mask, Loss: loss}, nil
}

// sgptChunkBytes bounds the float32 rows of the weight SparseGPT sweeps at
// once under an N:M pattern (rows are then independent given U); the
// weight itself is updated in place, in its tensor layout.
const sgptChunkBytes = 64 << 20

// sgptChunkRows is the number of rows of cols float32s that fit in
// sgptChunkBytes (at least one).
func sgptChunkRows(cols int) int { return max(1, sgptChunkBytes/(4*max(cols, 1))) }

// viewRows is the matrix view (Rows×Cols, see Shape) of a weight held in
// its tensor layout: v is row-major in the tensor's dims, element (r, c)
// of the view at c·rows + r for LayoutKN ([K, N]: kn) and r·cols + c for
// the others (NK, Conv).
type viewRows struct {
	v          []float32
	rows, cols int
	kn         bool
}

// at is the index in v of the view's element (r, c).
func (m viewRows) at(r, c int) int {
	if m.kn {
		return c*m.rows + r
	}
	return r*m.cols + c
}

// load copies rows r0..r1 of the view into buf ((r1−r0)×cols), columns in
// sweep order: sweep column q is the view's column perm[q] (nil: q).
func (m viewRows) load(buf []float32, r0, r1 int, perm []int) { m.move(buf, r0, r1, perm, true) }

// store is load's inverse: rows r0..r1 of the view from buf.
func (m viewRows) store(buf []float32, r0, r1 int, perm []int) { m.move(buf, r0, r1, perm, false) }

// move copies rows r0..r1 between the view and buf: to buf with load,
// from it without.
func (m viewRows) move(buf []float32, r0, r1 int, perm []int, load bool) {
	n := m.cols
	col := func(q int) int {
		if perm != nil {
			return perm[q]
		}
		return q
	}
	if m.kn {
		for q := 0; q < n; q++ {
			c := col(q)
			v := m.v[c*m.rows+r0 : c*m.rows+r1]
			for i := range v {
				if load {
					buf[i*n+q] = v[i]
				} else {
					v[i] = buf[i*n+q]
				}
			}
		}
		return
	}
	for r := r0; r < r1; r++ {
		v, b := m.v[r*n:(r+1)*n], buf[(r-r0)*n:(r-r0+1)*n]
		switch {
		case perm == nil && load:
			copy(b, v)
		case perm == nil:
			copy(v, b)
		default:
			for q, c := range perm {
				if load {
					b[q] = v[c]
				} else {
					v[c] = b[q]
				}
			}
		}
	}
}

// sparseGPT is SparseGPT (see PruneSparseGPT) on the view m of Shape sh,
// pruned and updated in place; with owned, xtx is the caller's to give:
// when the sweep order is the identity it becomes H and then the factor U
// instead of a copy (Cols² float64s). Under an N:M pattern rows are swept
// chunkRows at a time (see sweep); the results do not depend on chunkRows,
// bit for bit, but with OpenBLAS, where a chunk's share of non-zero errors
// chooses the trailing update's kernel (trailingUpdate). mask, when not
// nil (Rows·Cols), receives the mask in the view's order. It returns the
// number of weights pruned and the OBS loss.
func sparseGPT(ctx context.Context, m viewRows, sh Shape, xtx []float64, owned bool, opt Options, chunkRows int, mask []bool, progress func(done, total int)) (int, float64, error) {
	opt, err := opt.withDefaults()
	if err != nil {
		return 0, 0, err
	}
	n := sh.Cols
	if len(m.v) != sh.Len() || m.rows != sh.Rows || m.cols != sh.Cols {
		return 0, 0, fmt.Errorf("sparsity: %d weights for a %dx%d matrix", len(m.v), sh.Rows, sh.Cols)
	}
	if len(xtx) != n*n {
		return 0, 0, fmt.Errorf("sparsity: XᵀX has %d values, want %d×%d", len(xtx), n, n)
	}
	if !opt.Pattern.IsZero() && !sh.Fits(opt.Pattern.M) {
		return 0, 0, fmt.Errorf("sparsity: reduction size %d is not a multiple of %d", sh.Reduction(), opt.Pattern.M)
	}
	if i := firstNonFinite(m); i >= 0 {
		return 0, 0, fmt.Errorf("sparsity: non-finite weight at %d", i)
	}
	var perm []int
	if !opt.Pattern.IsZero() {
		perm = groupOrder(sh)
	}
	// H in sweep order
	var H []float64
	switch {
	case perm == nil && owned:
		H = xtx
	case perm == nil:
		H = append([]float64(nil), xtx...)
	default:
		H = make([]float64, n*n)
		for a, i := range perm {
			for b, j := range perm {
				H[a*n+b] = xtx[i*n+j]
			}
		}
	}
	for i, v := range H {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, 0, fmt.Errorf("sparsity: non-finite XᵀX entry at %d", i)
		}
	}
	var dead []int // sweep columns never seen: their weights are zeroed
	mean := 0.0
	for j := 0; j < n; j++ {
		if H[j*n+j] == 0 {
			H[j*n+j] = 1
			dead = append(dead, j)
		}
		mean += H[j*n+j]
	}
	mean /= float64(n)
	for j := 0; j < n; j++ {
		H[j*n+j] += opt.Damp * mean
	}
	U := H // factored in place: one n×n matrix
	if err := upperCholOfInverse(U, n); err != nil {
		return 0, 0, err
	}
	return sweep(ctx, m, perm, dead, U, opt, chunkRows, mask, progress)
}

// firstNonFinite returns the index in the view's row-major order of its
// first NaN or ±Inf, or −1.
func firstNonFinite(m viewRows) int {
	bad := false
	for _, v := range m.v {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			bad = true
			break
		}
	}
	if !bad {
		return -1
	}
	for r := 0; r < m.rows; r++ {
		for c := 0; c < m.cols; c++ {
			if v := float64(m.v[m.at(r, c)]); math.IsNaN(v) || math.IsInf(v, 0) {
				return r*m.cols + c
			}
		}
	}
	return -1
}

// invertLower overwrites the lower-triangular n×n l (row-major) with its
// inverse X and zeroes its strict upper triangle. Block row by block row:
// X_II = L_II⁻¹ and X_IJ = −X_II·(L[I, J:I]·X[J:I, J]) for J < I, the
// blocks J in parallel, so that the work is matrix products on all cores
// (gonum's Dtrtri runs on one); the block row L[I, :I] is copied aside
// first (at most 128·n float64s), since the products read it while X_IJ
// replaces it. With OpenBLAS (internal/linalg), whose Dtrtri is blocked
// and threaded, it is one Dtrtri call.
func invertLower(l []float64, n int) bool {
	const nb = 128
	for i := 0; i < n; i++ {
		clear(l[i*n+i+1 : (i+1)*n])
	}
	if linalg.Default().Name() != "go" {
		return linalg.Trtri(blas64.Triangular{Uplo: blas.Lower, Diag: blas.NonUnit, N: n, Stride: n, Data: l})
	}
	workers := runtime.GOMAXPROCS(0)
	var row []float64 // L[I, :I]
	for i0 := 0; i0 < n; i0 += nb {
		i1 := min(i0+nb, n)
		bi := i1 - i0
		if i0 > 0 {
			if cap(row) < bi*i0 {
				row = make([]float64, bi*i0, nb*n)
			}
			row = row[:bi*i0]
			for r := 0; r < bi; r++ {
				copy(row[r*i0:(r+1)*i0], l[(i0+r)*n:(i0+r)*n+i0])
			}
		}
		xii := blas64.Triangular{Uplo: blas.Lower, Diag: blas.NonUnit, N: bi, Stride: n, Data: l[i0*n+i0:]}
		if !lapack64.Trtri(xii) {
			return false
		}
		if i0 == 0 {
			continue
		}
		next := make(chan int, i0/nb+1)
		for j0 := 0; j0 < i0; j0 += nb {
			next <- j0
		}
		close(next)
		var wg sync.WaitGroup
		for g := 0; g < workers; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				t := make([]float64, bi*nb)
				for j0 := range next {
					bj := min(j0+nb, i0) - j0
					tt := blas64.General{Rows: bi, Cols: bj, Stride: nb, Data: t}
					// T = L[I, j0:i0] · X[j0:i0, J]
					blas64.Gemm(blas.NoTrans, blas.NoTrans, 1,
						blas64.General{Rows: bi, Cols: i0 - j0, Stride: i0, Data: row[j0:]},
						blas64.General{Rows: i0 - j0, Cols: bj, Stride: n, Data: l[j0*n+j0:]},
						0, tt)
					// X_IJ = −X_II · T
					blas64.Trmm(blas.Left, blas.NoTrans, -1, xii, tt)
					for r := 0; r < bi; r++ {
						copy(l[(i0+r)*n+j0:(i0+r)*n+j0+bj], t[r*nb:r*nb+bj])
					}
				}
			}()
		}
		wg.Wait()
	}
	return true
}

// upperCholOfInverse overwrites the symmetric n×n H (row-major) with the
// upper-triangular U (zero below the diagonal) such that UᵀU = H⁻¹, in
// place. With P the reversal permutation and PHP = LLᵀ, U = P L⁻¹ P: one
// Cholesky and one triangular inverse instead of the reference's
// Cholesky, inverse and second Cholesky (the factor is unique, so the
// result is the same). P·A·P of a row-major n×n A is A's elements in
// reverse order. On failure (ErrNotPositiveDefinite) H is spoiled.
func upperCholOfInverse(H []float64, n int) error {
	slices.Reverse(H[:n*n])
	if _, ok := linalg.Potrf(blas64.Symmetric{Uplo: blas.Lower, N: n, Stride: n, Data: H}); !ok {
		return ErrNotPositiveDefinite
	}
	if !invertLower(H, n) {
		return ErrNotPositiveDefinite
	}
	slices.Reverse(H[:n*n])
	return nil
}

// sweep runs SparseGPT's blocked column sweep over the view m (updated in
// place) with U the upper Cholesky factor of H⁻¹ in sweep order (sweep
// column q is the view's column perm[q]; the columns dead are zeroed
// first), and returns the number pruned and the OBS loss; mask, when not
// nil, receives the mask in the view's order. U is consumed: its memory
// holds the float32 copy of U for the trailing updates (narrow), so that
// the sweep holds n² float32s and a chunk of rows, not n² of each.
//
// Rows are split over the workers as in one pass over the whole matrix
// (worker g: rows [g·per, (g+1)·per)); under an N:M pattern, where rows are
// independent, each chunk takes the next chunkRows/workers rows of every
// worker's share, so that each worker still sums its rows' losses in row
// order per column block and the loss is the same, bit for bit. An
// unstructured mask is chosen per block over all rows: it is one chunk.
func sweep(ctx context.Context, m viewRows, perm, dead []int, U []float64, opt Options, chunkRows int, mask []bool, progress func(done, total int)) (int, float64, error) {
	rows, n := m.rows, m.cols
	bs := opt.BlockSize
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = max(1, min(workers, rows))
	// The in-block updates read U's diagonal blocks in float64 (blocks:
	// row i1+i of block [i1, i2) holds U[i1+i, i1:i2], bs apart); the
	// trailing updates read U in float32, as in the reference, narrowed in
	// U's own memory.
	blocks := make([]float64, n*bs)
	for i1 := 0; i1 < n; i1 += bs {
		i2 := min(i1+bs, n)
		for i := i1; i < i2; i++ {
			copy(blocks[i*bs:i*bs+i2-i1], U[i*n+i1:i*n+i2])
		}
	}
	U32 := narrow(U)
	nb := (n + bs - 1) / bs
	per := (rows + workers - 1) / workers
	sub := per // rows of each worker's share per chunk
	var unstructuredCounts []int
	if opt.Pattern.IsZero() {
		sizes := []int{}
		for i1 := 0; i1 < n; i1 += bs {
			sizes = append(sizes, rows*(min(i1+bs, n)-i1))
		}
		unstructuredCounts = splitCounts(opt.Sparsity, sizes)
	} else {
		sub = max(1, min(per, chunkRows/workers))
	}
	steps := (per + sub - 1) / sub
	cap := min(rows, workers*sub)
	Wc := make([]float32, cap*n)
	pc := make([]bool, cap*n)
	W1 := make([]float64, cap*bs)
	Err1 := make([]float32, cap*bs)
	partial := make([]float64, workers*nb) // per worker and block, summed in row order
	errs := make([]error, workers)
	r0s, offs := make([]int, workers+1), make([]int, workers+1)
	pruned := 0
	for k := 0; k < steps; k++ {
		// the chunk: rows [r0s[g], r0s[g]+offs[g+1]−offs[g]) of worker g,
		// at row offs[g] of Wc
		rc := 0
		for g := 0; g < workers; g++ {
			a := min(g*per+k*sub, rows)
			b := min(g*per+(k+1)*sub, (g+1)*per, rows)
			b = max(a, b)
			r0s[g], offs[g] = a, rc
			m.load(Wc[rc*n:], a, b, perm)
			rc += b - a
		}
		offs[workers] = rc
		for _, j := range dead {
			for r := 0; r < rc; r++ {
				Wc[r*n+j] = 0
			}
		}
		clear(pc[:rc*n])
		for b, i1 := 0, 0; i1 < n; b, i1 = b+1, i1+bs {
			if err := ctx.Err(); err != nil {
				return 0, 0, err
			}
			i2 := min(i1+bs, n)
			cnt := i2 - i1
			for r := 0; r < rc; r++ {
				for c := 0; c < cnt; c++ {
					W1[r*cnt+c] = float64(Wc[r*n+i1+c])
				}
			}
			// Block mask for unstructured sparsity, chosen before the block's
			// updates from w²/U_jj².
			var bmask []bool
			if unstructuredCounts != nil {
				tmp := make([]float64, rc*cnt)
				for r := 0; r < rc; r++ {
					for c := 0; c < cnt; c++ {
						d := blocks[(i1+c)*bs+c]
						x := W1[r*cnt+c]
						tmp[r*cnt+c] = x * x / (d * d)
					}
				}
				bmask = make([]bool, rc*cnt)
				pruneLowest(bmask, tmp, unstructuredCounts[b])
			}
			var wg sync.WaitGroup
			for g := 0; g < workers; g++ {
				o0, o1 := offs[g], offs[g+1]
				if o0 >= o1 {
					continue
				}
				wg.Add(1)
				go func(g, o0, o1 int) {
					defer wg.Done()
					defer safe.Recover("sparsegpt worker", &errs[g])
					partial[g*nb+b] = sweepRows(partial[g*nb+b], Wc, W1, Err1, pc, bmask, blocks[i1*bs:], bs, o0, o1, n, i1, cnt, opt.Pattern)
				}(g, o0, o1)
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					return 0, 0, err
				}
			}
			if i2 < n {
				if err := trailingUpdate(Wc, Err1, U32, rc, n, i1, cnt, workers); err != nil {
					return 0, 0, err
				}
			}
			if progress != nil {
				progress(k*n+i2, steps*n)
			}
		}
		for g := 0; g < workers; g++ {
			a, o0, o1 := r0s[g], offs[g], offs[g+1]
			m.store(Wc[o0*n:], a, a+o1-o0, perm)
			for r := o0; r < o1; r++ {
				for q, p := range pc[r*n : (r+1)*n] {
					if !p {
						continue
					}
					pruned++
					if mask != nil {
						c := q
						if perm != nil {
							c = perm[q]
						}
						mask[(a+r-o0)*n+c] = true
					}
				}
			}
		}
	}
	loss := 0.0
	for g := 0; g < workers; g++ {
		l := 0.0
		for b := 0; b < nb; b++ {
			l += partial[g*nb+b]
		}
		loss += l
	}
	return pruned, loss, nil
}

// narrow converts u to float32 in place and returns the float32s, which
// occupy the first half of u's memory (u itself is spoiled): element i is
// written at byte 4i, inside float64 element i/2 ≤ i, which has been read
// already.
func narrow(u []float64) []float32 {
	if len(u) == 0 {
		return nil
	}
	f := unsafe.Slice((*float32)(unsafe.Pointer(&u[0])), len(u))
	for i := range u {
		f[i] = float32(u[i])
	}
	return f
}

// trailingUpdate applies the lazy batched update of one block,
// W[:, i2:] −= Err1 · U[i1:i2, i2:] (i2 = i1+cnt), skipping the zero
// entries of Err1: kept weights have no error, so with 2:4 half the
// products vanish. Rows are split over goroutines and columns tiled so that
// the block's rows of U stay in cache. A worker's panic comes back as a
// *safe.PanicError.
//
// With OpenBLAS (internal/linalg) a dense SGEMM is cheaper once more than a
// quarter of the errors are non-zero (2:4: half): it then does the update.
func trailingUpdate(W, Err1, U32 []float32, rows, n, i1, cnt, workers int) error {
	const tile = 1024
	i2 := i1 + cnt
	if linalg.Default().Name() != "go" {
		nz := 0
		for _, e := range Err1[:rows*cnt] {
			if e != 0 {
				nz++
			}
		}
		if 4*nz > rows*cnt {
			linalg.Sgemm(blas.NoTrans, blas.NoTrans, -1,
				blas32.General{Rows: rows, Cols: cnt, Stride: cnt, Data: Err1},
				blas32.General{Rows: cnt, Cols: n - i2, Stride: n, Data: U32[i1*n+i2:]},
				1, blas32.General{Rows: rows, Cols: n - i2, Stride: n, Data: W[i2:]})
			return nil
		}
	}
	var impl gonum.Implementation
	var wg sync.WaitGroup
	chunk := (rows + workers - 1) / workers
	errs := make([]error, workers)
	for g := 0; g < workers; g++ {
		r0, r1 := g*chunk, min((g+1)*chunk, rows)
		if r0 >= r1 {
			continue
		}
		wg.Add(1)
		go func(g, r0, r1 int) {
			defer wg.Done()
			defer safe.Recover("sparsegpt update worker", &errs[g])
			for c0 := i2; c0 < n; c0 += tile {
				c1 := min(c0+tile, n)
				for r := r0; r < r1; r++ {
					wr := W[r*n+c0 : r*n+c1]
					for k, e := range Err1[r*cnt : (r+1)*cnt] {
						if e != 0 {
							impl.Saxpy(c1-c0, -e, U32[(i1+k)*n+c0:(i1+k)*n+c1], 1, wr, 1)
						}
					}
				}
			}
		}(g, r0, r1)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// sweepRows processes rows r0..r1 of one column block [i1, i1+cnt): mask
// choice (N:M groups), quantization to the mask, OBS error and the in-block
// updates, in float64, from ub: the block's rows of U's diagonal block,
// stride apart. It writes the block's result into W, its errors into Err1
// and its mask into pruned, and returns loss plus its loss, summed in row
// order.
func sweepRows(loss float64, W []float32, W1 []float64, Err1 []float32, pruned, bmask []bool, ub []float64, stride, r0, r1, n, i1, cnt int, p Pattern) float64 {
	var score []float64
	var idx []int
	if !p.IsZero() {
		score = make([]float64, p.M)
		idx = make([]int, p.M)
	}
	for r := r0; r < r1; r++ {
		w1 := W1[r*cnt : (r+1)*cnt]
		e1 := Err1[r*cnt : (r+1)*cnt]
		pr := pruned[r*n+i1 : r*n+i1+cnt]
		for i := 0; i < cnt; i++ {
			ui := ub[i*stride : i*stride+cnt]
			if !p.IsZero() && i%p.M == 0 {
				for t := 0; t < p.M; t++ {
					d := ub[(i+t)*stride+i+t]
					score[t] = w1[i+t] * w1[i+t] / (d * d)
					idx[t] = t
				}
				prg := pr[i : i+p.M]
				markGroup(prg, score, idx, p.M-p.N)
			} else if bmask != nil {
				pr[i] = bmask[r*cnt+i]
			}
			x := w1[i]
			q := x
			if pr[i] {
				q = 0
			}
			d := ui[i]
			e := (x - q) / d
			loss += e * e
			w1[i] = q
			if e != 0 { // kept weights (q = w) leave the rest unchanged
				rest := w1[i+1:]
				for j, u := range ui[i+1:] {
					rest[j] -= e * u
				}
			}
			e1[i] = float32(e)
			W[r*n+i1+i] = float32(q)
		}
	}
	return loss
}
