// Package evaltest provides fake sessions for evalharness: an Opener that
// runs models with a small pure-Go interpreter instead of ONNX Runtime, and
// a Recorder that counts what is opened and run. Set
// evalharness.SessionOptions.Open to Open (or to a Recorder's Open) and
// capture, fisher, the search and EvaluateModels run without the ONNX
// Runtime library, so their logic can be tested anywhere.
//
// The interpreter computes in float64 and knows the ops of small
// multilayer perceptrons and of the gradient graphs fisher builds for them:
// Add, Sub, Mul, Div, Sum, MatMul, Gemm, Relu, Tanh, Sigmoid, Softmax,
// Identity, Constant, Shape, Reshape, Flatten, Unsqueeze, Expand, Tile,
// Slice, Concat, Transpose, ReduceSum, Equal, Greater, Where, NonZero,
// Gather. Any other op is an error when the
// session is opened. It is a test double, not an engine: it is slow, and
// float32 results differ from ONNX Runtime's in the last bits.
package evaltest

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

// ErrUnsupported reports a model with an op the interpreter does not know.
var ErrUnsupported = errors.New("evaltest: unsupported model")

// Open is an evalharness.Opener that interprets req's model in Go.
func Open(req evalharness.OpenRequest, opt evalharness.SessionOptions) (evalharness.SessionRunner, error) {
	var m *onnxio.Model
	var err error
	if len(req.Model) > 0 {
		m, err = onnxio.LoadBytes(req.Model, "")
	} else {
		m, err = onnxio.Load(req.Path)
	}
	if err != nil {
		return nil, err
	}
	return newSession(m, req.Outputs)
}

// Recorder is an Opener that opens sessions with Open and records every
// request and run; it is safe for concurrent use.
type Recorder struct {
	mu       sync.Mutex
	requests []evalharness.OpenRequest
	runs     int
	open     int
	// Fail, when set, is returned by the next Open instead of a session
	// (then cleared).
	Fail error
}

// Open records req and opens a session with Open.
func (r *Recorder) Open(req evalharness.OpenRequest, opt evalharness.SessionOptions) (evalharness.SessionRunner, error) {
	r.mu.Lock()
	r.requests = append(r.requests, req)
	fail := r.Fail
	r.Fail = nil
	r.mu.Unlock()
	if fail != nil {
		return nil, fail
	}
	s, err := Open(req, opt)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.open++
	r.mu.Unlock()
	return &recorded{SessionRunner: s, r: r}, nil
}

// Requests returns the requests recorded so far.
func (r *Recorder) Requests() []evalharness.OpenRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.requests)
}

// Runs returns how many batches the recorded sessions ran.
func (r *Recorder) Runs() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runs
}

// OpenSessions returns how many recorded sessions are open (opened, not
// closed).
func (r *Recorder) OpenSessions() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.open
}

type recorded struct {
	evalharness.SessionRunner
	r      *Recorder
	closed bool
}

func (s *recorded) Run(in map[string]*evalharness.Array) ([]*evalharness.Array, error) {
	s.r.mu.Lock()
	s.r.runs++
	s.r.mu.Unlock()
	return s.SessionRunner.Run(in)
}

func (s *recorded) Close() error {
	s.r.mu.Lock()
	if !s.closed {
		s.closed = true
		s.r.open--
	}
	s.r.mu.Unlock()
	return s.SessionRunner.Close()
}

// value is a tensor being computed: its dtype, shape and elements.
type value struct {
	dt    onnxio.DType
	shape []int64
	v     []float64
}

func size(shape []int64) int {
	n := 1
	for _, d := range shape {
		n *= int(d)
	}
	return n
}

// session interprets one model.
type session struct {
	nodes   []onnxio.Node
	consts  map[string]*value
	inputs  []evalharness.TensorInfo
	outputs []evalharness.TensorInfo
}

