package autodiff

import (
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/onnxpost/onnxpost/onnxio"
)

// Sentinel errors.
var (
	// ErrUnsupported reports a node on the differentiated path whose op
	// (or attribute combination) has no gradient rule.
	ErrUnsupported = errors.New("autodiff: unsupported op")
	// ErrInfo reports a value whose dtype or shape the builder needs but
	// Options.Info does not hold.
	ErrInfo = errors.New("autodiff: missing value info (run a probe, see ProbeModel)")
	// ErrInput reports a bad argument: an unknown output, parameter or
	// seed, or a non-float value where a float one is needed.
	ErrInput = errors.New("autodiff: bad input")
)

// Info is the element type and observed shape of one value.
type Info struct {
	DType onnxio.DType
	Shape []int64
}

// Options configure VJP and Gradients.
type Options struct {
	// Info holds the dtype and shape of the graph's values as observed in a
	// probe run (see ProbeModel). Initializers and graph inputs with a
	// fixed declared shape need no entry. Shapes only fix ranks and the
	// sizes of non-batch axes (spatial sizes of Conv and pooling); the
	// gradient graph itself adapts to the batch size at run time.
	Info map[string]Info
	// Prefix starts the names of every value and node the builder adds
	// (default "grad"); it is made unique within the model.
	Prefix string
	// PerExample keeps one gradient per example instead of their sum: the
	// gradient of a parameter p gets a leading axis, [R, p's shape...],
	// where R is the size of axis 0 (the example axis) of the values that
	// depend on the graph inputs. Every such value on the differentiated
	// path must carry the examples on axis 0, which Info (a probe of batch
	// 1) and Info2 (a probe of batch 2) must show: axis 0 of size 1 and 2,
	// the other axes equal. Ops that combine a parameter-only value with
	// example data need a per-example rule (MatMul, Gemm, Conv, Add, Sub,
	// Mul, Div, Pow, Where, LayerNormalization, BatchNormalization,
	// Gather); others give ErrUnsupported.
	PerExample bool
	// Info2 is the probe of batch 2 that PerExample needs.
	Info2 map[string]Info
}

// Gradients returns a copy of m whose outputs are the gradients of the
// scalar loss Σ seed⊙output with respect to params, named "grad/<param>"
// (made unique) in params order, and the output names. With seed == "" the
// loss is the sum of output's elements. seed may name a graph input (it is
// then declared as one, typed and shaped like output), a value of the graph,
// or an initializer. The forward outputs are dropped.
func Gradients(m *onnxio.Model, output, seed string, params []string, opt Options) (*onnxio.Model, []string, error) {
	if err := CheckGraph(m); err != nil {
		return nil, nil, err
	}
	g := m.Clone()
	info, err := completeInfo(g, opt.Info)
	if err != nil {
		return nil, nil, err
	}
	oi, ok := info[output]
	if !ok {
		return nil, nil, fmt.Errorf("%w: output %q: no dtype/shape", ErrInfo, output)
	}
	if seed == "" {
		b := newBuilder(g, info, opt.Prefix)
		seed = b.fresh("seed")
		b.add("Expand", []string{b.scalar(1, oi.DType), b.shapeOf(output)}, []string{seed})
		if err := g.InsertNodes(b.nodes...); err != nil {
			return nil, nil, err
		}
	} else if !g.HasInitializer(seed) && !valueExists(g, seed) {
		dims := make([]onnxio.Dim, len(oi.Shape))
		for i := range dims {
			dims[i] = onnxio.Dim{Value: -1}
		}
		g.AddInput(onnxio.ValueInfo{Name: seed, DType: oi.DType, Shape: dims})
		info[seed] = oi
	}
	grads, err := VJP(g, output, seed, params, Options{Info: info, Prefix: opt.Prefix})
	if err != nil {
		return nil, nil, err
	}
	outs := make([]onnxio.ValueInfo, 0, len(params))
	names := make([]string, 0, len(params))
	for _, p := range params {
		name := grads[p]
		pi := info[p]
		outs = append(outs, onnxio.ValueInfo{Name: name, DType: pi.DType, Shape: fixedDims(pi.Shape)})
		names = append(names, name)
	}
	g.SetOutputs(outs)
	return g, names, nil
}

