package autodiff

import (
	"fmt"
	"math"

	"github.com/onnxpost/onnxpost/onnxio"
)

// rule returns the gradient of each input of n (or "" where none is
// wanted), given the gradients dys of its outputs ("" for outputs that carry
// none).
type rule func(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error)

var rules map[string]rule

func init() {
	rules = map[string]rule{
		"Add": gradAdd, "Sub": gradSub, "Mul": gradMul, "Div": gradDiv,
		"Neg": unary(func(b *builder, x, y, dy string) string { return b.op("Neg", []string{dy}) }),
		"Abs": unary(func(b *builder, x, y, dy string) string {
			return b.op("Mul", []string{dy, b.op("Sign", []string{x})})
		}),
		"Exp": unary(func(b *builder, x, y, dy string) string { return b.op("Mul", []string{dy, y}) }),
		"Log": unary(func(b *builder, x, y, dy string) string { return b.op("Div", []string{dy, x}) }),
		"Sqrt": unary(func(b *builder, x, y, dy string) string {
			return b.op("Div", []string{dy, b.op("Mul", []string{y, b.scalar(2, b.dtype(x))})})
		}),
		"Reciprocal": unary(func(b *builder, x, y, dy string) string {
			return b.op("Neg", []string{b.op("Mul", []string{dy, b.op("Mul", []string{y, y})})})
		}),
		"Relu": unary(func(b *builder, x, y, dy string) string {
			dt := b.dtype(x)
			return b.op("Where", []string{b.op("Greater", []string{x, b.scalar(0, dt)}), dy, b.scalar(0, dt)})
		}),
		"Sigmoid": unary(func(b *builder, x, y, dy string) string {
			dt := b.dtype(x)
			return b.op("Mul", []string{dy, b.op("Mul", []string{y, b.op("Sub", []string{b.scalar(1, dt), y})})})
		}),
		"Tanh": unary(func(b *builder, x, y, dy string) string {
			dt := b.dtype(x)
			return b.op("Mul", []string{dy, b.op("Sub", []string{b.scalar(1, dt), b.op("Mul", []string{y, y})})})
		}),
		"Sin": unary(func(b *builder, x, y, dy string) string {
			return b.op("Mul", []string{dy, b.op("Cos", []string{x})})
		}),
		"Cos": unary(func(b *builder, x, y, dy string) string {
			return b.op("Neg", []string{b.op("Mul", []string{dy, b.op("Sin", []string{x})})})
		}),
		"Erf": unary(func(b *builder, x, y, dy string) string {
			dt := b.dtype(x)
			e := b.op("Exp", []string{b.op("Neg", []string{b.op("Mul", []string{x, x})})})
			return b.op("Mul", []string{dy, b.op("Mul", []string{e, b.scalar(2/math.Sqrt(math.Pi), dt)})})
		}),
		"Identity": passThrough, "Dropout": gradDropout,
		"Reshape": gradReshape, "Flatten": gradReshape, "Squeeze": gradReshape, "Unsqueeze": gradReshape,
		"Expand": gradExpand, "Cast": gradCast,
		"Transpose": gradTranspose, "Concat": gradConcat, "Slice": gradSlice, "Gather": gradGather,
		"Softmax": gradSoftmax, "LogSoftmax": gradLogSoftmax,
		"MatMul": gradMatMul, "Gemm": gradGemm,
		"Pow": gradPow, "Where": gradWhere, "LeakyRelu": gradLeakyRelu, "Clip": gradClip, "Gelu": gradGelu,
		"ReduceSum": gradReduce, "ReduceMean": gradReduce,
		"Conv": gradConv, "MaxPool": gradMaxPool, "AveragePool": gradAveragePool,
		"GlobalAveragePool": gradGlobalAveragePool, "GlobalMaxPool": gradGlobalMaxPool,
		"BatchNormalization": gradBatchNorm, "LayerNormalization": gradLayerNorm,
	}
}

// unary wraps an elementwise rule dx = f(x, y, dy).
func unary(f func(b *builder, x, y, dy string) string) rule {
	return func(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
		if dys[0] == "" {
			return nil, nil
		}
		if _, err := b.get(n.Inputs[0]); err != nil {
			return nil, err
		}
		return []string{f(b, n.Inputs[0], n.Outputs[0], dys[0])}, nil
	}
}

func passThrough(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	return []string{dys[0]}, nil
}

func gradDropout(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	if t := n.Input(2); t != "" {
		return nil, fmt.Errorf("%w: Dropout with a training_mode input (only inference Dropout is supported)", ErrUnsupported)
	}
	return []string{dys[0]}, nil
}

