package quant

import (
	"fmt"
	"math"

	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/transform"
)

// DefaultFloat16BlockList are the op types kept in fp32 by fp16/bf16
// conversion unless Options.ExcludeOps says otherwise: ops without
// half-precision kernels or whose reductions overflow the fp16 range
// (onnxconverter-common's default block list plus reductions, Pow and Exp).
var DefaultFloat16BlockList = []string{
	"ArrayFeatureExtractor", "Binarizer", "CastMap", "CategoryMapper", "DictVectorizer", "FeatureVectorizer",
	"Imputer", "LabelEncoder", "LinearClassifier", "LinearRegressor", "Normalizer", "OneHotEncoder",
	"SVMClassifier", "SVMRegressor", "Scaler", "TreeEnsembleClassifier", "TreeEnsembleRegressor", "ZipMap",
	"NonMaxSuppression", "TopK", "RoiAlign", "Resize", "Upsample", "Range", "CumSum", "RandomUniformLike",
	"ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "Pow", "Exp",
}

// Float16Max is the largest finite float16 value.
const Float16Max = 65504

// ClampToFloat16 returns v with values beyond ±Float16Max clamped (NaN kept)
// and how many were clamped.
func ClampToFloat16(v []float32) ([]float32, int64) {
	out := make([]float32, len(v))
	var n int64
	for i, x := range v {
		switch {
		case x > Float16Max:
			out[i], n = Float16Max, n+1
		case x < -Float16Max:
			out[i], n = -Float16Max, n+1
		default:
			out[i] = x
		}
	}
	return out, n
}

// boolOps and intOps produce non-float outputs whatever their inputs.
var (
	boolOps = map[string]bool{"Equal": true, "Less": true, "Greater": true, "LessOrEqual": true, "GreaterOrEqual": true,
		"Not": true, "And": true, "Or": true, "Xor": true, "IsNaN": true, "IsInf": true}
	intOps = map[string]bool{"Shape": true, "Size": true, "ArgMax": true, "ArgMin": true, "NonZero": true,
		"NonMaxSuppression": true}
)

// outputTypes infers the element types of n's outputs from its inputs'
// (Undefined when unknown).
func outputTypes(m *onnxio.Model, n onnxio.Node, types map[string]onnxio.DType) []onnxio.DType {
	out := make([]onnxio.DType, len(n.Outputs))
	set := func(d onnxio.DType) {
		for i := range out {
			out[i] = d
		}
	}
	first := onnxio.Undefined
	for _, in := range n.Inputs {
		if d := types[in]; d != onnxio.Undefined {
			first = d
			break
		}
	}
	if n.Domain != "" && n.Domain != "ai.onnx" {
		set(first)
		return out
	}
	if st := onnxio.SubgraphOutputTypes(n); st != nil {
		return st
	}
	switch {
	case boolOps[n.OpType]:
		set(onnxio.Bool)
	case intOps[n.OpType]:
		set(onnxio.Int64)
	case n.OpType == "Cast":
		set(onnxio.DType(n.Int("to", 0)))
	case n.OpType == "Constant":
		if t, err := m.NodeTensor(n, "value"); err == nil {
			set(t.DType)
		} else if _, ok := n.Attr("value_float"); ok {
			set(onnxio.Float)
		} else if _, ok := n.Attr("value_floats"); ok {
			set(onnxio.Float)
		} else {
			set(onnxio.Int64)
		}
	case n.OpType == "ConstantOfShape":
		set(onnxio.Float)
		if t, err := m.NodeTensor(n, "value"); err == nil {
			set(t.DType)
		}
	case n.OpType == "RandomNormal" || n.OpType == "RandomUniform" || n.OpType == "EyeLike" ||
		n.OpType == "RandomNormalLike":
		d := onnxio.DType(n.Int("dtype", int64(onnxio.Float)))
		if n.OpType != "RandomNormal" && n.OpType != "RandomUniform" {
			if _, ok := n.Attr("dtype"); !ok {
				d = first
			}
		}
		set(d)
	case n.OpType == "Where":
		set(types[n.Input(1)])
	case n.OpType == "TopK" || n.OpType == "Unique" || n.OpType == "MaxPool":
		set(types[n.Input(0)])
		for i := 1; i < len(out); i++ {
			out[i] = onnxio.Int64
		}
	default:
		// The output follows input 0; when input 0's type is unknown so is
		// the output's (falling back to another input would take e.g. the
		// int64 axes of an Unsqueeze of an untyped If output for its type).
		set(types[n.Input(0)])
		if n.Input(0) == "" {
			set(first)
		}
	}
	return out
}