// valueExists reports whether some node produces name.
func valueExists(m *onnxio.Model, name string) bool {
	for _, n := range m.Nodes() {
		for _, o := range n.Outputs {
			if o == name {
				return true
			}
		}
	}
	for _, in := range m.Inputs() {
		if in.Name == name {
			return true
		}
	}
	return false
}

func fixedDims(s []int64) []onnxio.Dim {
	d := make([]onnxio.Dim, len(s))
	for i, v := range s {
		d[i] = onnxio.Dim{Value: v}
	}
	return d
}

// VJP adds to m the nodes computing ∂(Σ seed⊙output)/∂p for every p in
// params and returns, for each parameter, the name of the value holding its
// gradient (shaped like the parameter). seed must be a value of output's
// dtype and shape (a graph input, an initializer or a node output of m).
// Parameters that output does not depend on get a zero gradient. VJP may be
// called several times on one model (e.g. with different seeds): the
// backward passes share the forward values.
func VJP(m *onnxio.Model, output, seed string, params []string, opt Options) (map[string]string, error) {
	if op, ok := m.Opsets()[""]; !ok || op < 13 {
		return nil, fmt.Errorf("%w: the model imports ai.onnx opset %d; gradients need opset >= 13", ErrUnsupported, op)
	}
	if err := CheckGraph(m); err != nil {
		return nil, err
	}
	info, err := completeInfo(m, opt.Info)
	if err != nil {
		return nil, err
	}
	oi, ok := info[output]
	if !ok {
		return nil, fmt.Errorf("%w: output %q", ErrInfo, output)
	}
	if !differentiable(oi.DType) {
		return nil, fmt.Errorf("%w: output %q has dtype %v, not a float type", ErrInput, output, oi.DType)
	}
	if len(params) == 0 {
		return nil, fmt.Errorf("%w: no parameters", ErrInput)
	}
	b := newBuilder(m, info, opt.Prefix)
	nodes := m.Nodes()
	producer := map[string]int{}
	for i, n := range nodes {
		for _, o := range n.Outputs {
			if o != "" {
				producer[o] = i
			}
		}
	}
	if _, ok := producer[output]; !ok && !isParam(params, output) {
		if _, known := info[output]; !known {
			return nil, fmt.Errorf("%w: no value %q", ErrInput, output)
		}
	}
	wrt := map[string]bool{}
	for _, p := range params {
		pi, ok := info[p]
		if !ok {
			return nil, fmt.Errorf("%w: parameter %q is not a value of the model", ErrInput, p)
		}
		if !differentiable(pi.DType) {
			return nil, fmt.Errorf("%w: parameter %q has dtype %v, not a float type", ErrInput, p, pi.DType)
		}
		wrt[p] = true
	}
	// active: float values that depend on a parameter.
	active := map[string]bool{}
	for p := range wrt {
		active[p] = true
	}
	for _, n := range nodes {
		if nonDifferentiable[n.OpType] {
			continue
		}
		dep := false
		for _, in := range n.Inputs {
			if in != "" && active[in] {
				dep = true
				break
			}
		}
		if !dep {
			continue
		}
		for _, o := range n.Outputs {
			if o == "" || wrt[o] {
				continue
			}
			if oi, ok := info[o]; ok && differentiable(oi.DType) {
				active[o] = true
			}
		}
	}
	// data: values that depend on a graph input (other than a parameter).
	data := map[string]bool{}
	if opt.PerExample {
		for _, in := range m.Inputs() {
			if !wrt[in.Name] {
				data[in.Name] = true
			}
		}
		for _, n := range nodes {
			for _, in := range n.Inputs {
				if data[in] {
					for _, o := range n.Outputs {
						if o != "" {
							data[o] = true
						}
					}
					break
				}
			}
		}
	}
	// needed: values output depends on.
	needed := map[string]bool{output: true}
	for i := len(nodes) - 1; i >= 0; i-- {
		n := nodes[i]
		use := false
		for _, o := range n.Outputs {
			if needed[o] && !wrt[o] {
				use = true
			}
		}
		if !use {
			continue
		}
		for _, in := range n.Inputs {
			if in != "" {
				needed[in] = true
			}
		}
	}
	if opt.PerExample {
		onPath := map[string]bool{}
		for v := range active {
			if needed[v] {
				onPath[v] = true
			}
		}
		if err := checkExampleAxis(data, onPath, info, opt.Info2); err != nil {
			return nil, err
		}
	}
	contrib := map[string][]string{}
	if active[output] {
		contrib[output] = []string{seed}
	}
	for i := len(nodes) - 1; i >= 0; i-- {
		n := nodes[i]
		var dys []string
		any := false
		for _, o := range n.Outputs {
			if o == "" || !active[o] || !needed[o] || wrt[o] || len(contrib[o]) == 0 {
				dys = append(dys, "")
				continue
			}
			dys = append(dys, b.sum(contrib[o]))
			any = true
		}
		if !any {
			continue
		}
		want := make([]bool, len(n.Inputs))
		wantAny := false
		for j, in := range n.Inputs {
			if in != "" && active[in] {
				want[j] = true
				wantAny = true
			}
		}
		if !wantAny {
			continue
		}
		rule, ok := rules[n.OpType]
		if !ok || n.Domain != "" && n.Domain != "ai.onnx" {
			return nil, fmt.Errorf("%w: %s (node %q) is on the differentiated path and has no gradient rule", ErrUnsupported, qualified(n), n.Name)
		}
		var dxs []string
		var err error
		if opt.PerExample {
			dxs, err = perExampleDispatch(b, n, dys, want, data, rule)
		} else {
			dxs, err = rule(b, n, dys, want)
		}
		if err != nil {
			if errors.Is(err, ErrUnsupported) || errors.Is(err, ErrInfo) {
				return nil, fmt.Errorf("node %q (%s): %w", n.Name, n.OpType, err)
			}
			return nil, fmt.Errorf("%w: node %q (%s): %v", ErrUnsupported, n.Name, n.OpType, err)
		}
		for j, dx := range dxs {
			if j < len(want) && want[j] && dx != "" {
				contrib[n.Inputs[j]] = append(contrib[n.Inputs[j]], dx)
			}
		}
	}
	out := make(map[string]string, len(params))
	for _, p := range params {
		name := b.named(p)
		if len(contrib[p]) == 0 {
			pi := info[p]
			shape := b.shapeOf(p)
			if opt.PerExample {
				rows := b.op("Slice", []string{b.shapeOf(seed), b.ints(0), b.ints(1)})
				shape = b.op("Concat", []string{rows, shape}, onnxio.AttrInt("axis", 0))
			}
			b.add("ConstantOfShape", []string{shape}, []string{name}, onnxio.AttrTensorVal("value", b.tensor1(0, pi.DType)))
		} else {
			b.add("Identity", []string{b.sum(contrib[p])}, []string{name})
		}
		out[p] = name
	}
	if err := m.InsertNodes(b.nodes...); err != nil {
		return nil, fmt.Errorf("autodiff: inserting the backward nodes: %w", err)
	}
	return out, nil
}

