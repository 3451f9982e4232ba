package evalharness

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"

	"github.com/onnxpost/onnxpost/onnxio"
)

// CaptureOptions configure Capture.
type CaptureOptions struct {
	// Grams lists weight initializers (MatMul B, Gemm B, Conv W) whose
	// consumer's input Gram matrix XᵀX to accumulate (see Stats.InputGram).
	Grams []string
	// Tensors lists value names (node outputs or graph inputs) whose
	// min, max and, with Bins > 0, histogram to collect.
	Tensors []string
	// Bins is the number of histogram bins per tensor (0: no histograms).
	// Histograms take a second pass over the data: the first finds each
	// tensor's range.
	Bins int
	// Batch is the number of samples per run (default 64).
	Batch int
	// Session configures the ONNX Runtime session.
	Session SessionOptions
}

// Stats holds activation statistics accumulated over a dataset, with memory
// bounded by one batch of activations plus the statistics themselves. It
// implements the calibration interface the compression and quantization
// packages declare: InputGram(weight string) ([]float64, int, int64, error).
type Stats struct {
	// Samples is the number of dataset samples seen.
	Samples int64
	grams   map[string]*gram
	tensors map[string]*TensorStats
}

// gram accumulates XᵀX of one consumer's input.
type gram struct {
	node   onnxio.Node
	op     string
	input  string // activation value name
	d      int
	transA bool
	conv   *convGeom
	xtx    []float64 // d×d, upper triangle accumulated, mirrored at the end
	n      int64
}

// convGeom is the geometry of a 2-D Conv's im2col view.
type convGeom struct {
	c, kh, kw              int
	sh, sw, dh, dw         int
	padT, padL, padB, padR int
	autoPad                string
	oneD                   bool // a 1-D Conv seen as 2-D with a height of 1
}

// TensorStats holds the statistics of one tensor over the dataset.
type TensorStats struct {
	// Name is the value name.
	Name string
	// Count is the number of elements seen; NaNs is how many were NaN and
	// Infs how many were +Inf or −Inf. Both are excluded from the other
	// statistics (Min, Max, Mean, Std, Hist); a caller that needs finite
	// activations (static quantization) checks them, see Finite.
	Count, NaNs, Infs int64
	// Min and Max are the extreme values; AbsMax is max(|Min|, |Max|).
	Min, Max, AbsMax float64
	// Mean and Std are the mean and standard deviation of the elements.
	Mean, Std float64
	// Hist is the histogram over [Min, Max] (see Histogram), or nil
	// without Bins.
	Hist *Histogram

	sum, sumSq float64
}

// Histogram counts values in equal-width bins over [Lo, Hi]; the last bin
// includes Hi, and a tensor whose values are all equal gets the range
// [v-0.5, v+0.5] (numpy.histogram's conventions).
type Histogram struct {
	Lo, Hi float64
	Counts []int64
}

// Edges returns the len(Counts)+1 bin edges.
func (h *Histogram) Edges() []float64 {
	n := len(h.Counts)
	e := make([]float64, n+1)
	step := (h.Hi - h.Lo) / float64(n)
	for i := range e {
		e[i] = float64(i)*step + h.Lo // numpy.linspace
	}
	e[n] = h.Hi
	return e
}

// Total returns the number of values counted.
func (h *Histogram) Total() int64 {
	var t int64
	for _, c := range h.Counts {
		t += c
	}
	return t
}

// Quantile returns the value below which a fraction q (0..1) of the counted
// values lie, interpolating linearly inside the bin.
func (h *Histogram) Quantile(q float64) float64 {
	total := h.Total()
	if total == 0 {
		return math.NaN()
	}
	target := q * float64(total)
	cum := 0.0
	e := h.Edges()
	for i, c := range h.Counts {
		if cum+float64(c) >= target && c > 0 {
			return e[i] + (e[i+1]-e[i])*(target-cum)/float64(c)
		}
		cum += float64(c)
	}
	return h.Hi
}