// convertFloat16 converts float32 compute and weights to fp16, keeping
// graph inputs/outputs float32 with Casts and blocked ops in fp32; for bf16
// it converts the weights only, with Casts to float32 in front of their
// consumers.
func convertFloat16(m *onnxio.Model, o Options, rep *Report) error {
	half := onnxio.Float16
	if o.Weights == "bf16" {
		half = onnxio.BFloat16
		// bfloat16 tensors (Cast from bfloat16) need opset 13
		note, err := upgradeOpset13For(m, "bfloat16 weights")
		if err != nil {
			return err
		}
		if note != "" {
			rep.Notes = append(rep.Notes, note)
		}
	}
	rep.Mode = o.Weights
	block := map[string]bool{}
	list := o.ExcludeOps
	if list == nil {
		list = DefaultFloat16BlockList
	}
	for _, op := range list {
		block[op] = true
	}
	// ONNX Runtime's CPU EP has no bfloat16 kernels for MatMul, Gemm or
	// Conv (and inserts no Casts for them as it does for float16), so bf16
	// stores the weights in bfloat16 and computes in float32 behind Casts.
	computeHalf := half == onnxio.Float16
	keep, err := keptFloat32(m, o, half, rep)
	if err != nil {
		return err
	}
	// Element types of the original graph.
	types := map[string]onnxio.DType{}
	// A node reading a value of unknown element type (e.g. an output of an
	// If whose branches declare no types) stays float32: the value may be
	// float32, and converting the node would mix it with half-precision
	// inputs.
	blocked := func(n onnxio.Node) bool {
		return !computeHalf || block[n.OpType] || (n.Domain != "" && n.Domain != "ai.onnx") ||
			(o.Exclude != nil && o.Exclude.MatchString(n.Name)) || onnxio.HasSubgraphs(n) || readsAny(n, keep) ||
			readsUnknown(n, types)
	}
	for _, in := range m.Inputs() {
		types[in.Name] = in.DType
	}
	for _, name := range m.Initializers() {
		if dt, _, err := m.InitializerInfo(name); err == nil {
			types[name] = dt
		}
	}
	nodes := m.Nodes()
	for _, n := range nodes {
		for i, d := range outputTypes(m, n, types) {
			if vi, ok := m.ValueInfo(n.Outputs[i]); ok && vi.DType != onnxio.Undefined {
				d = vi.DType
			}
			types[n.Outputs[i]] = d
		}
	}

	// Which float32 initializers are read only by converted nodes.
	consumers := map[string][]onnxio.Node{}
	for _, n := range nodes {
		for _, in := range n.Inputs {
			consumers[in] = append(consumers[in], n)
		}
	}
	graphOut := map[string]bool{}
	for _, v := range m.Outputs() {
		graphOut[v.Name] = true
	}
	// versions[v][dtype] names value v converted to dtype.
	versions := map[string]map[onnxio.DType]string{}
	have := func(v string, d onnxio.DType, name string) {
		if versions[v] == nil {
			versions[v] = map[onnxio.DType]string{}
		}
		versions[v][d] = name
	}
	for _, in := range m.Inputs() {
		if in.DType == onnxio.Float {
			have(in.Name, onnxio.Float, in.Name)
		}
	}
	for _, name := range m.Initializers() {
		if types[name] != onnxio.Float {
			continue
		}
		allConverted := len(consumers[name]) > 0 && !graphOut[name] && !keep[name]
		for _, c := range consumers[name] {
			if blocked(c) && computeHalf {
				allConverted = false
			}
			for i, in := range c.Inputs {
				if in == name && float32Slot(c.OpType, i) {
					allConverted = false
				}
			}
		}
		if !allConverted {
			have(name, onnxio.Float, name)
			continue
		}
		t, err := m.Initializer(name)
		if err != nil {
			return err
		}
		v, err := t.Float32()
		if err != nil {
			return err
		}
		var clamped int64
		if half == onnxio.Float16 {
			v, clamped = ClampToFloat16(v)
		}
		hName := name
		if vi, ok := m.ValueInfo(name); ok && vi.DType != onnxio.Undefined {
			// The graph declares this initializer float32 (value_info):
			// store the half-precision tensor under a new name so that the
			// stale declaration describes nothing.
			hName = m.UniqueName(name + "_" + half.String())
		}
		nt, err := onnxio.FromFloat32(hName, half, t.Shape, v)
		if err != nil {
			return err
		}
		if err := m.SetInitializer(nt); err != nil {
			return err
		}
		if hName != name {
			if err := m.RemoveInitializer(name); err != nil {
				return err
			}
			if overridable(m, name) {
				// A graph input with a default keeps its name: the caller
				// drops the input of a weight whose type changed.
				if err := m.RemoveInitializer(hName); err != nil {
					return err
				}
				if nt, err = onnxio.FromFloat32(name, half, t.Shape, v); err != nil {
					return err
				}
				if err := m.SetInitializer(nt); err != nil {
					return err
				}
				hName = name
			} else {
				m.RenameInput(name, hName) // later nodes are rebuilt from versions anyway
			}
		}
		have(name, half, hName)
		rep.Clamped += clamped
		back, err := nt.Float32()
		if err != nil {
			return err
		}
		orig, _ := t.Float32()
		rep.Layers = append(rep.Layers, LayerReport{Weight: name, Op: consumers[name][0].OpType, Node: consumers[name][0].Name,
			Shape: t.Shape, Scheme: half.String(), RelError: RelError(orig, back), Clamped: clamped})
	}

	// get returns the name of v as dtype d, adding a Cast when needed.
	var pending []onnxio.Node
	get := func(v string, d onnxio.DType) string {
		if name, ok := versions[v][d]; ok {
			return name
		}
		var src string
		for _, name := range versions[v] {
			src = name
		}
		if src == "" {
			return v
		}
		name := m.UniqueName(v + "_" + d.String())
		pending = append(pending, onnxio.Node{Name: m.UniqueName(v + "_Cast_" + d.String()), OpType: "Cast",
			Inputs: []string{src}, Outputs: []string{name}, Attrs: []onnxio.Attr{onnxio.AttrInt("to", int64(d))}})
		have(v, d, name)
		return name
	}

	for _, n := range nodes {
		pending = pending[:0]
		want := half
		if blocked(n) {
			want = onnxio.Float
		}
		nn := n
		nn.Inputs = append([]string(nil), n.Inputs...)
		nn.Outputs = append([]string(nil), n.Outputs...)
		for i, in := range nn.Inputs {
			if in != "" && types[in] == onnxio.Float {
				if float32Slot(n.OpType, i) {
					nn.Inputs[i] = get(in, onnxio.Float)
				} else {
					nn.Inputs[i] = get(in, want)
				}
			}
		}
		// A node with subgraphs stays float32, and so must the values its
		// subgraphs read from this graph.
		for _, v := range onnxio.FreeNames(n) {
			if types[v] == onnxio.Float {
				if f := get(v, onnxio.Float); f != v {
					nn = onnxio.RenameSubgraphReads(nn, v, f)
				}
			}
		}
		if want == half {
			if err := convertAttrs(m, &nn, half, rep); err != nil {
				return err
			}
		}
		outTypes := outputTypes(m, n, types)
		var after []onnxio.Node
		for i, out := range nn.Outputs {
			if out == "" || types[out] != onnxio.Float {
				continue
			}
			// A float output of a converted node is half precision unless
			// the op's output type is fixed by an attribute we left alone.
			d := want
			if outTypes[i] != onnxio.Float && want == half && n.OpType != "Cast" && n.OpType != "Constant" {
				d = onnxio.Float
			}
			if graphOut[out] && d != onnxio.Float {
				h := m.UniqueName(out + "_" + d.String())
				nn.Outputs[i] = h
				have(out, d, h)
				after = append(after, onnxio.Node{Name: m.UniqueName(out + "_Cast_float32"), OpType: "Cast",
					Inputs: []string{h}, Outputs: []string{out}, Attrs: []onnxio.Attr{onnxio.AttrInt("to", int64(onnxio.Float))}})
				have(out, onnxio.Float, out)
				continue
			}
			if vi, ok := m.ValueInfo(out); ok && d != onnxio.Float && vi.DType == onnxio.Float {
				// The graph declares this value float32 (value_info); give
				// the half-precision value a new name so that the stale
				// declaration describes nothing.
				h := m.UniqueName(out + "_" + d.String())
				nn.Outputs[i] = h
				have(out, d, h)
				m.RenameInput(out, h) // later nodes are rebuilt from versions anyway
				continue
			}
			have(out, d, out)
		}
		repl := append(append(append([]onnxio.Node(nil), pending...), nn), after...)
		if err := m.ReplaceNode(n.Name, repl); err != nil {
			return fmt.Errorf("fp16 conversion of node %s: %w", n.Name, err)
		}
	}
	return halfSubgraphWeights(m, o, half, rep)
}

