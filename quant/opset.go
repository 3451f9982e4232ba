package quant

import (
	"fmt"
	"sort"
	"strings"

	"github.com/onnxpost/onnxpost/onnxio"
)

// opset13Advice is what a refused per-channel upgrade tells the user:
// per-tensor int8 can wreck accuracy (one scale for a whole weight), so it
// is not the advice.
const opset13Advice = "convert the model to opset 13 (e.g. onnx.version_converter.convert_version(model, 13)) and quantize it again; per-tensor int8 (the per-channel parameter false) keeps the opset but can lose much accuracy"

// axesToInput are the ops whose axes (split sizes for Split) moved from an
// attribute to an int64 input in opset 13.
var axesToInput = map[string]string{"Squeeze": "axes", "Unsqueeze": "axes", "ReduceSum": "axes", "Split": "split"}

// softmaxLike are the ops whose axis semantics changed in opset 13 (the
// input was coerced to 2-D around axis before; one axis after): the same
// only when axis is the last axis.
var softmaxLike = map[string]bool{"Softmax": true, "LogSoftmax": true, "Hardmax": true}

// upgradeOpset13 raises the default-domain opset of m from 11 or 12 to 13
// for per-channel DequantizeLinear, converting the nodes whose form changed
// (Squeeze, Unsqueeze, ReduceSum, Split: attribute to input) and checking
// that Softmax-like ops reduce over their last axis. It refuses, naming the
// op, when that cannot be shown, and below opset 11. It returns a note of
// what it did ("" when the opset was already 13 or more).
func upgradeOpset13(m *onnxio.Model) (string, error) {
	return upgradeOpset13For(m, "per-channel DequantizeLinear")
}

// upgradeOpset13For is upgradeOpset13 with the purpose named in its note
// and errors.
func upgradeOpset13For(m *onnxio.Model, purpose string) (string, error) {
	v := m.Opsets()[""]
	if v >= 13 {
		return "", nil
	}
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s needs opset ≥ 13 and the model imports %d: %s; %s", ErrUnsupported, purpose, v, fmt.Sprintf(format, args...), opset13Advice)
	}
	if v < 11 {
		return "", refuse("upgrading from below opset 11 is not supported")
	}
	type edit struct {
		n   onnxio.Node
		ins []int64
	}
	var edits []edit
	counts := map[string]int{}
	for _, n := range m.Nodes() {
		if n.Domain != "" && n.Domain != "ai.onnx" {
			continue
		}
		for _, op := range onnxio.SubgraphOps(n) {
			if axesToInput[op] != "" || softmaxLike[op] {
				return "", refuse("%s %q holds a %s in a subgraph, whose form changed in opset 13", n.OpType, n.Name, op)
			}
		}
		if attr := axesToInput[n.OpType]; attr != "" {
			if a, ok := n.Attr(attr); ok {
				edits = append(edits, edit{n, a.Ints})
				counts[n.OpType]++
			}
			continue
		}
		if softmaxLike[n.OpType] {
			axis := n.Int("axis", 1)
			rank := -1
			if vi, ok := m.ValueInfo(n.Input(0)); ok && vi.Shape != nil {
				rank = len(vi.Shape)
			}
			if axis != -1 && !(rank > 0 && (axis == int64(rank-1) || axis == -int64(1))) {
				return "", refuse("%s %q has axis %d over an input of unknown rank or not its last axis, whose meaning changed in opset 13", n.OpType, n.Name, axis)
			}
			if _, ok := n.Attr("axis"); !ok {
				nn := n
				nn.SetAttr(onnxio.AttrInt("axis", axis))
				if err := m.UpdateNode(nn); err != nil {
					return "", err
				}
			}
		}
	}
	for _, e := range edits {
		attr := axesToInput[e.n.OpType]
		name := m.UniqueName(e.n.Name + "_" + attr)
		t, err := onnxio.FromInt64(name, onnxio.Int64, []int64{int64(len(e.ins))}, e.ins)
		if err != nil {
			return "", err
		}
		if err := m.SetInitializer(t); err != nil {
			return "", err
		}
		nn := e.n
		var kept []onnxio.Attr
		for _, a := range nn.Attrs {
			if a.Name != attr {
				kept = append(kept, a)
			}
		}
		nn.Attrs = kept
		nn.Inputs = append(append([]string{}, nn.Inputs[:1]...), name)
		if err := m.UpdateNode(nn); err != nil {
			return "", err
		}
	}
	m.SetOpset("", 13)
	if m.IRVersion() < 7 {
		m.SetIRVersion(7)
	}
	var done []string
	for op, c := range counts {
		done = append(done, fmt.Sprintf("%s×%d", op, c))
	}
	sort.Strings(done)
	note := fmt.Sprintf("ai.onnx opset %d → 13 for %s", v, purpose)
	if len(done) > 0 {
		note += " (attribute → input: " + strings.Join(done, ", ") + ")"
	}
	return note, nil
}

// quantizeSubgraphWeights quantizes to int8 the MatMul/Gemm/Conv weights
// that If/Loop/Scan subgraphs read (weight-only QDQ): a weight held in a
// subgraph is moved to the main graph first (onnxio.Model.HoistWeight), then
// its initializer is replaced by int8 codes and a main-graph
// DequantizeLinear whose output keeps the weight's name, so the subgraph
// reads the dequantized weight unchanged. Weights it cannot move or that
// Options.Exclude names are listed in rep.Skipped.
func quantizeSubgraphWeights(m *onnxio.Model, o Options, rep *Report) error {
	ws, err := m.AllWeights()
	if err != nil {
		return err
	}
	for _, w := range ws {
		if w.Scope == "" || w.Sparse || w.Constant || w.Quantized || w.DType != onnxio.Float {
			continue
		}
		if w.Role != onnxio.RoleMatMulB && w.Role != onnxio.RoleGemmB && w.Role != onnxio.RoleConvW {
			continue
		}
		skip := func(reason string) { rep.Skipped = append(rep.Skipped, Skip{Name: w.Name, Reason: reason}) }
		switch {
		case o.excludedOp(w.Op):
			skip("op " + w.Op + " excluded")
			continue
		case o.Exclude != nil && (o.Exclude.MatchString(w.Name) || o.Exclude.MatchString(w.Node)):
			skip("name matches the exclude pattern")
			continue
		}
		if err := m.HoistWeight(w); err != nil {
			skip(fmt.Sprintf("%s: %v", w.Special(), err))
			continue
		}
		dq, err := weightDQ(m, o, target{w: w, node: onnxio.Node{Name: w.Node}}, rep)
		if err != nil {
			return err
		}
		if err := m.RemoveInitializer(w.Name); err != nil {
			return err
		}
		dq.Outputs = []string{w.Name}
		if err := m.InsertNodes(dq); err != nil {
			return err
		}
	}
	return nil
}