func (h *Histogram) add(v []float64) {
	n := len(h.Counts)
	w := h.Hi - h.Lo
	edges := h.Edges()
	norm := float64(n) / w
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) || x < h.Lo || x > h.Hi {
			continue
		}
		i := n - 1
		if w > 0 && !math.IsInf(w, 0) {
			// numpy.histogram's index computation and edge corrections.
			i = int((x - h.Lo) * norm)
			if i >= n {
				i = n - 1
			}
			i = max(i, 0) // (x − Lo)·norm is never negative; a guard all the same
			if i > 0 && x < edges[i] {
				i--
			} else if i != n-1 && x >= edges[i+1] {
				i++
			}
		}
		h.Counts[i]++
	}
}

// ErrCapture reports a capture request the model does not support.
var ErrCapture = errors.New("evalharness: cannot capture activations")

// Capture runs m over ds with the activations that opt asks for exposed as
// graph outputs (on a copy of the model), and accumulates their statistics
// batch by batch in float64. It stops with ctx's error, checked before
// every batch, when ctx is cancelled.
//
// With an attention_mask input and an [N, T] mask in the dataset, the
// positions it marks 0 (padding) are left out of the Grams and tensor
// statistics of every activation that has one row per token position.
//
// Non-finite activations: a Gram refuses them (ErrNonFinite); tensor
// statistics count them (TensorStats.NaNs, Infs) and leave them out of the
// range and histogram, so the caller decides (TensorStats.Finite).
func Capture(ctx context.Context, m *onnxio.Model, ds *Dataset, opt CaptureOptions) (*Stats, error) {
	st := &Stats{grams: map[string]*gram{}, tensors: map[string]*TensorStats{}}
	wm, err := m.WeightMap()
	if err != nil {
		return nil, err
	}
	nodes := m.Nodes() // indexed by Weight.NodeIndex: works with unnamed nodes too
	for _, name := range opt.Grams {
		g, err := newGram(m, wm, nodes, name)
		if err != nil {
			return nil, err
		}
		st.grams[name] = g
	}
	for _, name := range opt.Tensors {
		st.tensors[name] = &TensorStats{Name: name, Min: math.Inf(1), Max: math.Inf(-1)}
	}
	// Values to fetch: graph inputs come from the batch itself.
	isInput := map[string]bool{}
	for _, in := range m.Inputs() {
		isInput[in.Name] = true
	}
	var fetch []string
	seen := map[string]bool{}
	need := func(v string) {
		if !isInput[v] && !seen[v] {
			seen[v] = true
			fetch = append(fetch, v)
		}
	}
	for _, name := range opt.Grams {
		need(st.grams[name].input)
	}
	for _, name := range opt.Tensors {
		need(name)
	}
	sort.Strings(fetch)
	var sess SessionRunner
	var runner Runner
	if len(fetch) > 0 {
		c := m.Derive()
		for _, v := range fetch {
			vi, ok := c.ValueInfo(v)
			if !ok {
				vi = onnxio.ValueInfo{Name: v}
			}
			c.AddOutput(vi)
		}
		b, err := c.Bytes()
		if err != nil {
			return nil, err
		}
		if sess, err = OpenSession(OpenRequest{Model: b, Outputs: fetch}, opt.Session); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCapture, err)
		}
		defer sess.Close()
		runner = sess
		if err := ds.Check(sess.Inputs()); err != nil {
			return nil, err
		}
	} else {
		if err := ds.Check(ModelInputs(m)); err != nil {
			return nil, err
		}
	}
	batch, err := ds.BatchSize(ModelInputs(m), opt.Batch)
	if err != nil {
		return nil, err
	}
	values := func(i, j int64) (map[string][]float64, map[string][]int64, error) {
		vals := map[string][]float64{}
		shapes := map[string][]int64{}
		if runner != nil {
			outs, err := runner.Run(feed(runner, ds, i, j))
			if err != nil {
				return nil, nil, err
			}
			for k, o := range outs {
				v, err := o.Float64()
				if err != nil {
					return nil, nil, fmt.Errorf("%w: %s: %v", ErrCapture, fetch[k], err)
				}
				vals[fetch[k]], shapes[fetch[k]] = v, o.Shape
			}
		}
		for name := range isInput {
			if a, ok := ds.Inputs[name]; ok && (seen[name] || st.tensors[name] != nil || st.usesInput(name)) {
				s := a.Slice(i, j)
				v, err := s.Float64()
				if err != nil {
					return nil, nil, err
				}
				vals[name], shapes[name] = v, s.Shape
			}
		}
		return vals, shapes, nil
	}
	// Token positions the attention_mask marks as padding stay out of
	// every statistic: activations with one row per position lose those
	// rows (KeepRows).
	tokenMask := func(i, j int64) []bool {
		if !isInput["attention_mask"] {
			return nil
		}
		return ds.TokenMask(i, j)
	}
	for i := int64(0); i < ds.N; i += batch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		j := min(i+batch, ds.N)
		vals, shapes, err := values(i, j)
		if err != nil {
			return nil, err
		}
		mask := tokenMask(i, j)
		for _, name := range opt.Grams {
			g := st.grams[name]
			x, shape := vals[g.input], shapes[g.input]
			if g.conv == nil && !g.transA {
				x, shape = KeepRows(x, shape, mask)
			}
			if err := g.add(x, shape); err != nil {
				return nil, fmt.Errorf("%w: %s: %w", ErrCapture, name, err)
			}
		}
		for _, ts := range st.tensors {
			x, _ := KeepRows(vals[ts.Name], shapes[ts.Name], mask)
			ts.addRange(x)
		}
		st.Samples += j - i
	}
	for _, ts := range st.tensors {
		ts.finish()
	}
	if opt.Bins > 0 && len(opt.Tensors) > 0 {
		for _, ts := range st.tensors {
			lo, hi := ts.Min, ts.Max
			if ts.Count == ts.NaNs+ts.Infs {
				lo, hi = 0, 0
			}
			if lo == hi { // numpy.histogram widens an empty range the same way
				lo, hi = lo-0.5, hi+0.5
			}
			ts.Hist = &Histogram{Lo: lo, Hi: hi, Counts: make([]int64, opt.Bins)}
		}
		for i := int64(0); i < ds.N; i += batch {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			j := min(i+batch, ds.N)
			vals, shapes, err := values(i, j)
			if err != nil {
				return nil, err
			}
			mask := tokenMask(i, j)
			for _, ts := range st.tensors {
				x, _ := KeepRows(vals[ts.Name], shapes[ts.Name], mask)
				ts.Hist.add(x)
			}
		}
	}
	for _, g := range st.grams {
		g.mirror()
	}
	return st, nil
}