func newSession(m *onnxio.Model, outs []string) (*session, error) {
	s := &session{nodes: m.Nodes(), consts: map[string]*value{}, inputs: evalharness.ModelInputs(m)}
	for _, name := range m.Initializers() {
		t, err := m.Initializer(name)
		if err != nil {
			return nil, err
		}
		v, err := fromTensor(t)
		if err != nil {
			return nil, err
		}
		s.consts[name] = v
	}
	var missing []string
	for _, n := range s.nodes {
		if _, ok := ops[n.OpType]; (!ok || (n.Domain != "" && n.Domain != "ai.onnx")) && !slices.Contains(missing, n.OpType) {
			missing = append(missing, n.OpType)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, fmt.Errorf("%w: ops %s", ErrUnsupported, strings.Join(missing, ", "))
	}
	for i, n := range s.nodes {
		if n.OpType == "Constant" {
			t, err := m.NodeTensor(n, "value")
			if err != nil {
				return nil, fmt.Errorf("%w: node %q: %v", ErrUnsupported, n.Name, err)
			}
			v, err := fromTensor(t)
			if err != nil {
				return nil, err
			}
			s.consts[n.Outputs[0]] = v
			s.nodes[i].OpType = "" // evaluated once, here
		}
	}
	if len(outs) == 0 {
		for _, o := range m.Outputs() {
			outs = append(outs, o.Name)
		}
	}
	for _, name := range outs {
		vi, _ := m.ValueInfo(name)
		info := evalharness.TensorInfo{Name: name, DType: vi.DType}
		if info.DType == onnxio.Undefined {
			info.DType = onnxio.Float
		}
		if vi.Shape != nil {
			for _, d := range vi.Shape {
				x := d.Value
				if d.Param != "" || x < 0 {
					x = -1
				}
				info.Shape = append(info.Shape, x)
			}
		}
		s.outputs = append(s.outputs, info)
	}
	return s, nil
}

func fromTensor(t *onnxio.Tensor) (*value, error) {
	f, err := t.Float64()
	if err != nil {
		return nil, err
	}
	return &value{dt: t.DType, shape: slices.Clone(t.Shape), v: f}, nil
}

// Inputs describes the model's inputs.
func (s *session) Inputs() []evalharness.TensorInfo { return s.inputs }

// Outputs describes the outputs the session returns.
func (s *session) Outputs() []evalharness.TensorInfo { return s.outputs }

// Close does nothing.
func (s *session) Close() error { return nil }

// Run interprets the model on one batch.
func (s *session) Run(in map[string]*evalharness.Array) ([]*evalharness.Array, error) {
	env := make(map[string]*value, len(s.consts)+len(in))
	for k, v := range s.consts {
		env[k] = v
	}
	for _, info := range s.inputs {
		a, ok := in[info.Name]
		if !ok {
			return nil, fmt.Errorf("evaltest: input %q not fed", info.Name)
		}
		f, err := a.Float64()
		if err != nil {
			return nil, err
		}
		env[info.Name] = &value{dt: a.DType, shape: slices.Clone(a.Shape), v: f}
	}
	for _, n := range s.nodes {
		if n.OpType == "" {
			continue
		}
		args := make([]*value, len(n.Inputs))
		for i, name := range n.Inputs {
			if name == "" {
				continue
			}
			v, ok := env[name]
			if !ok {
				return nil, fmt.Errorf("evaltest: node %q reads %q, which is not computed", n.Name, name)
			}
			args[i] = v
		}
		outs, err := ops[n.OpType](n, args)
		if err != nil {
			return nil, fmt.Errorf("evaltest: node %q (%s): %w", n.Name, n.OpType, err)
		}
		for i, o := range n.Outputs {
			if i < len(outs) && o != "" {
				env[o] = outs[i]
			}
		}
	}
	res := make([]*evalharness.Array, len(s.outputs))
	for i, info := range s.outputs {
		v, ok := env[info.Name]
		if !ok {
			return nil, fmt.Errorf("evaltest: output %q is not computed", info.Name)
		}
		res[i] = toArray(v)
	}
	return res, nil
}

func toArray(v *value) *evalharness.Array {
	switch v.dt {
	case onnxio.Int64, onnxio.Int32:
		x := make([]int64, len(v.v))
		for i, f := range v.v {
			x[i] = toInt(f)
		}
		return evalharness.FromInt64(v.shape, x)
	case onnxio.Bool:
		b := make([]byte, len(v.v))
		for i, f := range v.v {
			if f != 0 {
				b[i] = 1
			}
		}
		return &evalharness.Array{DType: onnxio.Bool, Shape: slices.Clone(v.shape), Data: b}
	case onnxio.Double:
		return evalharness.FromFloat64(v.shape, v.v)
	}
	x := make([]float32, len(v.v))
	for i, f := range v.v {
		x[i] = float32(f)
	}
	return evalharness.FromFloat32(v.shape, x)
}

type opFunc func(n onnxio.Node, in []*value) ([]*value, error)

var ops map[string]opFunc

func init() {
	ops = map[string]opFunc{
		"Constant": nil, // replaced by its value when the session opens
		"Identity": func(n onnxio.Node, in []*value) ([]*value, error) { return []*value{in[0]}, nil },
		"Add":      binary(func(a, b float64) float64 { return a + b }, false),
		"Sub":      binary(func(a, b float64) float64 { return a - b }, false),
		"Mul":      binary(func(a, b float64) float64 { return a * b }, false),
		"Div":      binary(func(a, b float64) float64 { return a / b }, false),
		"Equal":    binary(func(a, b float64) float64 { return b2f(a == b) }, true),
		"Greater":  binary(func(a, b float64) float64 { return b2f(a > b) }, true),
		"Relu":     unary(func(x float64) float64 { return math.Max(x, 0) }),
		"Tanh":     unary(math.Tanh),
		"Sigmoid":  unary(func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }),
		"Sum":      sum,
		"Where":    where,
		"MatMul":   func(n onnxio.Node, in []*value) ([]*value, error) { return one(matmul(in[0], in[1])) },
		"Gemm":     gemm,
		"Softmax":  softmax,
		"Shape":    shapeOp,
		"Reshape":  reshape,
		"Concat":   concat,
		"Transpose": func(n onnxio.Node, in []*value) ([]*value, error) {
			return one(transpose(in[0], n.Ints("perm")))
		},
		"ReduceSum": reduceSum,
		"NonZero":   nonZero,
		"Gather":    gather,
		"Flatten":   flatten,
		"Unsqueeze": unsqueeze,
		"Expand":    expand,
		"Tile":      tile,
		"Slice":     slice,
	}
}

