package sparsity

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/onnxpost/onnxpost/calib"
)

// ErrNonFinite reports calibration activations holding NaN or ±Inf
// (calib.ErrNonFinite): XᵀX would carry them into every score and update.
var ErrNonFinite = calib.ErrNonFinite

// ErrNoLayerFits is returned when no layer's reduction size is a multiple of
// the pattern's M.
var ErrNoLayerFits = errors.New("sparsity: M divides the reduction size of no layer")

// Layer is one weight to prune: its tensor data in the layout of its
// consumer.
type Layer struct {
	// Name identifies the weight (the initializer name), also for the
	// calibration (calib.Stats).
	Name string
	// Layout says how Dims map onto output units and the reduction axis.
	Layout Layout
	// Dims are the tensor's dimensions.
	Dims []int64
	// Data holds the tensor's values, row-major in Dims.
	Data []float32
}

// LayerReport describes the pruning of one layer.
type LayerReport struct {
	Name   string  `json:"name"`
	Layout Layout  `json:"layout"`
	Shape  []int64 `json:"shape"`
	Params int     `json:"params"`
	// Pruned is the number of weights the mask pruned.
	Pruned int `json:"pruned"`
	// Requested is the number the options ask for: floor(S·n) for a
	// per-layer unstructured sparsity, (M−N)/M·n for N:M; 0 in global scope.
	Requested int `json:"requested,omitempty"`
	// ZerosBefore and Zeros count the exact zeros of the input and output.
	ZerosBefore  int     `json:"zeros_before"`
	Zeros        int     `json:"zeros"`
	ZeroFraction float64 `json:"zero_fraction"`
	// NM is the independent N:M check of the output (VerifyNM).
	NM *NMCheck `json:"nm_check,omitempty"`
	// Loss is SparseGPT's OBS objective.
	Loss float64 `json:"sparsegpt_loss,omitempty"`
	// Sparse24 says whether every group of 4 consecutive weights along the
	// reduction axis holds at most 2 non-zeros (TensorRT's sparse-weights
	// rule), checked with VerifyNM on the output.
	Sparse24 bool `json:"tensorrt_2_4"`
	// Seconds is the time spent on the layer.
	Seconds float64 `json:"seconds"`
	// Skipped says why the layer was left unchanged, if it was.
	Skipped string `json:"skipped,omitempty"`
}

// Report summarizes Prune.
type Report struct {
	Method   Method  `json:"method"`
	Pattern  string  `json:"pattern,omitempty"`
	Sparsity float64 `json:"sparsity,omitempty"`
	Scope    Scope   `json:"scope,omitempty"`
	// Params, Pruned and Zeros sum over the pruned (not skipped) layers.
	Params       int     `json:"params"`
	Pruned       int     `json:"pruned"`
	Zeros        int     `json:"zeros"`
	ZeroFraction float64 `json:"zero_fraction"`
	// NMViolations sums the violating groups over all layers (0 expected).
	NMViolations int           `json:"nm_violations"`
	Skipped      int           `json:"skipped"`
	Layers       []LayerReport `json:"layers"`
	// TensorRT says how to use the zeros with TensorRT, when some layer
	// satisfies its 2:4 rule.
	TensorRT *TensorRTHint `json:"tensorrt,omitempty"`
}

// TensorRTHint tells how to run a pruned model with sparse tensor cores:
// TensorRT (or ONNX Runtime's TensorRT execution provider) reads 2:4 zeros
// from ordinary dense weights when sparsity is enabled together with fp16
// or int8.
type TensorRTHint struct {
	// Layers2x4 counts the pruned layers that satisfy the 2:4 rule.
	Layers2x4 int `json:"layers_2_4"`
	// EPOptions are the TensorRT execution provider options to set.
	EPOptions map[string]string `json:"ep_options"`
	// Trtexec gives the equivalent trtexec flags.
	Trtexec string `json:"trtexec"`
}

// newTensorRTHint returns the hint for n layers that satisfy 2:4, nil for 0.
func newTensorRTHint(n int) *TensorRTHint {
	if n == 0 {
		return nil
	}
	return &TensorRTHint{
		Layers2x4: n,
		EPOptions: map[string]string{"trt_sparsity_enable": "1", "trt_fp16_enable": "1"},
		Trtexec:   "--sparsity=enable --fp16",
	}
}

// sparse24 reports whether data satisfies 2:4 along its reduction axis.
func sparse24(data []float32, l Layout, dims []int64) bool {
	c, err := VerifyNM(data, l, dims, Pattern{N: 2, M: 4})
	return err == nil && c.OK()
}