// halfSubgraphWeights stores in half precision the float32 weights that
// only If/Loop/Scan subgraphs read (those nodes compute in float32): a
// weight held in a subgraph moves to the main graph first
// (onnxio.Model.HoistWeight), then a main-graph Cast to float32 produces it
// under its own name from a half-precision initializer, so the subgraph
// reads it unchanged. Weights Options.Exclude names, with values beyond the
// float16 range, or that cannot be moved stay float32 and are reported.
func halfSubgraphWeights(m *onnxio.Model, o Options, half onnxio.DType, rep *Report) error {
	ws, err := m.AllWeights()
	if err != nil {
		return err
	}
	for _, w := range ws {
		if w.Scope == "" || w.DType != onnxio.Float || w.Sparse || w.Constant || w.Params() == 0 {
			continue
		}
		skip := func(reason string) { rep.Skipped = append(rep.Skipped, Skip{Name: w.Name, Reason: reason}) }
		if o.Exclude != nil && o.Exclude.MatchString(w.Name) {
			if w.Stored != "" { // main-graph ones are reported by keptFloat32
				skip("kept float32: name matches the exclude pattern")
			}
			continue
		}
		t, err := m.WeightTensor(w)
		if err != nil {
			return err
		}
		v, err := t.Float32()
		if err != nil {
			return err
		}
		if half == onnxio.Float16 {
			big := 0.0
			for _, x := range v {
				if a := math.Abs(float64(x)); a > big || math.IsNaN(a) {
					big = a
				}
			}
			if big > Float16Max || math.IsNaN(big) {
				skip(fmt.Sprintf("kept float32: values up to %.4g exceed the float16 range ±%d", big, Float16Max))
				continue
			}
		}
		if err := m.HoistWeight(w); err != nil {
			skip(fmt.Sprintf("%s: %v", w.Special(), err))
			continue
		}
		hName := m.UniqueName(w.Name + "_" + half.String())
		nt, err := onnxio.FromFloat32(hName, half, t.Shape, v)
		if err != nil {
			return err
		}
		if err := m.SetInitializer(nt); err != nil {
			return err
		}
		if err := m.RemoveInitializer(w.Name); err != nil {
			return err
		}
		cast := onnxio.Node{Name: m.UniqueName(w.Name + "_Cast_float32"), OpType: "Cast", Inputs: []string{hName}, Outputs: []string{w.Name},
			Attrs: []onnxio.Attr{onnxio.AttrInt("to", int64(onnxio.Float))}}
		if err := m.InsertNodes(cast); err != nil {
			return err
		}
		back, err := nt.Float32()
		if err != nil {
			return err
		}
		rep.Layers = append(rep.Layers, LayerReport{Weight: w.Name, Op: w.Op, Node: w.Node, Shape: t.Shape, Scheme: half.String() + " (stored; computed in float32 in " + w.Scope + ")", RelError: RelError(v, back)})
	}
	return nil
}

