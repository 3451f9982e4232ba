package quant

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/onnxio"
)

// Options configures Quantize. Weights must be set; the zero value of every
// other field is the default of the onnxpost command line (and of the
// quantize transforms' declared parameters): int8 weights per channel and
// symmetric, int4 weights asymmetric in blocks of 32 by round to nearest.
type Options struct {
	// Weights is the weight type: "int8", "int4", "fp16" or "bf16".
	Weights string
	// Format is "qdq" (DequantizeLinear on quantized initializers; the
	// default for int8) or "matmulnbits" (com.microsoft MatMulNBits; the
	// default for int4).
	Format string
	// PerTensor quantizes int8 weights with one scale per tensor instead
	// of one per output channel (the default: MatMul B [K, N] → axis 1,
	// Gemm B → axis 0 with transB else 1, Conv W → axis 0).
	PerTensor bool
	// Symmetry chooses symmetric weights (zero points of 0 for int8,
	// 2^(bits−1) for int4) or asymmetric ones; the zero value is the
	// scheme's default (int8 symmetric, int4 asymmetric).
	Symmetry Symmetry
	// BlockSize is the int4 block size along K (default 32).
	BlockSize int
	// Bits gives block-wise weights their own bit widths (Weights "int4"
	// only): weight initializer name → 2, 4 or 8. Weights absent from the
	// map get 4 bits. Every name must be a MatMul or Gemm weight that
	// Quantize quantizes (not excluded, not skipped), else Quantize fails
	// with ErrOptions. With Format "matmulnbits" each weight becomes a
	// MatMulNBits with its own bits attribute (ONNX Runtime 1.30's CPU
	// kernel runs 2, 4 and 8 bits); with Format "qdq" (opset-21 blocked
	// DequantizeLinear) 4 bits are stored as int4/uint4 and 8 bits as
	// int8/uint8, and 2 bits are refused (int2 needs opset 25).
	Bits map[string]int
	// BitsOnly quantizes only the weights named in Bits; the other
	// weights stay float32 (listed in Report.Skipped). Use it to write
	// the result of a search over a subset of the weights exactly.
	BitsOnly bool
	// Method is "rtn" (default) or "gptq" for int4.
	Method string
	// ActOrder, Damp and LazyBlock configure GPTQ (see GPTQOptions).
	ActOrder  bool
	Damp      float64
	LazyBlock int
	// AccuracyLevel is MatMulNBits' accuracy_level (0: not set).
	AccuracyLevel int
	// Activations is "" (weights only), "dynamic" (int8 activations
	// quantized at run time: DynamicQuantizeLinear + MatMulInteger) or
	// "int8" (static QuantizeLinear/DequantizeLinear pairs from
	// calibration ranges).
	Activations string
	// Calibrate and Percentile choose how static activation ranges are
	// derived from Stats (Percentile default 99.999).
	Calibrate  CalibMethod
	Percentile float64
	// ExcludeOps lists op types left in float (for fp16/bf16: kept in
	// fp32; nil selects DefaultFloat16BlockList).
	ExcludeOps []string
	// Exclude leaves weights or nodes whose name matches in float.
	Exclude *regexp.Regexp
	// Calibration gives XᵀX per weight for GPTQ (calib.Stats.InputGram).
	Calibration calib.Stats
	// Stats gives activation histograms for static activation
	// quantization (calib.Stats.ActivationHistogram). One calib.Stats
	// (evalharness.Capture's) usually serves both fields.
	Stats calib.Stats
}

// LayerReport describes one quantized weight.
type LayerReport struct {
	Weight string  `json:"weight"`
	Node   string  `json:"node"`
	Op     string  `json:"op"`
	Shape  []int64 `json:"shape"`
	// Scheme is e.g. "int8 per-channel symmetric qdq" or
	// "int4 block 32 asymmetric matmulnbits gptq".
	Scheme string `json:"scheme"`
	// Bits is the bit width of a block-wise weight (2, 4 or 8; 0 for the
	// other modes).
	Bits int `json:"bits,omitempty"`
	// RelError is ‖W − Ŵ‖/‖W‖ of the dequantized weight.
	RelError float64 `json:"rel_error"`
	// Scales summarises the absolute scales.
	ScaleMin  float64 `json:"scale_min"`
	ScaleMax  float64 `json:"scale_max"`
	ScaleMean float64 `json:"scale_mean"`
	Scales    int     `json:"scales"`
	// Clamped counts values outside the fp16 range (fp16 only).
	Clamped int64 `json:"clamped,omitempty"`
}

