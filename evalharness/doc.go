// Package evalharness runs ONNX models with ONNX Runtime and measures them:
// library discovery and initialization, sessions on the CPU or CUDA
// execution provider, datasets (.npz files and ONNX test-data folders),
// metrics by output shape (class scores: accuracy, top-5, agreement, KL;
// token scores: perplexity, token accuracy, masked agreement and KL; any
// shape: cosine, MSE, max-abs, PSNR; latency, throughput), accuracy gates, activation statistics for calibration, and
// fast candidate evaluation with weights fed as graph inputs.
//
// # Overview
//
// A typical evaluation loads a dataset, opens one session per model and
// calls Evaluate:
//
//	ds, err := evalharness.LoadDataset("test.npz")
//	cand, err := evalharness.NewSessionFromFile("model.onnx", evalharness.SessionOptions{})
//	ref, err := evalharness.NewSessionFromFile("base.onnx", evalharness.SessionOptions{})
//	res, err := evalharness.Evaluate(ctx, cand, ref, ds, evalharness.EvalOptions{Metrics: []string{"accuracy", "kl"}})
//	g, err := evalharness.ParseGate("accuracy_drop<=0.01,kl<=0.02")
//	ok := g.CheckResult(res).Passed
//
// Sessions come from model bytes (NewSession, SessionFromModel for an
// onnxio.Model) or files (NewSessionFromFile), on the CPU execution
// provider with a configurable number of threads or on the CUDA one
// (SessionOptions.EP "cuda", which needs a GPU build of ONNX Runtime and
// fails with ErrNoCUDA otherwise).
//
// Every session the library opens itself (Capture, EvaluateModels,
// WeightSession, and those of packages fisher and pipeline) goes through
// OpenSession, which calls SessionOptions.Open when it is set and opens
// an ONNX Runtime Session otherwise: a program can run its models on
// another engine, and tests substitute a fake (package evaltest's
// interpreter) so that they need no ONNX Runtime library.
//
// Datasets (LoadDataset) are .npz files, read by the bounds-checked reader
// of package npz, or ONNX test-data folders. LoadDatasetFor reads only the
// arrays a model takes (and labels): the others are skipped unread, and
// what is read is bounded in total (DatasetOptions.MaxBytes, default
// DefaultMaxDatasetBytes, 4 GiB or $ONNXPOST_MAX_DATASET_BYTES) before it
// is inflated. Special files (FIFOs, devices) are refused before they are
// opened. Dataset.Check reports one clear
// error for a missing input, a wrong dtype, rank or size, labels of the
// wrong length or an empty file, and finds each input's batch axis (the
// axis whose dim_param is the batch dimension; inputs without one, such as
// a scalar sample rate, are fed whole to every batch). Evaluate measures the
// first floating-point output, or those EvalOptions.Outputs names, batch by
// batch, checking its context before each; with EvalOptions.Shard it
// evaluates one part of the dataset and MergeResults combines the parts
// exactly. NaN and Inf never pass for valid numbers: such scores count as
// wrong, non-finite metrics are listed in Result.Nonfinite (null in JSON)
// and fail every gate condition that reads them, and an output that turned
// NaN/Inf where the reference's did not fails the gate.
//
// Capture exposes chosen intermediate tensors as outputs of a copy of the
// model and streams the batches into a calib.Accumulator: the input Gram
// matrix XᵀX of MatMul, Gemm and Conv weights (Conv through its im2col
// view) or only its diagonal, and per-tensor min/max/mean/std and
// histograms. Its Stats (calib.Collected) implements calib.Stats, the one
// calibration interface of the compression and quantization packages.
// Calibrator captures once per model state for every transform that
// declares its needs, lazily.
//
// WeightSession turns chosen initializers into graph inputs once and feeds
// each candidate's values per run: one session for a whole search instead
// of a serialization and a session per candidate (BenchmarkCandidates
// measures both).
//
// ONNX Runtime is loaded once per process (Init, guarded by sync.Once) from
// the first library found in this order (FindLibrary): an explicit path
// (FindLibrary's argument), $ONNXPOST_ORT_LIB, lib/libonnxruntime.so.1 beside
// the executable or the `make` build's ../.cache/onnxruntime beside its
// bin/ folder, then the system library paths. The working directory and its
// parents are never searched: they may be an untrusted model's folder.
// `make ort` installs the library.
//
// # Invariants
//
// Metrics are computed in float64 over all samples, batch by batch, with
// memory bounded by one batch of outputs per model. Models and datasets are
// never modified. Arrays hold little-endian data in C order.
//
// # Trust
//
// Datasets are untrusted: the .npy/.npz reader (package npz) bounds-checks
// every header field and length before allocating (see npz.Limits) and
// returns errors, never panics. Model files are parsed by onnxio and ONNX Runtime.
package evalharness