func (st *Stats) usesInput(name string) bool {
	for _, g := range st.grams {
		if g.input == name {
			return true
		}
	}
	return false
}

// ModelInputs describes m's graph inputs that are not initializers as
// Dataset.Check takes them (symbolic dimensions -1, with their names), so
// that a dataset can be checked against a model before any session exists.
func ModelInputs(m *onnxio.Model) []TensorInfo {
	ins := m.Inputs()
	infos := make([]TensorInfo, len(ins))
	for i, in := range ins {
		infos[i] = TensorInfo{Name: in.Name, DType: in.DType, Shape: dimsOf(in.Shape), DimParams: paramsOf(in.Shape)}
	}
	return infos
}

// dimsOf converts a value's dims (-1 for symbolic or unknown ones); nil
// (unknown rank) stays nil.
func dimsOf(ds []onnxio.Dim) []int64 {
	if ds == nil {
		return nil
	}
	out := make([]int64, len(ds))
	for i, d := range ds {
		out[i] = d.Value
		if d.Param != "" || d.Value <= 0 {
			out[i] = -1
		}
	}
	return out
}

func newGram(m *onnxio.Model, wm map[string]onnxio.Weight, nodes []onnxio.Node, name string) (*gram, error) {
	w, ok := wm[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a weight of the model", ErrCapture, name)
	}
	if w.NodeIndex < 0 || w.NodeIndex >= len(nodes) {
		return nil, fmt.Errorf("%w: %q has no consuming node", ErrCapture, name)
	}
	n := nodes[w.NodeIndex]
	g := &gram{node: n, op: w.Op, input: n.Input(0)}
	switch w.Role {
	case onnxio.RoleMatMulB:
		g.d = int(w.ReductionSize())
	case onnxio.RoleGemmB:
		g.d = int(w.ReductionSize())
		g.transA = n.Int("transA", 0) != 0
	case onnxio.RoleConvW:
		if w.Group > 1 {
			return nil, fmt.Errorf("%w: %q: grouped Conv (group %d) has no single input Gram; only group 1 is supported", ErrCapture, name, w.Group)
		}
		switch len(w.Shape) {
		case 4:
			cg := &convGeom{c: int(w.Shape[1]), kh: int(w.Shape[2]), kw: int(w.Shape[3]), sh: 1, sw: 1, dh: 1, dw: 1}
			if s := n.Ints("strides"); len(s) == 2 {
				cg.sh, cg.sw = int(s[0]), int(s[1])
			}
			if d := n.Ints("dilations"); len(d) == 2 {
				cg.dh, cg.dw = int(d[0]), int(d[1])
			}
			if p := n.Ints("pads"); len(p) == 4 {
				cg.padT, cg.padL, cg.padB, cg.padR = int(p[0]), int(p[1]), int(p[2]), int(p[3])
			}
			g.conv = cg
		case 3:
			// 1-D Conv: viewed as 2-D with a height of 1.
			cg := &convGeom{c: int(w.Shape[1]), kh: 1, kw: int(w.Shape[2]), sh: 1, sw: 1, dh: 1, dw: 1, oneD: true}
			if s := n.Ints("strides"); len(s) == 1 {
				cg.sw = int(s[0])
			}
			if d := n.Ints("dilations"); len(d) == 1 {
				cg.dw = int(d[0])
			}
			if p := n.Ints("pads"); len(p) == 2 {
				cg.padL, cg.padR = int(p[0]), int(p[1])
			}
			g.conv = cg
		default:
			return nil, fmt.Errorf("%w: %q: only 1-D and 2-D Conv are supported (weight shape %v)", ErrCapture, name, w.Shape)
		}
		cg := g.conv
		cg.autoPad = n.Str("auto_pad", "NOTSET")
		g.d = cg.c * cg.kh * cg.kw
	default:
		return nil, fmt.Errorf("%w: %q has role %s; input Grams exist for MatMul.B, Gemm.B and Conv.W", ErrCapture, name, w.Role)
	}
	if g.d <= 0 {
		return nil, fmt.Errorf("%w: %q: unknown reduction size", ErrCapture, name)
	}
	g.xtx = make([]float64, g.d*g.d)
	return g, nil
}

