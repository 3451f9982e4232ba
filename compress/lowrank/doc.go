// Package lowrank factorizes the weight matrices of an ONNX model into
// products of two thin factors from their truncated singular value
// decomposition (docs/ARCHITECTURE.md §5.3).
//
// # Overview
//
// Dense layers (SchemeSVD): a MatMul with B [K,N], or a Gemm with
// transA/transB/alpha/beta, becomes two MatMul (Gemm) nodes,
// W ≈ (U_r√Σ_r)(√Σ_r V_rᵀ); a bias (Gemm's C, or an Add after a MatMul) stays
// after the second product.
//
// Convolutions: SchemeChannel turns Conv W [O, C, k…] into a k… conv with r
// filters (the original strides, pads and dilations) followed by a 1×…×1
// conv to O channels, from the SVD of W viewed as [O, C·∏k]. SchemeSpatial
// turns a 2-D conv into a kh×1 conv with r filters followed by a 1×kw conv,
// from the SVD of W permuted to [(c,kh), (o,kw)]; height strides, pads and
// dilations go to the first, width ones to the second. Both are exact at full
// rank. Grouped convs and auto_pad SAME are refused. By default only stride-1
// convs with a kernel other than 1×1 are taken, and not the model's first
// conv (Trained Rank Pruning's rule); Options.Include names others.
//
// Ranks (Rule): ByEnergy keeps the smallest r with Σ_{i≤r} σᵢ² ≥ E·Σσᵢ²;
// ByRankRatio keeps ⌊R·min(m,n)⌋; ByRank a fixed K; ByParamsRatio spends a
// whole-model budget with Budget (greedy on normalized σ² per parameter). A
// rank that saves nothing (r ≥ mn/(m+n)) leaves the layer alone.
//
// Data-aware SVD: with a calibration (calib.Stats.InputGram: XᵀX of each
// layer's input, from evalharness.Capture), the SVD is taken of W·L, L the Cholesky factor of XᵀX + λI,
// and the right factor unwhitened by L⁻¹ (SVD-LLM): the factorization then
// minimizes the layer's output error on the calibration data.
//
// SVD: ExactSVD runs in float64 on the backend of internal/linalg
// (OpenBLAS's Dgesdd when libopenblas is installed, gonum's pure-Go Dgesvd
// otherwise or with ONNXPOST_LINALG=go). RandomizedSVD is the range finder
// of Halko, Martinsson and Tropp with oversampling and power iterations,
// seeded, iterating until the kept energy has converged (falling back to the
// exact SVD when it cannot). Auto (Method) uses the exact SVD unless a cost
// model of the backend predicts the randomized one at least 3× faster, so a
// fixed rank gets the Eckart–Young optimum.
//
// The algorithms (ExactSVD, RandomizedSVD, Rule, Budget, SpatialMatrix,
// SplitChannel, NewWhitener, …) are pure functions over row-major
// []float64; Apply is the graph rewrite over an onnxio.Model.
//
// # Invariants
//
// Inputs are never modified: slices passed in are copied before LAPACK
// overwrites them. Everything is computed in float64; factors are stored in
// the weight's dtype. Results are deterministic for a given
// RandomizedOptions.Seed. Apply changes only the Model it is given.
//
// # Errors
//
// Shape mismatches in calls to the pure functions are caller bugs and panic
// with an error wrapping ErrShape. Bad data and options give errors wrapping
// ErrNonFinite, ErrNoConvergence, ErrOption, ErrUnsupported, ErrBudget or
// ErrCalibration.
package lowrank