// Prune prunes layers with opt and returns, for each layer, the pruned data
// in the same layout (nil for a skipped layer) and a report. cal may be
// nil for Magnitude. Inputs are not modified. With an N:M pattern, layers
// whose reduction size is not a multiple of M are skipped (and reported);
// if no layer fits, Prune returns ErrNoLayerFits. It stops with ctx's
// error, checked before each layer, when ctx is cancelled.
func Prune(ctx context.Context, layers []Layer, opt Options, cal calib.Stats) ([][]float32, Report, error) {
	opt, err := opt.withDefaults()
	if err != nil {
		return nil, Report{}, err
	}
	if opt.Method.NeedsCalibration() && cal == nil {
		return nil, Report{}, fmt.Errorf("%w: %s", ErrNoCalibration, opt.Method)
	}
	rep := Report{Method: opt.Method, Scope: opt.Scope}
	if opt.Pattern.IsZero() {
		rep.Sparsity = opt.Sparsity
	} else {
		rep.Pattern = opt.Pattern.String()
		rep.Scope = ""
	}
	outs := make([][]float32, len(layers))
	reps := make([]LayerReport, len(layers))
	if !opt.Pattern.IsZero() {
		fits := 0
		for _, l := range layers {
			if sh, err := ShapeOf(l.Layout, l.Dims); err == nil && sh.Fits(opt.Pattern.M) {
				fits++
			}
		}
		if fits == 0 && len(layers) > 0 {
			return nil, rep, fmt.Errorf("%w (M=%d)", ErrNoLayerFits, opt.Pattern.M)
		}
	}
	if opt.Pattern.IsZero() && opt.Scope == ScopeGlobal {
		if err := pruneGlobal(ctx, layers, opt, cal, outs, reps); err != nil {
			return nil, rep, err
		}
	} else {
		for i, l := range layers {
			outs[i], reps[i], err = PruneLayer(ctx, l, opt, cal)
			if err != nil {
				return nil, rep, err
			}
		}
	}
	n24 := 0
	for i, r := range reps {
		if r.Skipped != "" {
			rep.Skipped++
			continue
		}
		if !opt.Pattern.IsZero() {
			c, err := VerifyNM(outs[i], layers[i].Layout, layers[i].Dims, opt.Pattern)
			if err != nil {
				return nil, rep, fmt.Errorf("sparsity: %s: %w", r.Name, err)
			}
			reps[i].NM = &c
			rep.NMViolations += c.Violations
		}
		reps[i].Sparse24 = sparse24(outs[i], layers[i].Layout, layers[i].Dims)
		if reps[i].Sparse24 {
			n24++
		}
		rep.Params += r.Params
		rep.Pruned += r.Pruned
		rep.Zeros += r.Zeros
	}
	if rep.Params > 0 {
		rep.ZeroFraction = float64(rep.Zeros) / float64(rep.Params)
	}
	rep.Layers = reps
	rep.TensorRT = newTensorRTHint(n24)
	return outs, rep, nil
}

// PruneLayer prunes one layer on its own (per-layer scope, or an N:M
// pattern) and returns its data in the same layout, nil when skipped. It
// does not run VerifyNM; Prune does. ctx is checked first and, for
// SparseGPT, before each column block. l.Data is not modified.
func PruneLayer(ctx context.Context, l Layer, opt Options, cal calib.Stats) ([]float32, LayerReport, error) {
	return pruneLayer(ctx, l, opt, cal, false, 0)
}