// im2colChunkElems bounds the im2col buffer of one Conv (float64s): the
// patches are produced and accumulated in chunks of rows. (A variable so
// that tests exercise several chunks.)
var im2colChunkElems = 1 << 20

// add accumulates one batch of the consumer's input activation. A batch
// holding NaN or ±Inf is refused (ErrNonFinite): XᵀX would carry them into
// every weight the Gram calibrates.
func (g *gram) add(x []float64, shape []int64) error {
	if x == nil {
		return fmt.Errorf("activation %q was not captured", g.input)
	}
	for i, v := range x {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%w: activation %q holds %v (element %d of the batch); an input Gram needs finite activations (do the calibration inputs hold Inf, NaN or values near the float32 limit?)", ErrNonFinite, g.input, v, i)
		}
	}
	sym := blas64.Symmetric{Uplo: blas.Upper, N: g.d, Stride: g.d, Data: g.xtx}
	switch {
	case g.conv != nil:
		return g.conv.im2col(x, shape, max(1, im2colChunkElems/g.d), func(mat []float64, rows int) {
			blas64.Syrk(blas.Trans, 1, blas64.General{Rows: rows, Cols: g.d, Stride: g.d, Data: mat}, 1, sym)
			g.n += int64(rows)
		})
	case g.transA:
		// A is [K, M] and X = Aᵀ, so XᵀX = A·Aᵀ.
		if len(shape) != 2 || int(shape[0]) != g.d {
			return fmt.Errorf("Gemm input %q has shape %v, want [%d, M] (transA)", g.input, shape, g.d)
		}
		m := int(shape[1])
		if m > 0 {
			blas64.Syrk(blas.NoTrans, 1, blas64.General{Rows: g.d, Cols: m, Stride: m, Data: x}, 1, sym)
		}
		g.n += int64(m)
	default:
		if len(shape) == 0 || int(shape[len(shape)-1]) != g.d {
			return fmt.Errorf("input %q has shape %v, want a last axis of %d", g.input, shape, g.d)
		}
		rows := len(x) / g.d
		if rows > 0 {
			blas64.Syrk(blas.Trans, 1, blas64.General{Rows: rows, Cols: g.d, Stride: g.d, Data: x}, 1, sym)
		}
		g.n += int64(rows)
	}
	return nil
}