func isParam(ps []string, v string) bool {
	for _, p := range ps {
		if p == v {
			return true
		}
	}
	return false
}

func qualified(n onnxio.Node) string {
	if n.Domain != "" && n.Domain != "ai.onnx" {
		return n.Domain + "." + n.OpType
	}
	return n.OpType
}

// nonDifferentiable lists ops whose outputs never carry gradients.
var nonDifferentiable = map[string]bool{
	"Shape": true, "Size": true, "Constant": true, "ConstantOfShape": true, "Range": true,
	"Equal": true, "Greater": true, "GreaterOrEqual": true, "Less": true, "LessOrEqual": true,
	"Not": true, "And": true, "Or": true, "Xor": true, "NonZero": true, "ArgMax": true, "ArgMin": true,
	"IsNaN": true, "IsInf": true, "Sign": true, "Floor": true, "Ceil": true, "Round": true,
	"RandomNormal": true, "RandomUniform": true, "RandomNormalLike": true, "RandomUniformLike": true,
	"EyeLike": true, "OneHot": true,
}

func differentiable(d onnxio.DType) bool {
	return d == onnxio.Float || d == onnxio.Double || d == onnxio.Float16 || d == onnxio.BFloat16
}

// completeInfo adds the initializers' and declared inputs' types and shapes
// to a copy of info.
func completeInfo(m *onnxio.Model, info map[string]Info) (map[string]Info, error) {
	out := make(map[string]Info, len(info)+16)
	for k, v := range info {
		out[k] = v
	}
	for _, name := range m.Initializers() {
		if _, ok := out[name]; ok {
			continue
		}
		dt, sh, err := m.InitializerInfo(name)
		if err != nil {
			return nil, err
		}
		out[name] = Info{DType: dt, Shape: sh}
	}
	vals := append(m.Inputs(), m.Outputs()...)
	for _, v := range vals {
		if _, ok := out[v.Name]; ok || v.DType == onnxio.Undefined || v.Shape == nil {
			continue
		}
		sh := make([]int64, len(v.Shape))
		fixed := true
		for i, d := range v.Shape {
			sh[i] = d.Value
			if d.Value < 0 {
				fixed = false
			}
		}
		if fixed {
			out[v.Name] = Info{DType: v.DType, Shape: sh}
		}
	}
	for _, n := range m.Nodes() {
		if n.OpType != "Constant" || len(n.Outputs) == 0 {
			continue
		}
		if _, ok := out[n.Outputs[0]]; ok {
			continue
		}
		if a, ok := n.Attr("value"); ok && a.T != nil {
			out[n.Outputs[0]] = Info{DType: a.T.DType, Shape: a.T.Shape}
		}
	}
	return out, nil
}