func gradAdd(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	return binary(b, n, want, func(i int) (string, error) { return dys[0], nil })
}

func gradSub(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	return binary(b, n, want, func(i int) (string, error) {
		if i == 0 {
			return dys[0], nil
		}
		return b.op("Neg", []string{dys[0]}), nil
	})
}

func gradMul(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	return binary(b, n, want, func(i int) (string, error) {
		return b.op("Mul", []string{dys[0], n.Inputs[1-i]}), nil
	})
}

func gradDiv(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	return binary(b, n, want, func(i int) (string, error) {
		if i == 0 {
			return b.op("Div", []string{dys[0], n.Inputs[1]}), nil
		}
		// d(a/b)/db = -y/b
		t := b.op("Div", []string{b.op("Mul", []string{dys[0], n.Outputs[0]}), n.Inputs[1]})
		return b.op("Neg", []string{t}), nil
	})
}

// binary computes the gradient of each wanted input of a broadcasting op
// with g(i) (shaped like the output) and reduces it to the input's shape.
func binary(b *builder, n onnxio.Node, want []bool, g func(i int) (string, error)) ([]string, error) {
	out := make([]string, len(n.Inputs))
	for i := range n.Inputs {
		if !want[i] {
			continue
		}
		gi, err := g(i)
		if err != nil {
			return nil, err
		}
		if out[i], err = b.unbroadcast(gi, n.Outputs[0], n.Inputs[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func gradPow(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	a, e, y := n.Inputs[0], n.Inputs[1], n.Outputs[0]
	return binary(b, n, want, func(i int) (string, error) {
		if i == 0 {
			dt := b.dtype(a)
			em1 := b.op("Sub", []string{e, b.op("CastLike", []string{b.scalar(1, dt), e})})
			p := b.op("Pow", []string{a, em1})
			ec := b.op("CastLike", []string{e, a})
			return b.op("Mul", []string{dys[0], b.op("Mul", []string{ec, p})}), nil
		}
		return b.op("Mul", []string{dys[0], b.op("Mul", []string{y, b.op("Log", []string{a})})}), nil
	})
}

func gradWhere(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	c := n.Inputs[0]
	out := make([]string, 3)
	for i := 1; i <= 2; i++ {
		if !want[i] {
			continue
		}
		z := b.scalar(0, b.dtype(n.Outputs[0]))
		var g string
		if i == 1 {
			g = b.op("Where", []string{c, dys[0], z})
		} else {
			g = b.op("Where", []string{c, z, dys[0]})
		}
		var err error
		if out[i], err = b.unbroadcast(g, n.Outputs[0], n.Inputs[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func gradLeakyRelu(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	x := n.Inputs[0]
	dt := b.dtype(x)
	alpha := float64(n.Float("alpha", 0.01))
	s := b.op("Where", []string{b.op("Greater", []string{x, b.scalar(0, dt)}), b.scalar(1, dt), b.scalar(alpha, dt)})
	return []string{b.op("Mul", []string{dys[0], s})}, nil
}

func gradClip(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	for j := 1; j < len(want); j++ {
		if want[j] {
			return nil, fmt.Errorf("%w: Clip with a differentiated min or max", ErrUnsupported)
		}
	}
	x := n.Inputs[0]
	g := dys[0]
	z := b.scalar(0, b.dtype(x))
	if lo := n.Input(1); lo != "" {
		g = b.op("Where", []string{b.op("Less", []string{x, lo}), z, g})
	}
	if hi := n.Input(2); hi != "" {
		g = b.op("Where", []string{b.op("Greater", []string{x, hi}), z, g})
	}
	return []string{g}, nil
}

func gradGelu(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	if ap := n.Str("approximate", "none"); ap != "none" {
		return nil, fmt.Errorf("%w: Gelu with approximate=%q", ErrUnsupported, ap)
	}
	x := n.Inputs[0]
	dt := b.dtype(x)
	// Φ(x) + x φ(x), Φ(x) = (1 + erf(x/√2))/2, φ(x) = exp(-x²/2)/√(2π)
	phiC := b.op("Mul", []string{b.op("Add", []string{b.scalar(1, dt), b.op("Erf", []string{b.op("Mul", []string{x, b.scalar(1/math.Sqrt2, dt)})})}), b.scalar(0.5, dt)})
	pdf := b.op("Mul", []string{b.op("Exp", []string{b.op("Mul", []string{b.op("Mul", []string{x, x}), b.scalar(-0.5, dt)})}), b.scalar(1/math.Sqrt(2*math.Pi), dt)})
	d := b.op("Add", []string{phiC, b.op("Mul", []string{x, pdf})})
	return []string{b.op("Mul", []string{dys[0], d})}, nil
}

func gradReshape(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	return []string{b.reshapeLike(dys[0], n.Inputs[0])}, nil
}

func gradExpand(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	g, err := b.unbroadcast(dys[0], n.Outputs[0], n.Inputs[0])
	return []string{g}, err
}

func gradCast(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	return []string{b.op("Cast", []string{dys[0]}, onnxio.AttrInt("to", int64(b.dtype(n.Inputs[0]))))}, nil
}

func gradTranspose(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	perm := n.Ints("perm")
	if perm == nil {
		return []string{b.op("Transpose", []string{dys[0]})}, nil
	}
	inv := make([]int64, len(perm))
	for i, p := range perm {
		if p < 0 || int(p) >= len(perm) {
			return nil, fmt.Errorf("%w: bad perm %v", ErrInput, perm)
		}
		inv[p] = int64(i)
	}
	return []string{b.op("Transpose", []string{dys[0]}, onnxio.AttrIntList("perm", inv...))}, nil
}

func gradConcat(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	axis := n.Int("axis", 0)
	var sizes []string
	for _, in := range n.Inputs {
		sizes = append(sizes, b.op("Gather", []string{b.shapeOf(in), b.ints(axis)}))
	}
	split := b.op("Concat", sizes, onnxio.AttrInt("axis", 0))
	outs := make([]string, len(n.Inputs))
	for i := range outs {
		outs[i] = b.fresh("split")
	}
	b.add("Split", []string{dys[0], split}, outs, onnxio.AttrInt("axis", axis))
	return outs, nil
}

func gradSlice(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	x := n.Inputs[0]
	idx := b.indexTensor(x)
	in := append([]string{idx}, n.Inputs[1:]...)
	sel := b.op("Slice", in)
	return []string{b.scatterAdd(x, sel, dys[0])}, nil
}

func gradGather(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	x := n.Inputs[0]
	idx := b.indexTensor(x)
	sel := b.op("Gather", []string{idx, n.Inputs[1]}, onnxio.AttrInt("axis", n.Int("axis", 0)))
	return []string{b.scatterAdd(x, sel, dys[0])}, nil
}

func gradSoftmax(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	y := n.Outputs[0]
	axis := n.Int("axis", -1)
	s := b.reduceSum(b.op("Mul", []string{dys[0], y}), []int64{axis}, true)
	return []string{b.op("Mul", []string{y, b.op("Sub", []string{dys[0], s})})}, nil
}

func gradLogSoftmax(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	y := n.Outputs[0]
	axis := n.Int("axis", -1)
	s := b.reduceSum(dys[0], []int64{axis}, true)
	return []string{b.op("Sub", []string{dys[0], b.op("Mul", []string{b.op("Exp", []string{y}), s})})}, nil
}

// swapLast transposes the last two axes of a value of rank r.
func (b *builder) swapLast(v string, r int) string {
	perm := make([]int64, r)
	for i := range perm {
		perm[i] = int64(i)
	}
	perm[r-1], perm[r-2] = perm[r-2], perm[r-1]
	return b.op("Transpose", []string{v}, onnxio.AttrIntList("perm", perm...))
}

func gradMatMul(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	a, bb, y := n.Inputs[0], n.Inputs[1], n.Outputs[0]
	ra, err := b.rank(a)
	if err != nil {
		return nil, err
	}
	rb, err := b.rank(bb)
	if err != nil {
		return nil, err
	}
	ry, err := b.rank(y)
	if err != nil {
		return nil, err
	}
	if ra == 0 || rb == 0 {
		return nil, fmt.Errorf("%w: MatMul of a scalar", ErrInput)
	}
	dy := dys[0]
	// Promote 1-D operands to matrices, as MatMul does.
	a2, b2, rA, rB := a, bb, ra, rb
	if ra == 1 {
		a2 = b.op("Unsqueeze", []string{a, b.ints(0)})
		rA = 2
		dy = b.op("Unsqueeze", []string{dy, b.ints(-2)})
	}
	if rb == 1 {
		b2 = b.op("Unsqueeze", []string{bb, b.ints(-1)})
		rB = 2
		dy = b.op("Unsqueeze", []string{dy, b.ints(-1)})
	}
	rY := ry
	if ra == 1 {
		rY++
	}
	if rb == 1 {
		rY++
	}
	out := make([]string, 2)
	// reduce sums g (rank rY) over the axes where the promoted operand v
	// (rank r) is broadcast, then reshapes it like the original operand.
	reduce := func(g, v string, r int, orig string) (string, error) {
		oi, err := b.get(orig)
		if err != nil {
			return "", err
		}
		shape := oi.Shape
		if len(shape) < r {
			shape = append([]int64{1}, shape...) // a promoted 1-D operand
		}
		if r == 2 && rY == 2 {
			return b.reshapeLike(g, orig), nil
		}
		g, err = b.unbroadcastTo(g, rY, v, shape)
		if err != nil {
			return "", err
		}
		return b.reshapeLike(g, orig), nil
	}
	if want[0] {
		g := b.op("MatMul", []string{dy, b.swapLast(b2, rB)})
		if out[0], err = reduce(g, a2, rA, a); err != nil {
			return nil, err
		}
	}
	if want[1] {
		g := b.op("MatMul", []string{b.swapLast(a2, rA), dy})
		if out[1], err = reduce(g, b2, rB, bb); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func gradGemm(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	a, bb, dy := n.Inputs[0], n.Inputs[1], dys[0]
	alpha := n.Float("alpha", 1)
	beta := n.Float("beta", 1)
	tA := n.Int("transA", 0) != 0
	tB := n.Int("transB", 0) != 0
	bi := func(v bool) int64 {
		if v {
			return 1
		}
		return 0
	}
	out := make([]string, len(n.Inputs))
	al := onnxio.AttrFloatVal("alpha", alpha)
	if want[0] {
		if !tA {
			out[0] = b.op("Gemm", []string{dy, bb}, al, onnxio.AttrInt("transB", bi(!tB)))
		} else {
			out[0] = b.op("Gemm", []string{bb, dy}, al, onnxio.AttrInt("transA", bi(tB)), onnxio.AttrInt("transB", 1))
		}
	}
	if want[1] {
		if !tB {
			out[1] = b.op("Gemm", []string{a, dy}, al, onnxio.AttrInt("transA", bi(!tA)))
		} else {
			out[1] = b.op("Gemm", []string{dy, a}, al, onnxio.AttrInt("transA", 1), onnxio.AttrInt("transB", bi(tA)))
		}
	}
	if len(want) > 2 && want[2] {
		g := dy
		if beta != 1 {
			g = b.op("Mul", []string{dy, b.scalar(float64(beta), b.dtype(n.Inputs[2]))})
		}
		var err error
		if out[2], err = b.unbroadcast(g, n.Outputs[0], n.Inputs[2]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func gradReduce(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	x := n.Inputs[0]
	rx, err := b.rank(x)
	if err != nil {
		return nil, err
	}
	var axes []int64
	haveAxes := false
	if n.OpType == "ReduceMean" && b.opset < 18 {
		if a, ok := n.Attr("axes"); ok {
			axes, haveAxes = a.Ints, true
		}
	} else if in := n.Input(1); in != "" {
		t, err := b.constInts(in)
		if err != nil {
			return nil, err
		}
		axes, haveAxes = t, true
	}
	if haveAxes && len(axes) == 0 {
		haveAxes = false
	}
	if !haveAxes && n.Int("noop_with_empty_axes", 0) != 0 {
		return []string{dys[0]}, nil
	}
	g := dys[0]
	if haveAxes && n.Int("keepdims", 1) == 0 {
		norm := make([]int64, len(axes))
		for i, a := range axes {
			v, err := normAxis(a, rx)
			if err != nil {
				return nil, err
			}
			norm[i] = v
		}
		g = b.op("Unsqueeze", []string{g, b.ints(norm...)})
	}
	g = b.op("Expand", []string{g, b.shapeOf(x)})
	if n.OpType == "ReduceMean" {
		dt := b.dtype(x)
		nx := b.op("Cast", []string{b.op("Size", []string{x})}, onnxio.AttrInt("to", int64(dt)))
		ny := b.op("Cast", []string{b.op("Size", []string{n.Outputs[0]})}, onnxio.AttrInt("to", int64(dt)))
		g = b.op("Div", []string{b.op("Mul", []string{g, ny}), nx})
	}
	return []string{g}, nil
}

// constInts returns the values of an int64 initializer or Constant output.
func (b *builder) constInts(name string) ([]int64, error) {
	if b.m.HasInitializer(name) {
		t, err := b.m.Initializer(name)
		if err != nil {
			return nil, err
		}
		return t.Int64()
	}
	for _, n := range b.m.Nodes() {
		if n.OpType == "Constant" && len(n.Outputs) > 0 && n.Outputs[0] == name {
			t, err := b.m.NodeTensor(n, "value")
			if err != nil {
				return nil, err
			}
			return t.Int64()
		}
	}
	return nil, fmt.Errorf("%w: %q must be a constant (axes computed at run time)", ErrUnsupported, name)
}