// pruneLayer is PruneLayer; with inPlace, l.Data is the caller's to give:
// the methods that prune rows in place (Options.inPlace) prune it (the
// result is l.Data) instead of a matrix view and a copy back, so that
// they hold one copy of the weight and a chunk of rows (SparseGPT:
// chunkRows, sgptChunkRows when 0).
func pruneLayer(ctx context.Context, l Layer, opt Options, cal calib.Stats, inPlace bool, chunkRows int) ([]float32, LayerReport, error) {
	if err := ctx.Err(); err != nil {
		return nil, LayerReport{Name: l.Name}, err
	}
	start := time.Now()
	opt, err := opt.withDefaults()
	if err != nil {
		return nil, LayerReport{}, err
	}
	rep := LayerReport{Name: l.Name, Layout: l.Layout, Shape: append([]int64(nil), l.Dims...), Params: len(l.Data)}
	sh, err := ShapeOf(l.Layout, l.Dims)
	if err == nil && len(l.Data) != sh.Len() {
		err = fmt.Errorf("sparsity: %d values for dims %v", len(l.Data), l.Dims)
	}
	if err != nil {
		return nil, rep, fmt.Errorf("sparsity: %s: %w", l.Name, err)
	}
	rep.ZerosBefore = CountZeros(l.Data)
	// Row-wise methods work on the tensor in place, through its matrix
	// view m; unstructured magnitude orders the whole matrix view w.
	var w, data []float32
	if !opt.inPlace() {
		w, _, _ = ToMatrix(l.Data, l.Layout, l.Dims)
	} else if data = l.Data; !inPlace {
		data = append([]float32(nil), l.Data...)
	}
	m := viewRows{v: data, rows: sh.Rows, cols: sh.Cols, kn: l.Layout == LayoutKN}
	l.Data = nil // the caller's data need not stay alive
	if !opt.Pattern.IsZero() {
		if !sh.Fits(opt.Pattern.M) {
			rep.Skipped = fmt.Sprintf("reduction size %d is not a multiple of %d", sh.Reduction(), opt.Pattern.M)
			return nil, rep, nil
		}
		rep.Requested = sh.Len() / opt.Pattern.M * (opt.Pattern.M - opt.Pattern.N)
	} else if opt.Scope == ScopeGlobal {
		return nil, rep, fmt.Errorf("sparsity: PruneLayer: global scope needs Prune")
	} else {
		rep.Requested = PrunedCount(opt.Sparsity, sh.Len())
	}
	var gram []float64 // XᵀX (SparseGPT) or its diagonal (Wanda)
	var nrows int64
	if opt.Method.NeedsCalibration() {
		if cal == nil {
			return nil, rep, fmt.Errorf("%w: %s", ErrNoCalibration, opt.Method)
		}
		gram, nrows, err = layerCalibration(cal, opt.Method, l.Name, sh)
		if err != nil {
			return nil, rep, err
		}
	}
	switch opt.Method {
	case SparseGPT:
		var progress func(done, total int)
		if opt.Progress != nil {
			last := time.Now()
			progress = func(done, total int) {
				if done == total || time.Since(last) > time.Second {
					last = time.Now()
					fmt.Fprintf(opt.Progress, "sparsegpt %s: columns %d/%d (%.1fs)\n", l.Name, done, total, time.Since(start).Seconds())
				}
			}
		}
		if chunkRows <= 0 {
			chunkRows = sgptChunkRows(sh.Cols)
		}
		// data and gram are pruneLayer's
		if rep.Pruned, rep.Loss, err = sparseGPT(ctx, m, sh, gram, true, opt, chunkRows, nil, progress); err != nil {
			return nil, rep, fmt.Errorf("sparsity: %s: %w", l.Name, err)
		}
	case Magnitude:
		if opt.Pattern.IsZero() {
			// the one magnitude pruner (the search's levels use it too)
			out, err := PruneMagnitude(w, PrunedCount(opt.Sparsity, len(w)))
			if err != nil {
				return nil, rep, fmt.Errorf("sparsity: %s: %w", l.Name, err)
			}
			rep.Pruned = PrunedCount(opt.Sparsity, len(w))
			data = FromMatrix(out, l.Layout, sh)
			break
		}
		fallthrough
	default:
		// Wanda, or magnitude with a pattern: rows are independent
		if rep.Pruned, err = pruneRows(m, sh, opt, gram, nrows, rowChunk(sh.Cols)); err != nil {
			return nil, rep, fmt.Errorf("sparsity: %s: %w", l.Name, err)
		}
	}
	rep.Zeros = CountZeros(data)
	rep.ZeroFraction = float64(rep.Zeros) / float64(len(data))
	rep.Seconds = time.Since(start).Seconds()
	return data, rep, nil
}

// inPlace reports whether the method prunes a layer's rows in place
// through its matrix view (viewRows): all but unstructured magnitude,
// which orders the whole matrix view.
func (o Options) inPlace() bool { return !(o.Method == Magnitude && o.Pattern.IsZero()) }

// scoreChunkBytes bounds the float64 scores pruneRows holds at once.
const scoreChunkBytes = 32 << 20

// rowChunk is the number of rows of cols float64 scores that fit in
// scoreChunkBytes (at least one).
func rowChunk(cols int) int { return max(1, scoreChunkBytes/(8*max(cols, 1))) }