// ProbeOutput names the two outputs ProbeModel adds for one value: Flat
// holds the value flattened to 1-D (its dtype is the value's) and Shape the
// value's shape followed by one extra element (so that no output is 0-d or
// empty).
type ProbeOutput struct {
	Value, Flat, Shape string
}

// ProbeModel returns a copy of m whose outputs describe every node output of
// the main graph (see ProbeOutput), replacing the original outputs. Running
// it once on a sample and passing the results to ProbeInfo gives the dtypes
// and shapes Options.Info needs. Use a sample of the batch size the gradient
// graph will run with, or any batch size when the model has no axis that
// broadcasts against the batch axis. A graph CheckGraph refuses gives its
// ErrGraph.
func ProbeModel(m *onnxio.Model) (*onnxio.Model, []ProbeOutput, error) {
	if err := CheckGraph(m); err != nil {
		return nil, nil, err
	}
	p := m.Clone()
	b := newBuilder(p, nil, "probe")
	seen := map[string]bool{}
	var po []ProbeOutput
	var outs []onnxio.ValueInfo
	for _, n := range m.Nodes() {
		if n.OpType == "Constant" {
			continue // completeInfo reads the value's type and shape
		}
		for _, o := range n.Outputs {
			if o == "" || seen[o] {
				continue
			}
			seen[o] = true
			f := b.op("Reshape", []string{o, b.ints(-1)})
			sh := b.op("Concat", []string{b.op("Shape", []string{o}), b.ints(-7)}, onnxio.AttrInt("axis", 0))
			po = append(po, ProbeOutput{Value: o, Flat: f, Shape: sh})
			outs = append(outs, onnxio.ValueInfo{Name: f}, onnxio.ValueInfo{Name: sh, DType: onnxio.Int64})
		}
	}
	if err := p.InsertNodes(b.nodes...); err != nil {
		return nil, nil, fmt.Errorf("%w: probe nodes: %w", ErrGraph, err)
	}
	p.SetOutputs(outs)
	return p, po, nil
}

// ProbeInfo builds Options.Info from a run of a probe model: dtype returns
// the element type of an output and ints the values of an int64 output.
func ProbeInfo(po []ProbeOutput, dtype func(output string) (onnxio.DType, error), ints func(output string) ([]int64, error)) (map[string]Info, error) {
	info := make(map[string]Info, len(po))
	for _, p := range po {
		dt, err := dtype(p.Flat)
		if err != nil {
			return nil, err
		}
		sh, err := ints(p.Shape)
		if err != nil {
			return nil, err
		}
		if len(sh) == 0 || sh[len(sh)-1] != -7 {
			return nil, fmt.Errorf("%w: probe output %q is not a shape", ErrInput, p.Shape)
		}
		info[p.Value] = Info{DType: dt, Shape: sh[:len(sh)-1]}
	}
	return info, nil
}

// builder accumulates the backward nodes.
type builder struct {
	m      *onnxio.Model
	info   map[string]Info
	prefix string
	used   map[string]bool
	count  int
	nodes  []onnxio.Node
	consts map[string]string
	opset  int64
}

