package quant

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"

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
	// Bits gives block-wise weights their own bit widths (--weights int4
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
	// Calibration gives XᵀX per weight for GPTQ.
	Calibration Calibration
	// Stats gives activation histograms for static activation
	// quantization.
	Stats ActivationStats
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
			return fmt.Errorf("%w: --weights int8 supports --format qdq only, got %q", ErrOptions, o.Format)
		}
		if o.Method != "" && o.Method != "rtn" {
			return fmt.Errorf("%w: --method %s applies to int4", ErrOptions, o.Method)
		}
	case "int4":
		if o.Format != "" && o.Format != "qdq" && o.Format != "matmulnbits" {
			return fmt.Errorf("%w: --format %q (want matmulnbits or qdq)", ErrOptions, o.Format)
		}
		bs := o.BlockSize
		if bs == 0 {
			bs = 32
		}
		if !ValidBlockSize(bs) {
			return fmt.Errorf("%w: got %d", ErrBlockSize, bs)
		}
		if o.Method != "" && o.Method != "rtn" && o.Method != "gptq" {
			return fmt.Errorf("%w: --method %q (want rtn or gptq)", ErrOptions, o.Method)
		}
		if o.Method == "gptq" && o.Calibration == nil {
			return fmt.Errorf("%w: --method gptq needs calibration data (--calib)", ErrCalibration)
		}
		if o.Activations != "" {
			return fmt.Errorf("%w: int4 weights are weight-only; --activations applies to int8", ErrOptions)
		}
		if err := o.validateBits(); err != nil {
			return err
		}
	case "fp16", "bf16":
		if o.Activations != "" || o.Method != "" && o.Method != "rtn" {
			return fmt.Errorf("%w: --weights %s takes no --activations or --method", ErrOptions, o.Weights)
		}
	default:
		return fmt.Errorf("%w: --weights %q (want int8, int4, fp16 or bf16)", ErrOptions, o.Weights)
	}
	if o.BitsOnly && len(o.Bits) == 0 {
		return fmt.Errorf("%w: BitsOnly without a per-weight bit allocation", ErrOptions)
	}
	if len(o.Bits) > 0 && o.Weights != "int4" {
		return fmt.Errorf("%w: per-weight bit widths apply to block-wise weights (--weights int4), not %s", ErrOptions, o.Weights)
	}
	switch o.Activations {
	case "", "dynamic":
	case "int8":
		if o.Stats == nil {
			return fmt.Errorf("%w: --activations int8 needs calibration data (--calib)", ErrCalibration)
		}
	default:
		return fmt.Errorf("%w: --activations %q (want dynamic or int8)", ErrOptions, o.Activations)
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
			return fmt.Errorf("%w: 2 bits for weight %s with --format qdq: blocked DequantizeLinear supports int4/int8 in opset 21 and int2 only from opset 25; use --format matmulnbits", ErrBits, name)
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
			skip("name matches --exclude")
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
	out := m.Clone()
	out.EnsureNodeNames()
	switch o.Weights {
	case "fp16", "bf16":
		// Every weight held in a Constant node becomes an initializer
		// first, so that it is converted like the others.
		if _, err := out.FoldConstantWeights(); err != nil {
			return nil, nil, err
		}
	case "int8", "int4":
		// Weights held in Constant nodes become initializers first.
		ws, err := out.Weights()
		if err != nil {
			return nil, nil, err
		}
		for _, w := range ws {
			if w.Constant && (w.Role == onnxio.RoleMatMulB || w.Role == onnxio.RoleGemmB || w.Role == onnxio.RoleConvW) {
				if _, err := out.FoldConstantWeights(); err != nil {
					return nil, nil, err
				}
				break
			}
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
	return out, rep, nil
}

// ---------------------------------------------------------------- int8

func int8Axis(w onnxio.Weight) int {
	switch w.Role {
	case onnxio.RoleMatMulB:
		return len(w.Shape) - 1
	case onnxio.RoleGemmB:
		if w.TransB {
			return 0
		}
		return 1
	}
	return 0 // Conv W [O, C/g, kh, kw]
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

// quantizeInt8 applies int8 weights (QDQ), with dynamic or static
// activations.
func quantizeInt8(ctx context.Context, m *onnxio.Model, o Options, rep *Report) error {
	if !o.PerTensor {
		note, err := upgradeOpset13(m)
		if err != nil {
			return err
		}
		if note != "" {
			rep.Notes = append(rep.Notes, note)
		}
	}
	if m.Opsets()[""] < 10 {
		return fmt.Errorf("%w: DequantizeLinear needs opset ≥ 10, the model imports %d", ErrUnsupported, m.Opsets()[""])
	}
	ts, err := targets(m, o, rep)
	if err != nil {
		return err
	}
	rep.Mode = "int8 " + map[bool]string{true: "per-channel", false: "per-tensor"}[!o.PerTensor] + " " + symName(o.symmetric()) + " qdq"
	if o.Activations != "" {
		rep.Mode += ", activations " + o.Activations
	}
	if o.Activations == "dynamic" {
		if err := quantizeDynamic(ctx, m, o, ts, rep); err != nil {
			return err
		}
		return quantizeEmbeddings(m, o, rep)
	}
	if o.Activations == "int8" {
		if err := addActivationQDQ(m, o, ts, rep); err != nil {
			return err
		}
	}
	for _, t := range ts {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := insertWeightDQ(m, o, t, rep); err != nil {
			return err
		}
	}
	if o.Activations == "" {
		if err := quantizeSubgraphWeights(m, o, rep); err != nil {
			return err
		}
	}
	return quantizeEmbeddings(m, o, rep)
}

// insertWeightDQ replaces t's float weight by int8 codes and a
// DequantizeLinear node feeding the same input slot of its consumer.
func insertWeightDQ(m *onnxio.Model, o Options, t target, rep *Report) error {
	dq, err := weightDQ(m, o, t, rep)
	if err != nil {
		return err
	}
	n, err := m.Node(t.node.Name)
	if err != nil {
		return err
	}
	n.Inputs[t.w.Slot] = dq.Outputs[0]
	if err := m.InsertNodes(dq); err != nil {
		return err
	}
	if err := m.UpdateNode(n); err != nil {
		return err
	}
	return m.RemoveInitializer(t.w.Name)
}

// weightDQ quantizes t's weight to int8, adds its initializers and returns
// the DequantizeLinear node (not yet inserted) producing the float weight.
func weightDQ(m *onnxio.Model, o Options, t target, rep *Report) (onnxio.Node, error) {
	w, err := readFloat(m, t.w.Name)
	if err != nil {
		return onnxio.Node{}, err
	}
	axis := -1
	if !o.PerTensor {
		axis = int8Axis(t.w)
	}
	l, err := QuantizeLinear(w, ints(t.w.Shape), LinearOptions{Axis: axis, Symmetric: o.symmetric()})
	if err != nil {
		return onnxio.Node{}, fmt.Errorf("%s: %w", t.w.Name, err)
	}
	base := t.w.Name
	qName, sName, zName := m.UniqueName(base+"_quantized"), m.UniqueName(base+"_scale"), m.UniqueName(base+"_zero_point")
	pShape := []int64{}
	if axis >= 0 {
		pShape = []int64{int64(len(l.Scale))}
	}
	q, err := onnxio.NewTensor(qName, onnxio.Int8, t.w.Shape, int8Bytes(l.Q))
	if err != nil {
		return onnxio.Node{}, err
	}
	s, err := onnxio.FromFloat32(sName, onnxio.Float, pShape, l.Scale)
	if err != nil {
		return onnxio.Node{}, err
	}
	z, err := onnxio.NewTensor(zName, onnxio.Int8, pShape, int8Bytes(l.ZeroPoint))
	if err != nil {
		return onnxio.Node{}, err
	}
	for _, tt := range []*onnxio.Tensor{q, s, z} {
		if err := m.SetInitializer(tt); err != nil {
			return onnxio.Node{}, err
		}
	}
	dq := onnxio.Node{
		Name: m.UniqueName(base + "_DequantizeLinear"), OpType: "DequantizeLinear",
		Inputs: []string{qName, sName, zName}, Outputs: []string{m.UniqueName(base + "_dequantized")},
	}
	if axis >= 0 {
		dq.SetAttr(onnxio.AttrInt("axis", int64(axis)))
	}
	lr := LayerReport{Weight: t.w.Name, Node: t.node.Name, Op: t.w.Op, Shape: t.w.Shape,
		Scheme:   fmt.Sprintf("int8 %s %s qdq", map[bool]string{true: "per-channel", false: "per-tensor"}[axis >= 0], symName(o.symmetric())),
		RelError: RelError(w, l.Dequantize())}
	scaleStats(&lr, l.Scale)
	rep.Layers = append(rep.Layers, lr)
	return dq, nil
}

func readFloat(m *onnxio.Model, name string) ([]float32, error) {
	t, err := m.Initializer(name)
	if err != nil {
		return nil, err
	}
	return t.Float32()
}

// ActivationTensors returns the activation tensors whose histograms
// calibration needs: the data inputs of the MatMul, Gemm and Conv nodes
// whose weights the options select and, for static quantization
// (Activations "int8"), their outputs unless they are graph outputs (so that
// ONNX Runtime can fuse DequantizeLinear → op → QuantizeLinear into its
// integer kernels, as for the QDQ models of its own quantizer).
func ActivationTensors(m *onnxio.Model, o Options) ([]string, error) {
	ts, err := targets(m, o, &Report{})
	if err != nil {
		return nil, err
	}
	return activationTensors(m, o, ts), nil
}

// GramWeights returns the weights whose input Gram matrices XᵀX GPTQ
// needs (the MatMul and Gemm weights the options select).
func GramWeights(m *onnxio.Model, o Options) ([]string, error) {
	ts, err := targets(m, o, &Report{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, t := range ts {
		if t.w.Role != onnxio.RoleConvW {
			out = append(out, t.w.Name)
		}
	}
	return out, nil
}

func activationTensors(m *onnxio.Model, o Options, ts []target) []string {
	seen := map[string]bool{}
	var out []string
	for _, a := range activationPlan(m, o, ts) {
		if !seen[a.stats] {
			seen[a.stats] = true
			out = append(out, a.stats)
		}
	}
	return out
}

// actQDQ is an activation tensor to quantize and the tensor whose
// statistics give its range.
type actQDQ struct{ tensor, stats string }

// activationPlan lists the activations to quantize: inputs of the target
// nodes and, for static quantization, their outputs that are not graph
// outputs. An output read only by a Relu takes the Relu output's range:
// the negative values it then saturates to 0 are the ones Relu zeroes, so
// nothing is lost and no code is spent on them (ONNX Runtime's quantizer
// does the same).
func activationPlan(m *onnxio.Model, o Options, ts []target) []actQDQ {
	graphOut := map[string]bool{}
	for _, v := range m.Outputs() {
		graphOut[v.Name] = true
	}
	consumers := map[string][]onnxio.Node{}
	for _, n := range m.Nodes() {
		for _, in := range n.Inputs {
			consumers[in] = append(consumers[in], n)
		}
	}
	seen := map[string]bool{}
	var out []actQDQ
	add := func(a string, output bool) {
		if a == "" || seen[a] || graphOut[a] {
			return
		}
		seen[a] = true
		st := a
		if c := consumers[a]; output && len(c) == 1 && c[0].OpType == "Relu" && !graphOut[a] {
			st = c[0].Outputs[0]
		}
		out = append(out, actQDQ{tensor: a, stats: st})
	}
	for _, t := range ts {
		add(t.node.Inputs[0], false)
	}
	if o.Activations == "int8" {
		for _, t := range ts {
			add(t.node.Outputs[0], true)
		}
	}
	return out
}

// addActivationQDQ inserts one QuantizeLinear/DequantizeLinear pair (int8,
// per tensor) on each activation tensor of activationTensors; every
// consumer of the tensor then reads the dequantized value.
func addActivationQDQ(m *onnxio.Model, o Options, ts []target, rep *Report) error {
	p := o.Percentile
	if p == 0 {
		p = 99.999
	}
	for _, plan := range activationPlan(m, o, ts) {
		a := plan.tensor
		counts, edges, err := o.Stats.ActivationHistogram(plan.stats)
		if err != nil {
			return fmt.Errorf("%w: activation %s: %v", ErrCalibration, plan.stats, err)
		}
		lo, hi, err := ActivationRange(counts, edges, o.Calibrate, p)
		if err != nil {
			return fmt.Errorf("activation %s: %w", a, err)
		}
		if !finiteScale(lo, hi) {
			// ScaleZeroPoint would fall back to a scale of 1: a
			// silently useless quantizer
			return fmt.Errorf("%w: activation %s: calibration range [%g, %g] has no finite int8 scale (Inf, NaN or values near the float32 limit in the calibration activations)", ErrNonFinite, a, lo, hi)
		}
		s, z := ScaleZeroPoint(lo, hi, -128, 127, false)
		sName, zName := m.UniqueName(a+"_scale"), m.UniqueName(a+"_zero_point")
		st, err := onnxio.FromFloat32(sName, onnxio.Float, []int64{}, []float32{s})
		if err != nil {
			return err
		}
		zt, err := onnxio.NewTensor(zName, onnxio.Int8, []int64{}, []byte{byte(int8(z))})
		if err != nil {
			return err
		}
		if err := m.SetInitializer(st); err != nil {
			return err
		}
		if err := m.SetInitializer(zt); err != nil {
			return err
		}
		qOut, dqOut := m.UniqueName(a+"_quantized"), m.UniqueName(a+"_dequantized")
		m.RenameInput(a, dqOut) // before the pair exists: its Q keeps reading a
		nodes := []onnxio.Node{
			{Name: m.UniqueName(a + "_QuantizeLinear"), OpType: "QuantizeLinear", Inputs: []string{a, sName, zName}, Outputs: []string{qOut}},
			{Name: m.UniqueName(a + "_DequantizeLinear"), OpType: "DequantizeLinear", Inputs: []string{qOut, sName, zName}, Outputs: []string{dqOut}},
		}
		if err := m.InsertNodes(nodes...); err != nil {
			return err
		}
		desc := fmt.Sprintf("%s [%.4g, %.4g] scale %.4g zp %d", a, lo, hi, s, z)
		if plan.stats != a {
			desc += " (range of " + plan.stats + ")"
		}
		rep.Activations = append(rep.Activations, desc)
	}
	return nil
}

// finiteScale reports whether the range [lo, hi] gives a finite float32
// int8 scale.
func finiteScale(lo, hi float64) bool {
	if math.IsNaN(lo) || math.IsNaN(hi) || math.IsInf(lo, 0) || math.IsInf(hi, 0) {
		return false
	}
	s := float64(float32((math.Max(hi, 0) - math.Min(lo, 0)) / 255))
	return !math.IsInf(s, 0)
}

// quantizeDynamic rewrites MatMul and Gemm as DynamicQuantizeLinear +
// MatMulInteger (uint8 activations, int8 weights) + rescale, the pattern
// ONNX Runtime's quantize_dynamic emits and its CPU kernels fuse; Conv
// weights get int8 QDQ (weight-only).
func quantizeDynamic(ctx context.Context, m *onnxio.Model, o Options, ts []target, rep *Report) error {
	if m.Opsets()[""] < 11 {
		return fmt.Errorf("%w: DynamicQuantizeLinear needs opset ≥ 11, the model imports %d", ErrUnsupported, m.Opsets()[""])
	}
	dq := map[string][3]string{} // activation → (q, scale, zp)
	for _, t := range ts {
		if err := ctx.Err(); err != nil {
			return err
		}
		if t.w.Role == onnxio.RoleConvW {
			if err := insertWeightDQ(m, o, t, rep); err != nil {
				return err
			}
			continue
		}
		w, err := readFloat(m, t.w.Name)
		if err != nil {
			return err
		}
		k, nOut := int(t.w.Shape[0]), int(t.w.Shape[1])
		if t.w.Role == onnxio.RoleGemmB && t.w.TransB {
			w = transpose(w, k, nOut) // stored [N, K]: Shape[0] is N
			k, nOut = nOut, k
		}
		axis := -1
		if !o.PerTensor {
			axis = 1
		}
		l, err := QuantizeLinear(w, []int{k, nOut}, LinearOptions{Axis: axis, Symmetric: o.symmetric()})
		if err != nil {
			return fmt.Errorf("%s: %w", t.w.Name, err)
		}
		base := t.w.Name
		pShape := []int64{}
		if axis >= 0 {
			pShape = []int64{int64(nOut)}
		}
		qName, sName, zName := m.UniqueName(base+"_quantized"), m.UniqueName(base+"_scale"), m.UniqueName(base+"_zero_point")
		qt, err := onnxio.NewTensor(qName, onnxio.Int8, []int64{int64(k), int64(nOut)}, int8Bytes(l.Q))
		if err != nil {
			return err
		}
		st, err := onnxio.FromFloat32(sName, onnxio.Float, pShape, l.Scale)
		if err != nil {
			return err
		}
		zt, err := onnxio.NewTensor(zName, onnxio.Int8, pShape, int8Bytes(l.ZeroPoint))
		if err != nil {
			return err
		}
		for _, tt := range []*onnxio.Tensor{qt, st, zt} {
			if err := m.SetInitializer(tt); err != nil {
				return err
			}
		}
		a := t.node.Inputs[0]
		var nodes []onnxio.Node
		aq, ok := dq[a]
		if !ok {
			aq = [3]string{m.UniqueName(a + "_quantized"), m.UniqueName(a + "_scale"), m.UniqueName(a + "_zero_point")}
			dq[a] = aq
			nodes = append(nodes, onnxio.Node{Name: m.UniqueName(a + "_DynamicQuantizeLinear"), OpType: "DynamicQuantizeLinear",
				Inputs: []string{a}, Outputs: aq[:]})
			rep.Activations = append(rep.Activations, a)
		}
		nm := t.node.Name
		mmOut, fOut, sc := m.UniqueName(nm+"_MatMulInteger_output"), m.UniqueName(nm+"_cast_output"), m.UniqueName(nm+"_scale")
		y := t.node.Outputs[0]
		scaled := y
		hasBias := t.w.Role == onnxio.RoleGemmB && t.node.Input(2) != ""
		if hasBias {
			scaled = m.UniqueName(nm + "_scaled")
		}
		nodes = append(nodes,
			onnxio.Node{Name: m.UniqueName(nm + "_MatMulInteger"), OpType: "MatMulInteger", Inputs: []string{aq[0], qName, aq[2], zName}, Outputs: []string{mmOut}},
			onnxio.Node{Name: m.UniqueName(nm + "_Cast"), OpType: "Cast", Inputs: []string{mmOut}, Outputs: []string{fOut}, Attrs: []onnxio.Attr{onnxio.AttrInt("to", int64(onnxio.Float))}},
			onnxio.Node{Name: m.UniqueName(nm + "_scale_Mul"), OpType: "Mul", Inputs: []string{aq[1], sName}, Outputs: []string{sc}},
			onnxio.Node{Name: m.UniqueName(nm + "_output_Mul"), OpType: "Mul", Inputs: []string{fOut, sc}, Outputs: []string{scaled}},
		)
		if hasBias {
			bias, err := scaledBias(m, t.node)
			if err != nil {
				return err
			}
			nodes = append(nodes, onnxio.Node{Name: m.UniqueName(nm + "_bias_Add"), OpType: "Add", Inputs: []string{scaled, bias}, Outputs: []string{y}})
		}
		if err := m.ReplaceNode(nm, nodes); err != nil {
			return err
		}
		if err := m.RemoveInitializer(t.w.Name); err != nil {
			return err
		}
		lr := LayerReport{Weight: t.w.Name, Node: nm, Op: t.w.Op, Shape: t.w.Shape,
			Scheme:   fmt.Sprintf("int8 %s %s matmulinteger", map[bool]string{true: "per-channel", false: "per-tensor"}[axis >= 0], symName(o.symmetric())),
			RelError: RelError(w, l.Dequantize())}
		scaleStats(&lr, l.Scale)
		rep.Layers = append(rep.Layers, lr)
	}
	return nil
}

// scaledBias returns the name of Gemm's C multiplied by beta (C itself
// when beta is 1 or C is not an initializer with beta 1).
func scaledBias(m *onnxio.Model, n onnxio.Node) (string, error) {
	c := n.Input(2)
	beta := n.Float("beta", 1)
	if beta == 1 {
		return c, nil
	}
	if !m.HasInitializer(c) {
		bn := m.UniqueName(c + "_beta")
		bt, err := onnxio.FromFloat32(bn, onnxio.Float, []int64{}, []float32{beta})
		if err != nil {
			return "", err
		}
		if err := m.SetInitializer(bt); err != nil {
			return "", err
		}
		out := m.UniqueName(c + "_scaled")
		if err := m.InsertNodes(onnxio.Node{Name: m.UniqueName(c + "_beta_Mul"), OpType: "Mul", Inputs: []string{c, bn}, Outputs: []string{out}}); err != nil {
			return "", err
		}
		return out, nil
	}
	t, err := m.Initializer(c)
	if err != nil {
		return "", err
	}
	v, err := t.Float32()
	if err != nil {
		return "", err
	}
	for i := range v {
		v[i] *= beta
	}
	name := m.UniqueName(c + "_scaled")
	nt, err := onnxio.FromFloat32(name, t.DType, t.Shape, v)
	if err != nil {
		return "", err
	}
	return name, m.SetInitializer(nt)
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

// ---------------------------------------------------------------- int4

// quantizeInt4 applies 4-bit block-wise weights to MatMul and Gemm, as
// MatMulNBits or as opset-21 blocked DequantizeLinear.
func quantizeInt4(ctx context.Context, m *onnxio.Model, o Options, rep *Report) error {
	format := o.Format
	if format == "" {
		format = "matmulnbits"
	}
	method := o.Method
	if method == "" {
		method = "rtn"
	}
	bs := o.BlockSize
	if bs == 0 {
		bs = 32
	}
	rep.Mode = fmt.Sprintf("int4 block %d %s %s %s", bs, symName(o.symmetric()), format, method)
	if len(o.Bits) > 0 {
		rep.Mode = fmt.Sprintf("mixed-bits block %d %s %s %s", bs, symName(o.symmetric()), format, method)
	}
	if format == "qdq" {
		if err := ensureOpset21(m); err != nil {
			return err
		}
	} else {
		m.SetOpset("com.microsoft", 1)
	}
	ts, err := targets(m, o, rep)
	if err != nil {
		return err
	}
	bo := BlockOptions{Bits: 4, BlockSize: bs, Symmetric: o.symmetric()}
	used := map[string]bool{}
	count := map[int]int{}
	for _, t := range ts {
		if err := ctx.Err(); err != nil {
			return err
		}
		if t.w.Role == onnxio.RoleConvW {
			rep.Skipped = append(rep.Skipped, Skip{Name: t.w.Name, Reason: "Conv weights stay float with int4 (MatMul and Gemm only)"})
			continue
		}
		if b, ok := o.Bits[t.w.Name]; ok {
			used[t.w.Name] = true
			bo.Bits = b
		} else if o.BitsOnly {
			rep.Skipped = append(rep.Skipped, Skip{Name: t.w.Name, Reason: "not in the bit allocation (BitsOnly)"})
			continue
		} else {
			bo.Bits = 4
		}
		count[bo.Bits]++
		w, err := readFloat(m, t.w.Name)
		if err != nil {
			return err
		}
		k, n := int(t.w.Shape[0]), int(t.w.Shape[1])
		if t.w.Role == onnxio.RoleGemmB && t.w.TransB {
			w = transpose(w, k, n) // stored [N, K]: Shape[0] is N
			k, n = n, k
		}
		// A block longer than K only pads: use the smallest power of two
		// ≥ max(K, 16) instead (same scales and codes, less padding).
		lbo := bo
		for lbo.BlockSize > 16 && lbo.BlockSize/2 >= k {
			lbo.BlockSize /= 2
		}
		var b *Blockwise
		scheme := fmt.Sprintf("int%d block %d %s %s %s", lbo.Bits, lbo.BlockSize, symName(o.symmetric()), format, method)
		if method == "gptq" {
			xtx, d, _, err := o.Calibration.InputGram(t.w.Name)
			if err != nil {
				return fmt.Errorf("%w: Gram of %s: %v", ErrCalibration, t.w.Name, err)
			}
			if d != k || len(xtx) != k*k {
				return fmt.Errorf("%w: Gram of %s is %d×%d (%d values), want K = %d", ErrCalibration, t.w.Name, d, d, len(xtx), k)
			}
			var info GPTQInfo
			b, info, err = GPTQ(ctx, w, k, n, xtx, GPTQOptions{Block: lbo, Damp: o.Damp, ActOrder: o.ActOrder, LazyBlock: o.LazyBlock})
			if err != nil {
				return fmt.Errorf("%s: %w", t.w.Name, err)
			}
			if o.ActOrder {
				scheme += " act-order"
			}
			if info.Damp != 0.01 && o.Damp == 0 {
				scheme += fmt.Sprintf(" damp %g", info.Damp)
			}
		} else {
			b, err = QuantizeRTN(w, k, n, lbo)
			if err != nil {
				return fmt.Errorf("%s: %w", t.w.Name, err)
			}
		}
		if format == "qdq" {
			err = rewriteBlockedQDQ(m, t, b)
		} else {
			err = rewriteMatMulNBits(m, o, t, b)
		}
		if err != nil {
			return err
		}
		lr := LayerReport{Weight: t.w.Name, Node: t.node.Name, Op: t.w.Op, Shape: t.w.Shape, Scheme: scheme,
			Bits: b.Bits, RelError: RelError(w, b.Dequantize())}
		scaleStats(&lr, b.Scales)
		rep.Layers = append(rep.Layers, lr)
	}
	if len(o.Bits) > 0 {
		rep.Mode += " (" + mixedBits(count) + ")"
	}
	return unusedBits(o.Bits, used, rep.Skipped)
}

// unusedBits reports, with ErrOptions, the names of a per-weight bit
// allocation that were not quantized (unknown names, or weights skipped
// with the reason given), so that no allocation is silently ignored.
func unusedBits(bits map[string]int, used map[string]bool, skipped []Skip) error {
	var bad []string
	for name := range bits {
		if used[name] {
			continue
		}
		why := "not a MatMul or Gemm weight of the model"
		for _, s := range skipped {
			if s.Name == name {
				why = "left in float: " + s.Reason
			}
		}
		bad = append(bad, name+" ("+why+")")
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return fmt.Errorf("%w: bit widths given for weights that are not quantized: %s", ErrOptions, strings.Join(bad, "; "))
}

// opsChangedSince18 are ops whose opset-18 versions changed semantics
// (axes moved from an attribute to an input), so a model importing an
// older opset cannot simply be re-labelled opset 21.
var opsChangedSince18 = map[string]bool{
	"ReduceMean": true, "ReduceMax": true, "ReduceMin": true, "ReduceProd": true, "ReduceL1": true,
	"ReduceL2": true, "ReduceLogSum": true, "ReduceLogSumExp": true, "ReduceSumSquare": true,
}

// ensureOpset21 raises the ai.onnx opset to 21 (and the IR version to 10)
// for blocked DequantizeLinear, refusing when an op's semantics changed.
func ensureOpset21(m *onnxio.Model) error {
	v := m.Opsets()[""]
	if v >= 21 {
		return nil
	}
	if v < 13 {
		// Squeeze, Unsqueeze, Split and ReduceSum changed form in opset 13
		if _, err := upgradeOpset13For(m, "int4 QDQ (opset 21)"); err != nil {
			return err
		}
	}
	if v < 18 {
		for _, n := range m.Nodes() {
			if n.Domain == "" && opsChangedSince18[n.OpType] {
				return fmt.Errorf("%w: int4 QDQ needs opset 21 (DequantizeLinear block_size) and the model (opset %d) uses %s, whose inputs changed in opset 18; use --format matmulnbits", ErrUnsupported, v, n.OpType)
			}
		}
	}
	m.SetOpset("", 21)
	if m.IRVersion() < 10 {
		m.SetIRVersion(10)
	}
	return nil
}

func rewriteMatMulNBits(m *onnxio.Model, o Options, t target, b *Blockwise) error {
	B, scales, zps := b.MatMulNBits()
	nb := b.Blocks()
	base := t.w.Name
	bName, sName := m.UniqueName(fmt.Sprintf("%s_Q%d", base, b.Bits)), m.UniqueName(base+"_scales")
	bt, err := onnxio.NewTensor(bName, onnxio.Uint8, []int64{int64(b.N), int64(nb), int64(b.BlockSize * b.Bits / 8)}, B)
	if err != nil {
		return err
	}
	st, err := onnxio.FromFloat32(sName, onnxio.Float, []int64{int64(b.N), int64(nb)}, scales)
	if err != nil {
		return err
	}
	ins := []string{t.node.Inputs[0], bName, sName}
	inits := []*onnxio.Tensor{bt, st}
	if zps != nil {
		zName := m.UniqueName(base + "_zero_points")
		zt, err := onnxio.NewTensor(zName, onnxio.Uint8, []int64{int64(b.N), int64(len(zps) / b.N)}, zps)
		if err != nil {
			return err
		}
		inits = append(inits, zt)
		ins = append(ins, zName)
	}
	for _, tt := range inits {
		if err := m.SetInitializer(tt); err != nil {
			return err
		}
	}
	nm := t.node.Name
	y := t.node.Outputs[0]
	hasBias := t.w.Role == onnxio.RoleGemmB && t.node.Input(2) != ""
	mmOut := y
	if hasBias {
		mmOut = m.UniqueName(nm + "_MatMulNBits_output")
	}
	node := onnxio.Node{Name: m.UniqueName(nm + "_MatMulNBits"), OpType: "MatMulNBits", Domain: "com.microsoft",
		Inputs: ins, Outputs: []string{mmOut}, Attrs: []onnxio.Attr{
			onnxio.AttrInt("K", int64(b.K)), onnxio.AttrInt("N", int64(b.N)),
			onnxio.AttrInt("bits", int64(b.Bits)), onnxio.AttrInt("block_size", int64(b.BlockSize)),
		}}
	if o.AccuracyLevel > 0 {
		node.SetAttr(onnxio.AttrInt("accuracy_level", int64(o.AccuracyLevel)))
	}
	nodes := []onnxio.Node{node}
	if hasBias {
		bias, err := scaledBias(m, t.node)
		if err != nil {
			return err
		}
		nodes = append(nodes, onnxio.Node{Name: m.UniqueName(nm + "_bias_Add"), OpType: "Add", Inputs: []string{mmOut, bias}, Outputs: []string{y}})
	}
	if err := m.ReplaceNode(nm, nodes); err != nil {
		return err
	}
	return m.RemoveInitializer(t.w.Name)
}

func rewriteBlockedQDQ(m *onnxio.Model, t target, b *Blockwise) error {
	data, scales, zps, err := b.BlockedQDQ()
	if err != nil {
		return err
	}
	nb := b.Blocks()
	base := t.w.Name
	dt := onnxio.Uint4
	switch {
	case b.Bits == 4 && b.Symmetric:
		dt = onnxio.Int4
	case b.Bits == 8 && b.Symmetric:
		dt = onnxio.Int8
	case b.Bits == 8:
		dt = onnxio.Uint8
	}
	qName, sName := m.UniqueName(base+"_quantized"), m.UniqueName(base+"_scale")
	qt, err := onnxio.NewTensor(qName, dt, []int64{int64(b.K), int64(b.N)}, data)
	if err != nil {
		return err
	}
	st, err := onnxio.FromFloat32(sName, onnxio.Float, []int64{int64(nb), int64(b.N)}, scales)
	if err != nil {
		return err
	}
	inits := []*onnxio.Tensor{qt, st}
	ins := []string{qName, sName}
	if zps != nil {
		zName := m.UniqueName(base + "_zero_point")
		zt, err := onnxio.NewTensor(zName, dt, []int64{int64(nb), int64(b.N)}, zps)
		if err != nil {
			return err
		}
		inits = append(inits, zt)
		ins = append(ins, zName)
	}
	for _, tt := range inits {
		if err := m.SetInitializer(tt); err != nil {
			return err
		}
	}
	dq := onnxio.Node{Name: m.UniqueName(base + "_DequantizeLinear"), OpType: "DequantizeLinear",
		Inputs: ins, Outputs: []string{m.UniqueName(base + "_dequantized")},
		Attrs: []onnxio.Attr{onnxio.AttrInt("axis", 0), onnxio.AttrInt("block_size", int64(b.BlockSize))}}
	n, err := m.Node(t.node.Name)
	if err != nil {
		return err
	}
	n.Inputs[t.w.Slot] = dq.Outputs[0]
	if t.w.Role == onnxio.RoleGemmB {
		n.SetAttr(onnxio.AttrInt("transB", 0)) // the weight is now stored [K, N]
	}
	if err := m.InsertNodes(dq); err != nil {
		return err
	}
	if err := m.UpdateNode(n); err != nil {
		return err
	}
	return m.RemoveInitializer(t.w.Name)
}