// pruneRows prunes the matrix view w of Shape sh in place with a mask
// chosen row by row (an N:M pattern, or Wanda's per-row share of the
// sparsity) from the method's scores, chunk rows at a time, so that the
// scores of the whole matrix (Rows·Cols float64s) are never held, nor a
// copy of it (a chunk of rows is); it returns the number pruned. The mask
// does not depend on chunk.
func pruneRows(w viewRows, sh Shape, opt Options, sq []float64, n int64, chunk int) (int, error) {
	var counts []int
	if opt.Pattern.IsZero() {
		if !(opt.Sparsity >= 0 && opt.Sparsity < 1) {
			return 0, fmt.Errorf("sparsity: sparsity %v must be in [0, 1)", opt.Sparsity)
		}
		sizes := make([]int, sh.Rows)
		for i := range sizes {
			sizes[i] = sh.Cols
		}
		counts = splitCounts(opt.Sparsity, sizes)
	}
	pruned := 0
	chunk = max(1, chunk)
	mask := make([]bool, min(chunk, sh.Rows)*sh.Cols)
	buf := make([]float32, len(mask))
	for r0 := 0; r0 < sh.Rows; r0 += chunk {
		r1 := min(r0+chunk, sh.Rows)
		part := Shape{Rows: r1 - r0, Cols: sh.Cols, Stride: sh.Stride}
		wc := buf[:part.Len()]
		w.load(wc, r0, r1, nil)
		scores, err := layerScores(wc, part, opt.Method, sq, n)
		if err != nil {
			return 0, err
		}
		for i, s := range scores {
			if math.IsNaN(s) || math.IsInf(s, 0) {
				return 0, fmt.Errorf("sparsity: non-finite score at %d (NaN or Inf weights or activations)", r0*sh.Cols+i)
			}
		}
		m := mask[:len(wc)]
		if opt.Pattern.IsZero() {
			clear(m)
			for r := 0; r < part.Rows; r++ {
				pruneLowest(m[r*sh.Cols:(r+1)*sh.Cols], scores[r*sh.Cols:(r+1)*sh.Cols], counts[r0+r])
			}
		} else if m, err = MaskNM(scores, part, opt.Pattern); err != nil {
			return 0, err
		}
		for i, p := range m {
			if p {
				wc[i] = 0
				pruned++
			}
		}
		w.store(wc, r0, r1, nil)
	}
	return pruned, nil
}

// pruneGlobal applies one unstructured threshold over all layers.
func pruneGlobal(ctx context.Context, layers []Layer, opt Options, cal calib.Stats, outs [][]float32, reps []LayerReport) error {
	start := time.Now()
	mats := make([][]float32, len(layers))
	shapes := make([]Shape, len(layers))
	scores := make([][]float64, len(layers))
	for i, l := range layers {
		if err := ctx.Err(); err != nil {
			return err
		}
		reps[i] = LayerReport{Name: l.Name, Layout: l.Layout, Shape: append([]int64(nil), l.Dims...), Params: len(l.Data), ZerosBefore: CountZeros(l.Data)}
		w, sh, err := ToMatrix(l.Data, l.Layout, l.Dims)
		if err != nil {
			return fmt.Errorf("sparsity: %s: %w", l.Name, err)
		}
		var gram []float64
		var n int64
		if opt.Method.NeedsCalibration() {
			if gram, n, err = layerCalibration(cal, opt.Method, l.Name, sh); err != nil {
				return err
			}
		}
		s, err := layerScores(w, sh, opt.Method, gram, n)
		if err != nil {
			return fmt.Errorf("sparsity: %s: %w", l.Name, err)
		}
		mats[i], shapes[i], scores[i] = w, sh, s
	}
	masks, err := MaskGlobal(scores, opt.Sparsity)
	if err != nil {
		return err
	}
	for i, l := range layers {
		outs[i] = FromMatrix(Apply(mats[i], masks[i]), l.Layout, shapes[i])
		reps[i].Pruned = countTrue(masks[i])
		reps[i].Zeros = CountZeros(outs[i])
		reps[i].ZeroFraction = float64(reps[i].Zeros) / float64(len(outs[i]))
		reps[i].Seconds = time.Since(start).Seconds() / float64(len(layers))
	}
	return nil
}

// layerScores scores w by the method: |W| (magnitude) or Wanda's
// |W_ij|·√(sq_j/n) with sq the squared column norms of the layer's input.
func layerScores(w []float32, sh Shape, m Method, sq []float64, n int64) ([]float64, error) {
	if m == Wanda {
		return WandaScores(w, sh, sq, n)
	}
	return MagnitudeScores(w), nil
}

// layerCalibration fetches and checks what method m reads of a layer's
// input: the squared column norms (Wanda) or XᵀX (SparseGPT).
func layerCalibration(cal calib.Stats, m Method, name string, sh Shape) ([]float64, int64, error) {
	var v []float64
	var d int
	var n int64
	var err error
	if m == Wanda {
		v, n, err = cal.SquaredColumnNorms(name)
		d = len(v)
	} else {
		v, d, n, err = cal.InputGram(name)
		if err == nil && len(v) != d*d {
			return nil, 0, fmt.Errorf("sparsity: %s: calibration XᵀX of %d values for d=%d", name, len(v), d)
		}
	}
	if err != nil {
		return nil, 0, fmt.Errorf("sparsity: %s: calibration: %w", name, err)
	}
	if d != sh.Cols {
		return nil, 0, fmt.Errorf("sparsity: %s: calibration statistics are for %d inputs, the weight's reduction size is %d", name, d, sh.Cols)
	}
	if n <= 0 {
		return nil, 0, fmt.Errorf("sparsity: %s: calibration saw no samples", name)
	}
	return v, n, nil
}

func countTrue(b []bool) int {
	n := 0
	for _, v := range b {
		if v {
			n++
		}
	}
	return n
}