// Skip records a candidate weight or node left unchanged and why.
type Skip struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// Report summarises a Quantize run.
type Report struct {
	Mode    string        `json:"mode"`
	Layers  []LayerReport `json:"layers"`
	Skipped []Skip        `json:"skipped,omitempty"`
	// Activations lists the activation tensors given QDQ pairs (static)
	// or quantized at run time (dynamic).
	Activations []string `json:"activations,omitempty"`
	// WeightBytesBefore/After are the initializers' total data sizes.
	WeightBytesBefore int64 `json:"weight_bytes_before"`
	WeightBytesAfter  int64 `json:"weight_bytes_after"`
	// Clamped counts fp32 values beyond the fp16 range (±65504) that were
	// clamped (fp16 only).
	Clamped int64 `json:"clamped,omitempty"`
	// MeanRelError is the parameter-weighted mean of RelError.
	MeanRelError float64 `json:"mean_rel_error"`
	// Notes lists changes beyond the weights (an opset upgrade).
	Notes []string `json:"notes,omitempty"`
}

// quantizedOps are op types whose presence means a model is already
// quantized.
var quantizedOps = []string{
	"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger",
	"QLinearMatMul", "QLinearConv", "QLinearAdd", "QLinearMul", "QGemm", "QAttention",
	"DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulNBits", "MatMulBnb4", "GatherBlockQuantized",
	"QLinearSigmoid", "QLinearLeakyRelu", "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearConcat",
	"QLinearSoftmax", "DynamicQuantizeLSTM",
}

// QuantizedOps returns the quantization ops present in m with their counts
// (e.g. "DequantizeLinear×4"), empty when m holds none.
func QuantizedOps(m *onnxio.Model) []string {
	var out []string
	counts := m.OpCounts()
	for op, c := range counts {
		base := op[strings.LastIndex(op, ".")+1:]
		for _, q := range quantizedOps {
			if base == q {
				out = append(out, fmt.Sprintf("%s×%d", op, c))
			}
		}
	}
	sort.Strings(out)
	return out
}

// Validate checks the options without a model.
func (o Options) Validate() error {
	switch o.Weights {
	case "int8":
		if o.Format != "" && o.Format != "qdq" {
			return fmt.Errorf("%w: int8 weights support the format parameter qdq only, got %q", ErrOptions, o.Format)
		}
		if o.Method != "" && o.Method != "rtn" {
			return fmt.Errorf("%w: the method parameter %s applies to int4", ErrOptions, o.Method)
		}
	case "int4":
		if o.Format != "" && o.Format != "qdq" && o.Format != "matmulnbits" {
			return fmt.Errorf("%w: the format parameter is %q (want matmulnbits or qdq)", ErrOptions, o.Format)
		}
		bs := o.BlockSize
		if bs == 0 {
			bs = 32
		}
		if !ValidBlockSize(bs) {
			return fmt.Errorf("%w: got %d", ErrBlockSize, bs)
		}
		if o.Method != "" && o.Method != "rtn" && o.Method != "gptq" {
			return fmt.Errorf("%w: the method parameter is %q (want rtn or gptq)", ErrOptions, o.Method)
		}
		if o.Method == "gptq" && o.Calibration == nil {
			return fmt.Errorf("%w: the method parameter gptq needs calibration data (Options.Calibration)", ErrCalibration)
		}
		if o.Activations != "" {
			return fmt.Errorf("%w: int4 weights are weight-only; the activations parameter applies to int8", ErrOptions)
		}
		if err := o.validateBits(); err != nil {
			return err
		}
	case "fp16", "bf16":
		if o.Activations != "" || o.Method != "" && o.Method != "rtn" {
			return fmt.Errorf("%w: the weights parameter %s takes neither the activations parameter nor the method parameter", ErrOptions, o.Weights)
		}
	default:
		return fmt.Errorf("%w: the weights parameter is %q (want int8, int4, fp16 or bf16)", ErrOptions, o.Weights)
	}
	if o.BitsOnly && len(o.Bits) == 0 {
		return fmt.Errorf("%w: BitsOnly without a per-weight bit allocation", ErrOptions)
	}
	if len(o.Bits) > 0 && o.Weights != "int4" {
		return fmt.Errorf("%w: per-weight bit widths apply to block-wise weights (the weights parameter int4), not %s", ErrOptions, o.Weights)
	}
	switch o.Activations {
	case "", "dynamic":
	case "int8":
		if o.Stats == nil {
			return fmt.Errorf("%w: the activations parameter int8 needs calibration data (Options.Stats)", ErrCalibration)
		}
	default:
		return fmt.Errorf("%w: the activations parameter is %q (want dynamic or int8)", ErrOptions, o.Activations)
	}
	if o.Percentile != 0 && !(o.Percentile > 50 && o.Percentile <= 100) {
		return fmt.Errorf("%w: percentile %g not in (50, 100]", ErrOptions, o.Percentile)
	}
	return nil
}

