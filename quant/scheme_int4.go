package quant

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/transform"
)

// Int4 quantizes MatMul and Gemm weights to 4-bit blocks along K by round
// to nearest: com.microsoft MatMulNBits, or opset-21 blocked QDQ.
var Int4 = &transform.Transform{
	Name: "quantize/int4",
	Doc: schemeDoc("4-bit blocks along K for MatMul and Gemm by round to nearest: com.microsoft MatMulNBits",
		"(default) or opset-21 blocked DequantizeLinear (format qdq); asymmetric by default."),
	Params: []*transform.Param{paramWeights, paramFormat, paramBlock, paramMethod, symmetricParam(false),
		paramAccuracyLevel, paramExcludeOps, paramExclude},
	Run: runScheme,
}

// Int4GPTQ is Int4 with GPTQ's error feedback, from the Gram matrix XᵀX
// of each layer's input on calibration data.
var Int4GPTQ = &transform.Transform{
	Name: "quantize/int4-gptq",
	Doc: schemeDoc("4-bit blocks along K for MatMul and Gemm by GPTQ: columns quantized in turn, the error fed back",
		"through the inverse of each layer input's XᵀX (damped by damp, optionally in act-order)."),
	Params: []*transform.Param{paramWeights, paramFormat, paramBlock, paramMethod, symmetricParam(false),
		paramActOrder, paramDamp, paramAccuracyLevel, paramCalibSamples, paramExcludeOps, paramExclude},
	Needs: transform.NeedCalibration,
	Run:   runScheme,
}

// GramWeights returns the weights whose input Gram matrices XᵀX GPTQ
// needs (the MatMul and Gemm weights the options select).
func GramWeights(m *onnxio.Model, o Options) ([]string, error) {
	_, ts, err := calibrationTargets(m, o)
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
			// xtx is this loop's (calib.Stats): factored in place
			b, info, err = gptq(ctx, w, k, n, xtx, true, gptqChunkRows(k), GPTQOptions{Block: lbo, Damp: o.Damp, ActOrder: o.ActOrder, LazyBlock: o.LazyBlock})
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
			Bits: b.Bits, RelError: b.RelError(w)}
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
				return fmt.Errorf("%w: int4 QDQ needs opset 21 (DequantizeLinear block_size) and the model (opset %d) uses %s, whose inputs changed in opset 18; set the format parameter to matmulnbits", ErrUnsupported, v, n.OpType)
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