// toInt converts an integer held as float64, saturating the sentinels
// (INT64_MAX "to the end") that float64 cannot hold exactly.
func toInt(f float64) int64 {
	switch {
	case f >= math.MaxInt64:
		return math.MaxInt64
	case f <= math.MinInt64:
		return math.MinInt64
	}
	return int64(f)
}

func one(v *value, err error) ([]*value, error) {
	if err != nil {
		return nil, err
	}
	return []*value{v}, nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unary(f func(float64) float64) opFunc {
	return func(n onnxio.Node, in []*value) ([]*value, error) {
		x := in[0]
		out := &value{dt: x.dt, shape: slices.Clone(x.shape), v: make([]float64, len(x.v))}
		for i, a := range x.v {
			out.v[i] = f(a)
		}
		return []*value{out}, nil
	}
}

// broadcast returns the numpy broadcast of shapes.
func broadcast(shapes ...[]int64) ([]int64, error) {
	rank := 0
	for _, s := range shapes {
		rank = max(rank, len(s))
	}
	out := make([]int64, rank)
	for i := range out {
		out[i] = 1
	}
	for _, s := range shapes {
		for k, d := range s {
			j := rank - len(s) + k
			switch {
			case d == out[j] || d == 1:
			case out[j] == 1:
				out[j] = d
			default:
				return nil, fmt.Errorf("shapes %v do not broadcast", shapes)
			}
		}
	}
	return out, nil
}

// index returns, for each element of shape out, the index of the element
// of shape s it reads under broadcasting.
func index(s, out []int64) []int {
	n := size(out)
	idx := make([]int, n)
	off := len(out) - len(s)
	stride := make([]int, len(out))
	st := 1
	for j := len(out) - 1; j >= 0; j-- {
		if j >= off && s[j-off] != 1 {
			stride[j] = st
			st *= int(s[j-off])
		}
	}
	coord := make([]int, len(out))
	for i := 0; i < n; i++ {
		p := 0
		for j, c := range coord {
			p += c * stride[j]
		}
		idx[i] = p
		for j := len(out) - 1; j >= 0; j-- {
			coord[j]++
			if coord[j] < int(out[j]) {
				break
			}
			coord[j] = 0
		}
	}
	return idx
}

func binary(f func(a, b float64) float64, boolean bool) opFunc {
	return func(n onnxio.Node, in []*value) ([]*value, error) {
		a, b := in[0], in[1]
		shape, err := broadcast(a.shape, b.shape)
		if err != nil {
			return nil, err
		}
		ia, ib := index(a.shape, shape), index(b.shape, shape)
		dt := a.dt
		if boolean {
			dt = onnxio.Bool
		}
		out := &value{dt: dt, shape: shape, v: make([]float64, len(ia))}
		for i := range out.v {
			out.v[i] = f(a.v[ia[i]], b.v[ib[i]])
		}
		return []*value{out}, nil
	}
}

func sum(n onnxio.Node, in []*value) ([]*value, error) {
	acc := in[0]
	add := binary(func(a, b float64) float64 { return a + b }, false)
	for _, x := range in[1:] {
		r, err := add(n, []*value{acc, x})
		if err != nil {
			return nil, err
		}
		acc = r[0]
	}
	return []*value{acc}, nil
}

func where(n onnxio.Node, in []*value) ([]*value, error) {
	c, a, b := in[0], in[1], in[2]
	shape, err := broadcast(c.shape, a.shape, b.shape)
	if err != nil {
		return nil, err
	}
	ic, ia, ib := index(c.shape, shape), index(a.shape, shape), index(b.shape, shape)
	out := &value{dt: a.dt, shape: shape, v: make([]float64, len(ic))}
	for i := range out.v {
		if c.v[ic[i]] != 0 {
			out.v[i] = a.v[ia[i]]
		} else {
			out.v[i] = b.v[ib[i]]
		}
	}
	return []*value{out}, nil
}

// matmul is numpy's matmul: batch axes broadcast, 1-D operands promoted.
func matmul(a, b *value) (*value, error) {
	as, bs := slices.Clone(a.shape), slices.Clone(b.shape)
	if len(as) == 0 || len(bs) == 0 {
		return nil, fmt.Errorf("MatMul of a scalar")
	}
	vecA, vecB := len(as) == 1, len(bs) == 1
	if vecA {
		as = []int64{1, as[0]}
	}
	if vecB {
		bs = []int64{bs[0], 1}
	}
	m, k, k2, p := as[len(as)-2], as[len(as)-1], bs[len(bs)-2], bs[len(bs)-1]
	if k != k2 {
		return nil, fmt.Errorf("MatMul %v × %v", a.shape, b.shape)
	}
	batch, err := broadcast(as[:len(as)-2], bs[:len(bs)-2])
	if err != nil {
		return nil, err
	}
	ia, ib := index(as[:len(as)-2], batch), index(bs[:len(bs)-2], batch)
	shape := append(slices.Clone(batch), m, p)
	out := &value{dt: a.dt, shape: shape, v: make([]float64, size(shape))}
	mk, kp, mp := int(m*k), int(k*p), int(m*p)
	for t := range ia {
		x, y, z := a.v[ia[t]*mk:], b.v[ib[t]*kp:], out.v[t*mp:]
		for i := 0; i < int(m); i++ {
			for q := 0; q < int(k); q++ {
				xv := x[i*int(k)+q]
				if xv == 0 {
					continue
				}
				for j := 0; j < int(p); j++ {
					z[i*int(p)+j] += xv * y[q*int(p)+j]
				}
			}
		}
	}
	if vecA {
		shape = append(shape[:len(shape)-2], shape[len(shape)-1])
	}
	if vecB {
		shape = shape[:len(shape)-1]
	}
	out.shape = shape
	return out, nil
}

func transpose(x *value, perm []int64) (*value, error) {
	r := len(x.shape)
	if perm == nil {
		for i := r - 1; i >= 0; i-- {
			perm = append(perm, int64(i))
		}
	}
	if len(perm) != r {
		return nil, fmt.Errorf("perm %v for rank %d", perm, r)
	}
	shape := make([]int64, r)
	for i, p := range perm {
		shape[i] = x.shape[p]
	}
	strides := make([]int, r)
	st := 1
	for j := r - 1; j >= 0; j-- {
		strides[j] = st
		st *= int(x.shape[j])
	}
	out := &value{dt: x.dt, shape: shape, v: make([]float64, len(x.v))}
	coord := make([]int, r)
	for i := range out.v {
		p := 0
		for j, c := range coord {
			p += c * strides[perm[j]]
		}
		out.v[i] = x.v[p]
		for j := r - 1; j >= 0; j-- {
			coord[j]++
			if coord[j] < int(shape[j]) {
				break
			}
			coord[j] = 0
		}
	}
	return out, nil
}

func gemm(n onnxio.Node, in []*value) ([]*value, error) {
	a, b := in[0], in[1]
	var err error
	if n.Int("transA", 0) != 0 {
		if a, err = transpose(a, nil); err != nil {
			return nil, err
		}
	}
	if n.Int("transB", 0) != 0 {
		if b, err = transpose(b, nil); err != nil {
			return nil, err
		}
	}
	y, err := matmul(a, b)
	if err != nil {
		return nil, err
	}
	alpha, beta := float64(n.Float("alpha", 1)), float64(n.Float("beta", 1))
	for i := range y.v {
		y.v[i] *= alpha
	}
	if len(in) > 2 && in[2] != nil {
		c := in[2]
		ic := index(c.shape, y.shape)
		for i := range y.v {
			y.v[i] += beta * c.v[ic[i]]
		}
	}
	return []*value{y}, nil
}

func axisOf(a int64, rank int) (int, error) {
	if a < 0 {
		a += int64(rank)
	}
	if a < 0 || a >= int64(rank) {
		return 0, fmt.Errorf("axis %d for rank %d", a, rank)
	}
	return int(a), nil
}

func softmax(n onnxio.Node, in []*value) ([]*value, error) {
	x := in[0]
	ax, err := axisOf(n.Int("axis", -1), len(x.shape))
	if err != nil {
		return nil, err
	}
	outer, d, inner := size(x.shape[:ax]), int(x.shape[ax]), size(x.shape[ax+1:])
	out := &value{dt: x.dt, shape: slices.Clone(x.shape), v: make([]float64, len(x.v))}
	for o := 0; o < outer; o++ {
		for i := 0; i < inner; i++ {
			at := func(k int) int { return (o*d+k)*inner + i }
			mx := math.Inf(-1)
			for k := 0; k < d; k++ {
				mx = math.Max(mx, x.v[at(k)])
			}
			s := 0.0
			for k := 0; k < d; k++ {
				out.v[at(k)] = math.Exp(x.v[at(k)] - mx)
				s += out.v[at(k)]
			}
			for k := 0; k < d; k++ {
				out.v[at(k)] /= s
			}
		}
	}
	return []*value{out}, nil
}

func shapeOp(n onnxio.Node, in []*value) ([]*value, error) {
	s := in[0].shape
	r := int64(len(s))
	start, end := n.Int("start", 0), n.Int("end", r)
	clamp := func(v int64) int64 {
		if v < 0 {
			v += r
		}
		return min(max(v, 0), r)
	}
	start, end = clamp(start), clamp(end)
	out := &value{dt: onnxio.Int64, shape: []int64{max(end-start, 0)}}
	for _, d := range s[start:max(end, start)] {
		out.v = append(out.v, float64(d))
	}
	return []*value{out}, nil
}

func reshape(n onnxio.Node, in []*value) ([]*value, error) {
	x, sv := in[0], in[1]
	shape := make([]int64, len(sv.v))
	infer := -1
	known := 1
	for i, f := range sv.v {
		d := toInt(f)
		switch {
		case d == 0 && n.Int("allowzero", 0) == 0:
			if i >= len(x.shape) {
				return nil, fmt.Errorf("reshape: 0 at axis %d of rank %d", i, len(x.shape))
			}
			d = x.shape[i]
		case d == -1:
			infer = i
			continue
		}
		shape[i] = d
		known *= int(d)
	}
	if infer >= 0 {
		if known == 0 {
			return nil, fmt.Errorf("reshape: -1 with a zero dim")
		}
		shape[infer] = int64(len(x.v) / known)
		known *= int(shape[infer])
	}
	if known != len(x.v) {
		return nil, fmt.Errorf("reshape %v to %v", x.shape, sv.v)
	}
	return []*value{{dt: x.dt, shape: shape, v: x.v}}, nil
}

func concat(n onnxio.Node, in []*value) ([]*value, error) {
	first := in[0]
	ax, err := axisOf(n.Int("axis", 0), len(first.shape))
	if err != nil {
		return nil, err
	}
	shape := slices.Clone(first.shape)
	shape[ax] = 0
	for _, x := range in {
		if len(x.shape) != len(shape) {
			return nil, fmt.Errorf("concat of ranks %d and %d", len(x.shape), len(shape))
		}
		shape[ax] += x.shape[ax]
	}
	outer := size(shape[:ax])
	out := &value{dt: first.dt, shape: shape}
	for o := 0; o < outer; o++ {
		for _, x := range in {
			chunk := int(x.shape[ax]) * size(x.shape[ax+1:])
			out.v = append(out.v, x.v[o*chunk:(o+1)*chunk]...)
		}
	}
	return []*value{out}, nil
}

func reduceSum(n onnxio.Node, in []*value) ([]*value, error) {
	x := in[0]
	var axes []int64
	if len(in) > 1 && in[1] != nil {
		for _, f := range in[1].v {
			axes = append(axes, toInt(f))
		}
	} else {
		axes = n.Ints("axes")
	}
	if len(axes) == 0 {
		if n.Int("noop_with_empty_axes", 0) != 0 {
			return []*value{x}, nil
		}
		for i := range x.shape {
			axes = append(axes, int64(i))
		}
	}
	reduce := make([]bool, len(x.shape))
	for _, a := range axes {
		ax, err := axisOf(a, len(x.shape))
		if err != nil {
			return nil, err
		}
		reduce[ax] = true
	}
	keep := n.Int("keepdims", 1) != 0
	kept := make([]int64, len(x.shape)) // the shape with reduced axes as 1
	var shape []int64
	for i, d := range x.shape {
		kept[i] = d
		if reduce[i] {
			kept[i] = 1
			if keep {
				shape = append(shape, 1)
			}
			continue
		}
		shape = append(shape, d)
	}
	out := &value{dt: x.dt, shape: shape, v: make([]float64, size(kept))}
	// each element of x adds into the element of kept it broadcasts from
	idx := index(kept, x.shape)
	for i, f := range x.v {
		out.v[idx[i]] += f
	}
	return []*value{out}, nil
}

func nonZero(n onnxio.Node, in []*value) ([]*value, error) {
	x := in[0]
	r := len(x.shape)
	var hits [][]int64
	coord := make([]int64, r)
	for _, f := range x.v {
		if f != 0 {
			hits = append(hits, slices.Clone(coord))
		}
		for j := r - 1; j >= 0; j-- {
			coord[j]++
			if coord[j] < x.shape[j] {
				break
			}
			coord[j] = 0
		}
	}
	out := &value{dt: onnxio.Int64, shape: []int64{int64(r), int64(len(hits))}, v: make([]float64, r*len(hits))}
	for k, h := range hits {
		for j, c := range h {
			out.v[j*len(hits)+k] = float64(c)
		}
	}
	return []*value{out}, nil
}

func gather(n onnxio.Node, in []*value) ([]*value, error) {
	x, ix := in[0], in[1]
	ax, err := axisOf(n.Int("axis", 0), len(x.shape))
	if err != nil {
		return nil, err
	}
	shape := append(append(slices.Clone(x.shape[:ax]), ix.shape...), x.shape[ax+1:]...)
	outer, d, inner := size(x.shape[:ax]), int(x.shape[ax]), size(x.shape[ax+1:])
	out := &value{dt: x.dt, shape: shape}
	for o := 0; o < outer; o++ {
		for _, f := range ix.v {
			k := int(f)
			if k < 0 {
				k += d
			}
			if k < 0 || k >= d {
				return nil, fmt.Errorf("gather index %d out of [0, %d)", int(f), d)
			}
			out.v = append(out.v, x.v[(o*d+k)*inner:(o*d+k+1)*inner]...)
		}
	}
	return []*value{out}, nil
}

func flatten(n onnxio.Node, in []*value) ([]*value, error) {
	x := in[0]
	ax := n.Int("axis", 1)
	if ax < 0 {
		ax += int64(len(x.shape))
	}
	if ax < 0 || ax > int64(len(x.shape)) {
		return nil, fmt.Errorf("axis %d for rank %d", n.Int("axis", 1), len(x.shape))
	}
	shape := []int64{int64(size(x.shape[:ax])), int64(size(x.shape[ax:]))}
	return []*value{{dt: x.dt, shape: shape, v: x.v}}, nil
}

// ints returns the int64 values of an optional input, or attr's.
func ints(n onnxio.Node, in []*value, i int, attr string) []int64 {
	if i < len(in) && in[i] != nil {
		out := make([]int64, len(in[i].v))
		for k, f := range in[i].v {
			out[k] = toInt(f)
		}
		return out
	}
	return n.Ints(attr)
}

func unsqueeze(n onnxio.Node, in []*value) ([]*value, error) {
	x := in[0]
	axes := ints(n, in, 1, "axes")
	r := len(x.shape) + len(axes)
	ones := make([]bool, r)
	for _, a := range axes {
		ax, err := axisOf(a, r)
		if err != nil {
			return nil, err
		}
		ones[ax] = true
	}
	shape := make([]int64, 0, r)
	k := 0
	for i := 0; i < r; i++ {
		if ones[i] {
			shape = append(shape, 1)
		} else {
			shape = append(shape, x.shape[k])
			k++
		}
	}
	return []*value{{dt: x.dt, shape: shape, v: x.v}}, nil
}

// gatherIndex returns a value of shape out whose elements are x's at idx.
func gatherIndex(x *value, out []int64, idx []int) *value {
	v := &value{dt: x.dt, shape: out, v: make([]float64, len(idx))}
	for i, p := range idx {
		v.v[i] = x.v[p]
	}
	return v
}

func expand(n onnxio.Node, in []*value) ([]*value, error) {
	x := in[0]
	shape, err := broadcast(x.shape, ints(n, in, 1, ""))
	if err != nil {
		return nil, err
	}
	return []*value{gatherIndex(x, shape, index(x.shape, shape))}, nil
}

// walk calls fn with the coordinates of every element of shape, in order.
func walk(shape []int64, fn func(coord []int64)) {
	n := size(shape)
	coord := make([]int64, len(shape))
	for i := 0; i < n; i++ {
		fn(coord)
		for j := len(shape) - 1; j >= 0; j-- {
			coord[j]++
			if coord[j] < shape[j] {
				break
			}
			coord[j] = 0
		}
	}
}

// offset returns the position of coord in a C-ordered array of shape.
func offset(shape, coord []int64) int {
	p := 0
	for j, c := range coord {
		p = p*int(shape[j]) + int(c)
	}
	return p
}

func tile(n onnxio.Node, in []*value) ([]*value, error) {
	x := in[0]
	rep := ints(n, in, 1, "")
	if len(rep) != len(x.shape) {
		return nil, fmt.Errorf("repeats %v for rank %d", rep, len(x.shape))
	}
	shape := make([]int64, len(rep))
	for i, r := range rep {
		shape[i] = x.shape[i] * r
	}
	var idx []int
	src := make([]int64, len(shape))
	walk(shape, func(c []int64) {
		for j := range c {
			src[j] = c[j] % x.shape[j]
		}
		idx = append(idx, offset(x.shape, src))
	})
	return []*value{gatherIndex(x, shape, idx)}, nil
}

func slice(n onnxio.Node, in []*value) ([]*value, error) {
	x := in[0]
	r := len(x.shape)
	starts, ends := ints(n, in, 1, "starts"), ints(n, in, 2, "ends")
	axes, steps := ints(n, in, 3, "axes"), ints(n, in, 4, "steps")
	lo, step := make([]int64, r), make([]int64, r)
	shape := slices.Clone(x.shape)
	for i := range step {
		step[i] = 1
	}
	for k := range starts {
		ax := k
		if axes != nil {
			a, err := axisOf(axes[k], r)
			if err != nil {
				return nil, err
			}
			ax = a
		}
		st := int64(1)
		if steps != nil {
			st = steps[k]
		}
		if st == 0 {
			return nil, fmt.Errorf("slice step 0")
		}
		d := x.shape[ax]
		b, e := starts[k], ends[k]
		if b < 0 {
			b += d
		}
		if e < 0 {
			e += d
		}
		if st > 0 {
			b, e = min(max(b, 0), d), min(max(e, 0), d)
			shape[ax] = max(0, (e-b+st-1)/st)
		} else {
			b, e = min(max(b, -1), d-1), min(max(e, -1), d-1)
			shape[ax] = max(0, (b-e-st-1)/(-st))
		}
		lo[ax], step[ax] = b, st
	}
	var idx []int
	src := make([]int64, r)
	walk(shape, func(c []int64) {
		for j := range c {
			src[j] = lo[j] + c[j]*step[j]
		}
		idx = append(idx, offset(x.shape, src))
	})
	return []*value{gatherIndex(x, shape, idx)}, nil
}