func newBuilder(m *onnxio.Model, info map[string]Info, prefix string) *builder {
	if prefix == "" {
		prefix = "grad"
	}
	used := map[string]bool{}
	for _, n := range m.Nodes() {
		used[n.Name] = true
		for _, s := range n.Inputs {
			used[s] = true
		}
		for _, s := range n.Outputs {
			used[s] = true
		}
	}
	for _, s := range m.Initializers() {
		used[s] = true
	}
	for _, v := range m.Inputs() {
		used[v.Name] = true
	}
	for _, v := range m.Outputs() {
		used[v.Name] = true
	}
	base := prefix
	for i := 1; ; i++ {
		clash := false
		for u := range used {
			if len(u) >= len(base)+1 && u[:len(base)+1] == base+"/" {
				clash = true
				break
			}
		}
		if !clash {
			break
		}
		base = prefix + strconv.Itoa(i)
	}
	return &builder{m: m, info: info, prefix: base, used: used, consts: map[string]string{}, opset: m.Opsets()[""]}
}

// fresh returns a new unique value name.
func (b *builder) fresh(hint string) string {
	b.count++
	s := b.prefix + "/" + hint + "_" + strconv.Itoa(b.count)
	b.used[s] = true
	return s
}

// named returns prefix/hint when that name is free, else a fresh name.
func (b *builder) named(hint string) string {
	s := b.prefix + "/" + hint
	if b.used[s] {
		return b.fresh(hint)
	}
	b.used[s] = true
	return s
}

// add appends a node and returns its first output.
func (b *builder) add(op string, in, out []string, attrs ...onnxio.Attr) string {
	b.count++
	b.nodes = append(b.nodes, onnxio.Node{Name: b.prefix + "/" + op + "_" + strconv.Itoa(b.count), OpType: op, Inputs: in, Outputs: out, Attrs: attrs})
	if len(out) == 0 {
		return ""
	}
	return out[0]
}

// op adds a single-output node and returns its output.
func (b *builder) op(op string, in []string, attrs ...onnxio.Attr) string {
	return b.add(op, in, []string{b.fresh(op)}, attrs...)
}

func (b *builder) tensor1(v float64, dt onnxio.DType) *onnxio.Tensor {
	t, err := onnxio.FromFloat64("", dt, []int64{1}, []float64{v})
	if err != nil {
		panic(err) // dt is a float type: cannot fail
	}
	return t
}

// scalar returns a rank-0 constant of dtype dt.
func (b *builder) scalar(v float64, dt onnxio.DType) string {
	key := fmt.Sprintf("f%v:%d", v, dt)
	if s, ok := b.consts[key]; ok {
		return s
	}
	t, err := onnxio.FromFloat64("", dt, []int64{}, []float64{v})
	if err != nil {
		panic(err)
	}
	s := b.op("Constant", nil, onnxio.AttrTensorVal("value", t))
	b.consts[key] = s
	return s
}

// ints returns a 1-D int64 constant.
func (b *builder) ints(v ...int64) string {
	key := fmt.Sprint("i", v)
	if s, ok := b.consts[key]; ok {
		return s
	}
	t, err := onnxio.FromInt64("", onnxio.Int64, []int64{int64(len(v))}, v)
	if err != nil {
		panic(err)
	}
	s := b.op("Constant", nil, onnxio.AttrTensorVal("value", t))
	b.consts[key] = s
	return s
}

// constTensor adds a constant holding t.
func (b *builder) constTensor(t *onnxio.Tensor) string {
	return b.op("Constant", nil, onnxio.AttrTensorVal("value", t))
}

func (b *builder) shapeOf(v string) string {
	key := "shape:" + v
	if s, ok := b.consts[key]; ok {
		return s
	}
	s := b.op("Shape", []string{v})
	b.consts[key] = s
	return s
}

func (b *builder) sum(vs []string) string {
	if len(vs) == 1 {
		return vs[0]
	}
	return b.op("Sum", vs)
}

// get returns a value's info or an error.
func (b *builder) get(v string) (Info, error) {
	i, ok := b.info[v]
	if !ok {
		return Info{}, fmt.Errorf("%w: value %q", ErrInfo, v)
	}
	return i, nil
}

func (b *builder) rank(v string) (int, error) {
	i, err := b.get(v)
	if err != nil {
		return 0, err
	}
	return len(i.Shape), nil
}

func (b *builder) dtype(v string) onnxio.DType {
	return b.info[v].DType
}

