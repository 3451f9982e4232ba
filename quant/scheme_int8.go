package quant

import (
	"context"
	"fmt"

	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/transform"
)

// Int8 quantizes weights to int8 behind DequantizeLinear (QDQ), per
// output channel (per tensor with per-channel=false), symmetric by
// default; activations stay float.
var Int8 = &transform.Transform{
	Name: "quantize/int8",
	Doc: schemeDoc("int8 weights behind DequantizeLinear feeding the original MatMul, Gemm and Conv",
		"(per channel: MatMul B axis 1, Gemm B axis 0 with transB, Conv W axis 0; or per tensor), with ONNX Runtime's scale rules;",
		"activations stay float."),
	Params: []*transform.Param{paramWeights, paramFormat, paramPerChannel, symmetricParam(true), paramExcludeOps, paramExclude},
	Run:    runScheme,
}

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