// mirror copies the accumulated upper triangle into the lower one.
func (g *gram) mirror() {
	for i := 0; i < g.d; i++ {
		for j := i + 1; j < g.d; j++ {
			g.xtx[j*g.d+i] = g.xtx[i*g.d+j]
		}
	}
}

// im2col produces the patches of x [N, C, H, W] (or [N, C, L] for a 1-D
// Conv) as rows of length C·kh·kw, ordered channel-major then kh then kw
// (the order of W[o] flattened), with zero padding, and hands them to emit
// in chunks of at most maxRows rows (the buffer is reused).
func (cg *convGeom) im2col(x []float64, shape []int64, maxRows int, emit func(mat []float64, rows int)) error {
	if cg.oneD && len(shape) == 3 {
		shape = []int64{shape[0], shape[1], 1, shape[2]}
	}
	if len(shape) != 4 || int(shape[1]) != cg.c {
		return fmt.Errorf("Conv input shape %v, want [N, %d, H, W]", shape, cg.c)
	}
	n, c, h, w := int(shape[0]), int(shape[1]), int(shape[2]), int(shape[3])
	ekh, ekw := (cg.kh-1)*cg.dh+1, (cg.kw-1)*cg.dw+1
	pt, pl, pb, pr := cg.padT, cg.padL, cg.padB, cg.padR
	switch cg.autoPad {
	case "NOTSET", "":
	case "VALID":
		pt, pl, pb, pr = 0, 0, 0, 0
	case "SAME_UPPER", "SAME_LOWER":
		oh, ow := (h+cg.sh-1)/cg.sh, (w+cg.sw-1)/cg.sw
		th := max(0, (oh-1)*cg.sh+ekh-h)
		tw := max(0, (ow-1)*cg.sw+ekw-w)
		if cg.autoPad == "SAME_UPPER" {
			pt, pb, pl, pr = th/2, th-th/2, tw/2, tw-tw/2
		} else {
			pt, pb, pl, pr = th-th/2, th/2, tw-tw/2, tw/2
		}
	default:
		return fmt.Errorf("unsupported auto_pad %q", cg.autoPad)
	}
	oh := (h+pt+pb-ekh)/cg.sh + 1
	ow := (w+pl+pr-ekw)/cg.sw + 1
	if oh <= 0 || ow <= 0 {
		return fmt.Errorf("Conv output would be empty for input %v", shape)
	}
	d := c * cg.kh * cg.kw
	total := n * oh * ow
	buf := make([]float64, min(maxRows, total)*d)
	r := 0
	for b := 0; b < n; b++ {
		for oy := 0; oy < oh; oy++ {
			for ox := 0; ox < ow; ox++ {
				row := buf[r*d : (r+1)*d]
				k := 0
				for ch := 0; ch < c; ch++ {
					base := (b*c + ch) * h * w
					for i := 0; i < cg.kh; i++ {
						y := oy*cg.sh - pt + i*cg.dh
						for j := 0; j < cg.kw; j++ {
							xx := ox*cg.sw - pl + j*cg.dw
							if y >= 0 && y < h && xx >= 0 && xx < w {
								row[k] = x[base+y*w+xx]
							} else {
								row[k] = 0
							}
							k++
						}
					}
				}
				r++
				if r*d == len(buf) {
					emit(buf, r)
					r = 0
				}
			}
		}
	}
	if r > 0 {
		emit(buf[:r*d], r)
	}
	return nil
}

