// Package sparsity prunes the weights of MatMul, Gemm and Conv layers to an
// N:M pattern or to an unstructured sparsity, scored by magnitude, by Wanda
// (|W|·‖X‖₂ from calibration activations) or by SparseGPT (an optimal brain
// surgeon update with H = XᵀX + λI that also adjusts the kept weights).
//
// # Overview
//
// Every weight is viewed as a matrix of output units (rows) by reduction
// index (columns), the same column order as the calibration interface's
// XᵀX (see calib.Stats):
//
//   - MatMul B [K,N] and Gemm B with transB=0 ([K,N]): N rows of K columns;
//   - Gemm B with transB=1 ([N,K]): N rows of K columns;
//   - Conv W [O,C/g,kh,kw]: O rows of (C/g)·kh·kw columns, channel-major.
//
// An N:M group is M consecutive weights along the reduction axis of one
// output unit: along K for MatMul/Gemm, along the input channels C for each
// (o, kh, kw) of a Conv (the rule of NVIDIA ASP and TensorRT). At most N
// weights of a group stay non-zero: the M−N with the lowest scores become
// exact zeros. Layers whose reduction size is not a multiple of M are
// skipped and reported.
//
// Unstructured sparsity S prunes exactly floor(S·n) weights of n, where the
// unit depends on the method: the whole layer for magnitude (or all layers
// together with ScopeGlobal), each output row for Wanda (Wanda compares
// within an output unit), each block of columns for SparseGPT (as in its
// reference algorithm, the mask is chosen block by block). So that the layer
// total is still exactly floor(S·n), unit u of size n_u starting at offset o_u
// prunes floor(S·(o_u+n_u)) − floor(S·o_u) weights. S is rounded as the
// shortest decimal that represents it, so 0.7 means 7/10 exactly.
//
// Ties are broken deterministically: among equal scores, the weight with the
// higher index (row-major in the matrix view, later layers first in global
// scope) is pruned first.
//
// # Invariants
//
// Inputs are never modified. Outputs keep the input's layout and dtype;
// pruned weights are exact zeros. With magnitude and Wanda the kept weights
// are unchanged and weights already zero stay zero; SparseGPT updates the
// kept weights and zeroes the weights of inputs that are zero on all the
// calibration data. So the zero fraction of an output can differ from the
// requested sparsity by those weights; reports give both the pruned count
// and the zero count.
//
// VerifyNM checks a tensor against a pattern directly from its layout and is
// written independently of the pruning code; reports use it, and also
// record whether each layer satisfies TensorRT's 2:4 rule, with the
// TensorRT execution provider options that enable sparse kernels.
//
// # Use
//
// Prune and PruneLayer work on Layers (tensor data plus layout);
// PruneModel prunes the MatMul, Gemm and Conv weights of an onnxio.Model in
// place. Wanda and SparseGPT read calibration through calib.Stats,
// onnxpost's one calibration interface (evalharness.Capture implements it;
// calib.FromActivations from captured tensors): Wanda its
// SquaredColumnNorms, SparseGPT its InputGram (im2col for Conv). PruneModel
// prunes layers in graph order and writes each back before asking for the
// next one's statistics, so a calib.Stats that captures on the model as it
// is then gives the sequential variant of the reference code.
//
// # Performance
//
// SparseGPT factors H once in float64 (one Cholesky factorization and one
// blocked, parallel triangular inverse give the upper Cholesky factor of
// H⁻¹), sweeps each column block with rows spread over goroutines (float64
// inside the block), and applies the lazy update of the remaining columns
// in float32 with goroutines over rows, skipping the zero errors of kept
// weights.
//
// Memory: PruneModel and PruneLayer hold one layer at a time. SparseGPT
// factors the Gram it reads from calib.Stats in place and narrows the
// factor to float32 in the same memory, so a layer step holds one Cols²
// float64 matrix plus the weight. SparseGPT, Wanda and pattern masks
// prune the weight in place in its tensor layout, through its matrix view
// a chunk of rows at a time (SparseGPT under N:M: 64 MiB of float32 rows
// swept through every column block; unstructured SparseGPT chooses each
// block's mask over all rows, so its chunk is the whole view; Wanda and
// masks: 32 MiB of float64 scores); PruneModel prunes a float32 weight in
// bytes of its own and hands them back as the initializer, so the step
// holds one copy of the weight. Unstructured magnitude orders the whole
// matrix view (a copy).
package sparsity