// convertAttrs changes the float-typed attributes of a converted node:
// Cast to float32 → to half, Constant/ConstantOfShape float values → half.
func convertAttrs(m *onnxio.Model, n *onnxio.Node, half onnxio.DType, rep *Report) error {
	switch n.OpType {
	case "Cast":
		if onnxio.DType(n.Int("to", 0)) == onnxio.Float {
			n.SetAttr(onnxio.AttrInt("to", int64(half)))
		}
	case "Constant", "ConstantOfShape":
		t, err := m.NodeTensor(*n, "value")
		if err != nil {
			if n.OpType == "ConstantOfShape" {
				z, err := onnxio.FromFloat32("", half, []int64{1}, []float32{0})
				if err != nil {
					return err
				}
				n.SetAttr(onnxio.AttrTensorVal("value", z))
			}
			if a, ok := n.Attr("value_float"); ok && n.OpType == "Constant" {
				v := []float32{a.F}
				var c int64
				if half == onnxio.Float16 {
					v, c = ClampToFloat16(v)
				}
				rep.Clamped += c
				z, err := onnxio.FromFloat32("", half, []int64{}, v)
				if err != nil {
					return err
				}
				n.Attrs = removeAttr(n.Attrs, "value_float")
				n.SetAttr(onnxio.AttrTensorVal("value", z))
			}
			return nil
		}
		if t.DType != onnxio.Float {
			return nil
		}
		v, err := t.Float32()
		if err != nil {
			return err
		}
		var c int64
		if half == onnxio.Float16 {
			v, c = ClampToFloat16(v)
		}
		rep.Clamped += c
		nt, err := onnxio.FromFloat32(t.Name, half, t.Shape, v)
		if err != nil {
			return err
		}
		n.SetAttr(onnxio.AttrTensorVal("value", nt))
	case "EyeLike", "RandomNormalLike", "RandomUniformLike":
		if d, ok := n.Attr("dtype"); ok && onnxio.DType(d.I) == onnxio.Float {
			n.SetAttr(onnxio.AttrInt("dtype", int64(half)))
		}
	}
	return nil
}