// unbroadcast reduces g (shaped like the broadcast result out) to the shape
// of target by summing over broadcast axes, found at run time.
func (b *builder) unbroadcast(g, out, target string) (string, error) {
	ti, err := b.get(target)
	if err != nil {
		return "", err
	}
	oi, err := b.get(out)
	if err != nil {
		return "", err
	}
	return b.unbroadcastTo(g, len(oi.Shape), target, ti.Shape)
}

// unbroadcastTo reduces g, of rank rOut, to the run-time shape of target
// (whose probed shape is shape) by summing over the axes where target's
// shape, left-padded with ones to rank rOut, is 1.
func (b *builder) unbroadcastTo(g string, rOut int, target string, shape []int64) (string, error) {
	if len(shape) == rOut {
		has1 := false
		for _, d := range shape {
			if d == 1 {
				has1 = true
			}
		}
		if !has1 {
			return g, nil // no axis of target can be broadcast
		}
	}
	if len(shape) > rOut {
		return "", fmt.Errorf("%w: operand %q has a higher rank than the result", ErrInput, target)
	}
	if len(shape) == 0 {
		return b.op("ReduceSum", []string{g}, onnxio.AttrInt("keepdims", 0)), nil
	}
	st := b.shapeOf(target)
	padded := st
	if k := rOut - len(shape); k > 0 {
		ones := make([]int64, k)
		for i := range ones {
			ones[i] = 1
		}
		padded = b.op("Concat", []string{b.ints(ones...), st}, onnxio.AttrInt("axis", 0))
	}
	eq := b.op("Equal", []string{padded, b.ints(1)})
	nz := b.op("NonZero", []string{eq})
	axes := b.op("Reshape", []string{nz, b.ints(-1)})
	r := b.op("ReduceSum", []string{g, axes}, onnxio.AttrInt("keepdims", 1), onnxio.AttrInt("noop_with_empty_axes", 1))
	return b.op("Reshape", []string{r, st}), nil
}

// reduceSum sums x over static axes.
func (b *builder) reduceSum(x string, axes []int64, keep bool) string {
	k := int64(0)
	if keep {
		k = 1
	}
	return b.op("ReduceSum", []string{x, b.ints(axes...)}, onnxio.AttrInt("keepdims", k))
}

// reshapeLike reshapes g to the run-time shape of x.
func (b *builder) reshapeLike(g, x string) string {
	return b.op("Reshape", []string{g, b.shapeOf(x)})
}

// scatterAdd returns a tensor shaped like x that holds zeros except where
// flat indices idx (any shape, same count as g) receive g's values, added.
func (b *builder) scatterAdd(x, idx, g string) string {
	dt := b.dtype(x)
	n := b.op("Size", []string{x})
	n1 := b.op("Reshape", []string{n, b.ints(1)})
	zeros := b.op("ConstantOfShape", []string{n1}, onnxio.AttrTensorVal("value", b.tensor1(0, dt)))
	fi := b.op("Reshape", []string{idx, b.ints(-1)})
	fg := b.op("Reshape", []string{g, b.ints(-1)})
	s := b.op("ScatterElements", []string{zeros, fi, fg}, onnxio.AttrInt("axis", 0), onnxio.AttrStr("reduction", "add"))
	return b.reshapeLike(s, x)
}

// indexTensor returns an int64 tensor shaped like x holding 0..size-1.
func (b *builder) indexTensor(x string) string {
	n := b.op("Size", []string{x})
	r := b.op("Range", []string{b.int0(0), n, b.int0(1)})
	return b.reshapeLike(r, x)
}

func (b *builder) int0(v int64) string {
	key := fmt.Sprint("s", v)
	if s, ok := b.consts[key]; ok {
		return s
	}
	t, err := onnxio.FromInt64("", onnxio.Int64, []int64{}, []int64{v})
	if err != nil {
		panic(err)
	}
	s := b.op("Constant", nil, onnxio.AttrTensorVal("value", t))
	b.consts[key] = s
	return s
}

func normAxis(a int64, r int) (int64, error) {
	if a < 0 {
		a += int64(r)
	}
	if a < 0 || a >= int64(r) {
		return 0, fmt.Errorf("%w: axis %d out of range for rank %d", ErrInput, a, r)
	}
	return a, nil
}

// sortedKeys is used for deterministic iteration in tests and errors.
func sortedKeys(m map[string]bool) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}