// validateBits checks the per-weight bit widths against the int4 format.
func (o Options) validateBits() error {
	names := make([]string, 0, len(o.Bits))
	for name := range o.Bits {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		b := o.Bits[name]
		if b != 2 && b != 4 && b != 8 {
			return fmt.Errorf("%w: %d for weight %s (want 2, 4 or 8)", ErrBits, b, name)
		}
		if b == 2 && o.Format == "qdq" {
			return fmt.Errorf("%w: 2 bits for weight %s with the format parameter qdq: blocked DequantizeLinear supports int4/int8 in opset 21 and int2 only from opset 25; set the format parameter to matmulnbits", ErrBits, name)
		}
	}
	return nil
}

// mixedBits describes a per-weight bit allocation, e.g. "2-bit×3 4-bit×5".
func mixedBits(count map[int]int) string {
	var parts []string
	for _, b := range []int{2, 4, 8} {
		if count[b] > 0 {
			parts = append(parts, fmt.Sprintf("%d-bit×%d", b, count[b]))
		}
	}
	return strings.Join(parts, " ")
}

// target is a weight that will be quantized, with its consumer.
type target struct {
	w    onnxio.Weight
	node onnxio.Node
}

func (o Options) excludedOp(op string) bool {
	for _, e := range o.ExcludeOps {
		if strings.EqualFold(e, op) {
			return true
		}
	}
	return false
}

// targets lists the weights of MatMul/Gemm/Conv that the options select.
// foldConstantTargets turns the Constant nodes of m into initializers
// when one of them holds a MatMul, Gemm or Conv weight, so that int8 and
// int4 quantize it like the others (Quantize does it first; the lists of
// what to calibrate, ActivationTensors and GramWeights, on a copy).
func foldConstantTargets(m *onnxio.Model) error {
	ws, err := m.Weights()
	if err != nil {
		return err
	}
	for _, w := range ws {
		if w.Constant && (w.Role == onnxio.RoleMatMulB || w.Role == onnxio.RoleGemmB || w.Role == onnxio.RoleConvW) {
			_, err := m.FoldConstantWeights()
			return err
		}
	}
	return nil
}

// calibrationTargets returns the targets of o on a derived copy of m with
// its Constant weights folded as Quantize folds them, and that copy: what
// to calibrate is listed from the model Quantize will quantize.
func calibrationTargets(m *onnxio.Model, o Options) (*onnxio.Model, []target, error) {
	f := m.Derive()
	if err := foldConstantTargets(f); err != nil {
		return nil, nil, err
	}
	ts, err := targets(f, o, &Report{})
	return f, ts, err
}

func targets(m *onnxio.Model, o Options, rep *Report) ([]target, error) {
	ws, err := m.Weights()
	if err != nil {
		return nil, err
	}
	nodes := m.Nodes()
	var out []target
	for _, w := range ws {
		if w.Role != onnxio.RoleMatMulB && w.Role != onnxio.RoleGemmB && w.Role != onnxio.RoleConvW {
			continue
		}
		skip := func(reason string) { rep.Skipped = append(rep.Skipped, Skip{Name: w.Name, Reason: reason}) }
		if w.NodeIndex < 0 || w.NodeIndex >= len(nodes) {
			return nil, fmt.Errorf("weight %s: consumer index %d out of range", w.Name, w.NodeIndex)
		}
		n := nodes[w.NodeIndex] // by position: nodes may be unnamed
		switch {
		case o.excludedOp(w.Op):
			skip("op " + w.Op + " excluded")
			continue
		case o.Exclude != nil && (o.Exclude.MatchString(w.Name) || o.Exclude.MatchString(w.Node)):
			skip("name matches the exclude pattern")
			continue
		case w.Quantized:
			skip(w.Special())
			continue
		case w.DType != onnxio.Float:
			skip("not float32 (" + w.DType.String() + ")")
			continue
		case len(w.Via) > 0:
			skip("reaches " + w.Op + " through " + strings.Join(w.Via, ","))
			continue
		case w.Consumers != 1:
			skip(fmt.Sprintf("shared by %d nodes", w.Consumers))
			continue
		case w.Constant:
			skip("held in a Constant node (fold it first)")
			continue
		}
		if w.Role == onnxio.RoleMatMulB && len(w.Shape) != 2 {
			skip(fmt.Sprintf("MatMul B of rank %d", len(w.Shape)))
			continue
		}
		if w.Role == onnxio.RoleGemmB && (n.Int("transA", 0) != 0 || n.Float("alpha", 1) != 1) {
			skip("Gemm with transA or alpha ≠ 1")
			continue
		}
		out = append(out, target{w: w, node: n})
	}
	return out, nil
}