func removeAttr(as []onnxio.Attr, name string) []onnxio.Attr {
	out := as[:0:0]
	for _, a := range as {
		if a.Name != name {
			out = append(out, a)
		}
	}
	return out
}

// float32Slot reports whether input slot i of op is float32 by the op's
// definition whatever the compute type (Resize and Upsample scales,
// Resize roi, Dropout ratio): it is never converted.
func float32Slot(op string, i int) bool {
	switch op {
	case "Resize":
		return i == 1 || i == 2
	case "Upsample", "Dropout":
		return i == 1
	}
	return false
}

// readsUnknown reports whether n reads a value whose element type is not
// known.
func readsUnknown(n onnxio.Node, types map[string]onnxio.DType) bool {
	for _, in := range n.Inputs {
		if in != "" && types[in] == onnxio.Undefined {
			return true
		}
	}
	return false
}

// overridable reports whether name is a graph input of m that no
// initializer provides a value for.
func overridable(m *onnxio.Model, name string) bool {
	for _, in := range m.Inputs() {
		if in.Name == name {
			return true
		}
	}
	return false
}

// readsAny reports whether n reads one of the named values.
func readsAny(n onnxio.Node, names map[string]bool) bool {
	for _, in := range n.Inputs {
		if names[in] {
			return true
		}
	}
	return false
}

// keptFloat32 returns the float32 initializers that fp16 conversion must
// keep in float32, with their consumers computing in float32: those whose
// name matches Options.Exclude, and (float16 only) those holding values
// beyond ±Float16Max or non-finite values, e.g. BatchNormalization
// variances of 1e8, which clamping would change. Each is listed in
// rep.Skipped with the reason.
func keptFloat32(m *onnxio.Model, o Options, half onnxio.DType, rep *Report) (map[string]bool, error) {
	keep := map[string]bool{}
	for _, name := range m.Initializers() {
		dt, _, err := m.InitializerInfo(name)
		if err != nil || dt != onnxio.Float {
			continue
		}
		if o.Exclude != nil && o.Exclude.MatchString(name) {
			keep[name] = true
			rep.Skipped = append(rep.Skipped, Skip{Name: name, Reason: "kept float32: name matches the exclude pattern"})
			continue
		}
		if half != onnxio.Float16 {
			continue
		}
		t, err := m.Initializer(name)
		if err != nil {
			return nil, err
		}
		v, err := t.Float32()
		if err != nil {
			return nil, err
		}
		big := 0.0
		for _, x := range v {
			if a := math.Abs(float64(x)); a > big || math.IsNaN(a) {
				big = a
			}
		}
		if big > Float16Max || math.IsNaN(big) {
			keep[name] = true
			rep.Skipped = append(rep.Skipped, Skip{Name: name, Reason: fmt.Sprintf("kept float32 with its consumers: values up to %.4g exceed the float16 range ±%d", big, Float16Max)})
		}
	}
	return keep, nil
}

// Float16 converts initializers and compute to IEEE half precision, model
// inputs and outputs kept float32 through Casts.
var Float16 = &transform.Transform{
	Name: "quantize/fp16",
	Doc: schemeDoc("initializers and compute in IEEE half precision, model inputs and outputs kept float32 through Casts,",
		"an op block list kept in fp32, weights beyond ±65504 kept float32 with their consumers."),
	Params: []*transform.Param{paramWeights, paramExcludeOps, paramExclude},
	Run:    runScheme,
}

// BFloat16 is Float16 with bfloat16.
var BFloat16 = &transform.Transform{
	Name: "quantize/bf16",
	Doc: schemeDoc("initializers and compute in bfloat16, model inputs and outputs kept float32 through Casts,",
		"an op block list kept in fp32."),
	Params: []*transform.Param{paramWeights, paramExcludeOps, paramExclude},
	Run:    runScheme,
}
