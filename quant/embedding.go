package quant

import (
	"fmt"

	"github.com/onnxpost/onnxpost/onnxio"
)

// quantizeEmbeddings stores the tables of Gather embeddings (axis 0, float32,
// one consumer) as int8 with one symmetric scale per tensor, as ONNX
// Runtime's quantize_dynamic does: Gather reads int8 rows and a
// DequantizeLinear after it restores float32, so only the gathered rows are
// dequantized at run time. Language models keep most of their bytes in
// these tables. Gather in Options.ExcludeOps, or Options.Exclude, keeps them in float.
func quantizeEmbeddings(m *onnxio.Model, o Options, rep *Report) error {
	if o.excludedOp("Gather") {
		return nil
	}
	ws, err := m.Weights()
	if err != nil {
		return err
	}
	nodes := m.Nodes()
	for _, w := range ws {
		if w.Role != onnxio.RoleEmbedding {
			continue
		}
		skip := func(reason string) { rep.Skipped = append(rep.Skipped, Skip{Name: w.Name, Reason: reason}) }
		if w.NodeIndex < 0 || w.NodeIndex >= len(nodes) {
			continue
		}
		n := nodes[w.NodeIndex]
		switch {
		case o.Exclude != nil && (o.Exclude.MatchString(w.Name) || o.Exclude.MatchString(w.Node)):
			skip("name matches the exclude pattern")
			continue
		case w.DType != onnxio.Float || w.Constant || len(w.Via) > 0:
			skip("embedding not a float32 initializer read directly")
			continue
		case w.Consumers != 1:
			skip(fmt.Sprintf("embedding shared by %d nodes", w.Consumers))
			continue
		case n.Int("axis", 0) != 0 || len(w.Shape) < 1:
			skip("Gather along an axis other than 0")
			continue
		}
		v, err := readFloat(m, w.Name)
		if err != nil {
			return err
		}
		l, err := QuantizeLinear(v, ints(w.Shape), LinearOptions{Axis: -1, Symmetric: true})
		if err != nil {
			return fmt.Errorf("%s: %w", w.Name, err)
		}
		base := w.Name
		qName, sName, zName := m.UniqueName(base+"_quantized"), m.UniqueName(base+"_scale"), m.UniqueName(base+"_zero_point")
		q, err := onnxio.NewTensor(qName, onnxio.Int8, w.Shape, int8Bytes(l.Q))
		if err != nil {
			return err
		}
		s, err := onnxio.FromFloat32(sName, onnxio.Float, []int64{}, l.Scale)
		if err != nil {
			return err
		}
		z, err := onnxio.NewTensor(zName, onnxio.Int8, []int64{}, int8Bytes(l.ZeroPoint))
		if err != nil {
			return err
		}
		for _, t := range []*onnxio.Tensor{q, s, z} {
			if err := m.SetInitializer(t); err != nil {
				return err
			}
		}
		gathered := m.UniqueName(n.Outputs[0] + "_quantized")
		dq := onnxio.Node{
			Name: m.UniqueName(base + "_DequantizeLinear"), OpType: "DequantizeLinear",
			Inputs: []string{gathered, sName, zName}, Outputs: []string{n.Outputs[0]},
		}
		n.Inputs[0] = qName
		n.Outputs[0] = gathered
		if err := m.ReplaceNode(n.Name, []onnxio.Node{n, dq}); err != nil {
			return err
		}
		if err := m.RemoveInitializer(w.Name); err != nil {
			return err
		}
		lr := LayerReport{Weight: w.Name, Node: n.Name, Op: "Gather", Shape: w.Shape,
			Scheme: "int8 per-tensor symmetric gather-dequantize", RelError: RelError(v, l.Dequantize())}
		scaleStats(&lr, l.Scale)
		rep.Layers = append(rep.Layers, lr)
	}
	return nil
}