// weightBytes sums the data sizes of all initializers.
func weightBytes(m *onnxio.Model) int64 {
	var s int64
	for _, name := range m.Initializers() {
		dt, shape, err := m.InitializerInfo(name)
		if err != nil {
			continue
		}
		n, err := onnxio.NumElements(shape)
		if err != nil {
			continue
		}
		if b := dt.ByteSize(n); b > 0 {
			s += b
		}
	}
	return s
}

// Quantize returns a quantized copy of m (m itself is not changed) and a
// report. Models that already hold quantization ops are refused with
// ErrAlreadyQuantized. It stops with ctx's error, checked before each
// weight, when ctx is cancelled.
func Quantize(ctx context.Context, m *onnxio.Model, o Options) (*onnxio.Model, *Report, error) {
	if err := o.Validate(); err != nil {
		return nil, nil, err
	}
	if q := QuantizedOps(m); len(q) > 0 {
		return nil, nil, fmt.Errorf("%w: it holds %s", ErrAlreadyQuantized, strings.Join(q, ", "))
	}
	out := m.Derive()
	out.EnsureNodeNames()
	switch o.Weights {
	case "fp16", "bf16":
		// Every weight held in a Constant node becomes an initializer
		// first, so that it is converted like the others.
		if _, err := out.FoldConstantWeights(); err != nil {
			return nil, nil, err
		}
	case "int8", "int4":
		if err := foldConstantTargets(out); err != nil {
			return nil, nil, err
		}
	}
	rep := &Report{WeightBytesBefore: weightBytes(out)}
	var err error
	switch o.Weights {
	case "int8":
		err = quantizeInt8(ctx, out, o, rep)
	case "int4":
		err = quantizeInt4(ctx, out, o, rep)
	case "fp16", "bf16":
		if err = ctx.Err(); err == nil {
			err = convertFloat16(out, o, rep)
		}
	}
	if err != nil {
		return nil, nil, err
	}
	rep.WeightBytesAfter = weightBytes(out)
	var num, den float64
	for _, l := range rep.Layers {
		p := 1.0
		for _, d := range l.Shape {
			p *= float64(d)
		}
		num += p * l.RelError
		den += p
	}
	if den > 0 {
		rep.MeanRelError = num / den
	}
	recordProvenance(out, rep)
	return out, rep, nil
}

func scaleStats(l *LayerReport, scales []float32) {
	l.Scales = len(scales)
	l.ScaleMin = math.Inf(1)
	var s float64
	for _, v := range scales {
		a := math.Abs(float64(v))
		l.ScaleMin = math.Min(l.ScaleMin, a)
		l.ScaleMax = math.Max(l.ScaleMax, a)
		s += a
	}
	if len(scales) > 0 {
		l.ScaleMean = s / float64(len(scales))
	} else {
		l.ScaleMin = 0
	}
}

func ints64(shape []int) []int64 {
	out := make([]int64, len(shape))
	for i, d := range shape {
		out[i] = int64(d)
	}
	return out
}

func ints(shape []int64) []int {
	out := make([]int, len(shape))
	for i, d := range shape {
		out[i] = int(d)
	}
	return out
}

func int8Bytes(q []int8) []byte {
	b := make([]byte, len(q))
	for i, v := range q {
		b[i] = byte(v)
	}
	return b
}

// Symmetry chooses symmetric or asymmetric weight quantization.
type Symmetry int8

// The symmetries.
const (
	// DefaultSymmetry is the scheme's default: symmetric int8 weights
	// (ONNX Runtime's quantize_static default), asymmetric int4 weights
	// (ONNX Runtime's MatMulNBitsQuantizer).
	DefaultSymmetry Symmetry = iota
	// Symmetric weights have zero points of 0 (int8) or 2^(bits−1) (int4).
	Symmetric
	// Asymmetric weights have zero points from each range's minimum.
	Asymmetric
)

// SymmetryOf returns Symmetric for true, Asymmetric for false.
func SymmetryOf(symmetric bool) Symmetry {
	if symmetric {
		return Symmetric
	}
	return Asymmetric
}

// symmetric reports whether o's weights are symmetric.
func (o Options) symmetric() bool {
	switch o.Symmetry {
	case Symmetric:
		return true
	case Asymmetric:
		return false
	}
	return o.Weights == "int8"
}

func symName(sym bool) string {
	if sym {
		return "symmetric"
	}
	return "asymmetric"
}

func readFloat(m *onnxio.Model, name string) ([]float32, error) {
	t, err := m.Initializer(name)
	if err != nil {
		return nil, err
	}
	return t.Float32()
}

// transpose returns the [c, r] transpose of x [r, c].
func transpose(x []float32, r, c int) []float32 {
	out := make([]float32, len(x))
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			out[j*r+i] = x[i*c+j]
		}
	}
	return out
}