func (ts *TensorStats) addRange(v []float64) {
	for _, x := range v {
		ts.Count++
		if math.IsNaN(x) {
			ts.NaNs++
			continue
		}
		if math.IsInf(x, 0) {
			ts.Infs++
			continue
		}
		ts.Min = math.Min(ts.Min, x)
		ts.Max = math.Max(ts.Max, x)
		ts.sum += x
		ts.sumSq += x * x
	}
}

// ErrNonFinite reports captured activations that hold NaN or ±Inf where
// the statistics asked for need finite values.
var ErrNonFinite = errors.New("evalharness: non-finite activations")

// Finite returns nil when every value seen was finite, else an
// ErrNonFinite naming the tensor and how many values were NaN or infinite.
func (ts *TensorStats) Finite() error {
	if ts.NaNs == 0 && ts.Infs == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s: %d NaN and %d ±Inf among %d calibration values (do the calibration inputs hold Inf, NaN or values near the float32 limit?)",
		ErrNonFinite, ts.Name, ts.NaNs, ts.Infs, ts.Count)
}

func (ts *TensorStats) finish() {
	n := float64(ts.Count - ts.NaNs - ts.Infs)
	if n == 0 {
		ts.Min, ts.Max = math.NaN(), math.NaN()
		return
	}
	ts.AbsMax = math.Max(math.Abs(ts.Min), math.Abs(ts.Max))
	ts.Mean = ts.sum / n
	ts.Std = math.Sqrt(math.Max(0, ts.sumSq/n-ts.Mean*ts.Mean))
}

// InputGram returns XᵀX (d×d, row-major, accumulated in float64) of the
// input activation X (n rows) of the node consuming the initializer weight:
// d is K for MatMul B [K, N] and Gemm B (transB-aware), and (C/group)·kh·kw
// for Conv W through the im2col view (channel-major, then kh, then kw). The
// returned slice is the caller's to keep.
func (st *Stats) InputGram(weight string) ([]float64, int, int64, error) {
	g, ok := st.grams[weight]
	if !ok {
		return nil, 0, 0, fmt.Errorf("%w: no Gram captured for %q (list it in CaptureOptions.Grams)", ErrCapture, weight)
	}
	return append([]float64(nil), g.xtx...), g.d, g.n, nil
}

// ColumnNorms returns ‖X_j‖₂ of each input column of weight's consumer
// (the square roots of InputGram's diagonal), as Wanda uses.
func (st *Stats) ColumnNorms(weight string) ([]float64, error) {
	g, ok := st.grams[weight]
	if !ok {
		return nil, fmt.Errorf("%w: no Gram captured for %q", ErrCapture, weight)
	}
	out := make([]float64, g.d)
	for i := range out {
		out[i] = math.Sqrt(g.xtx[i*g.d+i])
	}
	return out, nil
}

// Tensor returns the statistics of a tensor listed in
// CaptureOptions.Tensors: per-tensor min/max (for static quantization's
// minmax calibration) and, with Bins, its histogram (percentile and entropy
// calibration).
func (st *Stats) Tensor(name string) (*TensorStats, bool) {
	ts, ok := st.tensors[name]
	return ts, ok
}

// GramWeights lists the weights with a captured Gram, sorted.
func (st *Stats) GramWeights() []string {
	out := make([]string, 0, len(st.grams))
	for k := range st.grams {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
