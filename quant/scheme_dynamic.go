package quant

import (
	"context"
	"fmt"

	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/transform"
)

// Int8Dynamic quantizes weights to int8 and MatMul/Gemm activations at
// run time (DynamicQuantizeLinear + MatMulInteger).
var Int8Dynamic = &transform.Transform{
	Name: "quantize/int8-dynamic",
	Doc: schemeDoc("int8 weights and activations quantized at run time: DynamicQuantizeLinear + MatMulInteger",
		"for MatMul and Gemm (ONNX Runtime's quantize_dynamic pattern), QDQ weights for Conv."),
	Params: []*transform.Param{paramWeights, paramFormat, paramActivations, paramPerChannel, symmetricParam(true), paramExcludeOps, paramExclude},
	Run:    runScheme,
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
