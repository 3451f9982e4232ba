package autodiff

import (
	"fmt"

	"github.com/onnxpost/onnxpost/onnxio"
)

// checkExampleAxis verifies that every active data value carries the
// examples on axis 0: size 1 in the batch-1 probe, 2 in the batch-2 probe,
// other axes equal.
func checkExampleAxis(data, active map[string]bool, info, info2 map[string]Info) error {
	if info2 == nil {
		return fmt.Errorf("%w: PerExample needs Info2 (a probe of batch 2)", ErrInfo)
	}
	for _, v := range sortedKeys(data) {
		if !active[v] {
			continue
		}
		a, ok1 := info[v]
		c, ok2 := info2[v]
		if !ok1 || !ok2 {
			return fmt.Errorf("%w: value %q", ErrInfo, v)
		}
		ok := len(a.Shape) == len(c.Shape) && len(a.Shape) > 0 && a.Shape[0] == 1 && c.Shape[0] == 2
		for i := 1; ok && i < len(a.Shape); i++ {
			ok = a.Shape[i] == c.Shape[i]
		}
		if !ok {
			return fmt.Errorf("%w: per-example gradients need the examples on axis 0 of every value, but %q has shape %v at batch 1 and %v at batch 2", ErrUnsupported, v, a.Shape, c.Shape)
		}
	}
	return nil
}

// perExampleDispatch computes the gradients of n's data inputs with the
// ordinary rule and those of its parameter-only inputs with a per-example
// rule (a leading example axis).
func perExampleDispatch(b *builder, n onnxio.Node, dys []string, want []bool, data map[string]bool, r rule) ([]string, error) {
	wantD := make([]bool, len(want))
	wantS := make([]bool, len(want))
	anyD, anyS, hasData := false, false, false
	for j, in := range n.Inputs {
		if in != "" && data[in] {
			hasData = true
		}
		if !want[j] {
			continue
		}
		if data[in] {
			wantD[j], anyD = true, true
		} else {
			wantS[j], anyS = true, true
		}
	}
	out := make([]string, len(n.Inputs))
	if anyD {
		d, err := r(b, n, dys, wantD)
		if err != nil {
			return nil, err
		}
		for j := range d {
			if wantD[j] {
				out[j] = d[j]
			}
		}
	}
	if anyS {
		var s []string
		var err error
		if !hasData {
			s, err = staticPath(b, n, dys, wantS)
		} else if pr, ok := perRowRules[n.OpType]; ok {
			s, err = pr(b, n, dys, wantS)
		} else {
			err = fmt.Errorf("%w: no per-example rule for the parameter inputs of %s", ErrUnsupported, n.OpType)
		}
		if err != nil {
			return nil, err
		}
		for j := range s {
			if wantS[j] {
				out[j] = s[j]
			}
		}
	}
	return out, nil
}

// staticPath handles ops between a parameter and its consumer (no example
// data involved), whose output gradient already has the example axis.
func staticPath(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	switch n.OpType {
	case "Identity":
		return []string{dys[0]}, nil
	case "Cast":
		return gradCast(b, n, dys, want)
	case "Reshape", "Flatten", "Squeeze", "Unsqueeze":
		sh := b.op("Concat", []string{b.ints(-1), b.shapeOf(n.Inputs[0])}, onnxio.AttrInt("axis", 0))
		return []string{b.op("Reshape", []string{dys[0], sh})}, nil
	case "Transpose":
		perm := n.Ints("perm")
		if perm == nil {
			r, err := b.rank(n.Inputs[0])
			if err != nil {
				return nil, err
			}
			for i := r - 1; i >= 0; i-- {
				perm = append(perm, int64(i))
			}
		}
		inv := make([]int64, len(perm)+1)
		for i, p := range perm {
			inv[p+1] = int64(i + 1)
		}
		return []string{b.op("Transpose", []string{dys[0]}, onnxio.AttrIntList("perm", inv...))}, nil
	}
	return nil, fmt.Errorf("%w: per-example gradient through parameter-only %s", ErrUnsupported, n.OpType)
}

var perRowRules map[string]rule

func init() {
	perRowRules = map[string]rule{
		"Add": func(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
			return rowBinary(b, n, want, func(i int) string { return dys[0] })
		},
		"Sub": func(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
			return rowBinary(b, n, want, func(i int) string {
				if i == 0 {
					return dys[0]
				}
				return b.op("Neg", []string{dys[0]})
			})
		},
		"Mul": func(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
			return rowBinary(b, n, want, func(i int) string { return b.op("Mul", []string{dys[0], n.Inputs[1-i]}) })
		},
		"Div": func(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
			return rowBinary(b, n, want, func(i int) string {
				if i == 0 {
					return b.op("Div", []string{dys[0], n.Inputs[1]})
				}
				return b.op("Neg", []string{b.op("Div", []string{b.op("Mul", []string{dys[0], n.Outputs[0]}), n.Inputs[1]})})
			})
		},
		"Pow": func(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
			a, e, y := n.Inputs[0], n.Inputs[1], n.Outputs[0]
			return rowBinary(b, n, want, func(i int) string {
				if i == 0 {
					em1 := b.op("Sub", []string{e, b.op("CastLike", []string{b.scalar(1, b.dtype(a)), e})})
					return b.op("Mul", []string{dys[0], b.op("Mul", []string{b.op("CastLike", []string{e, a}), b.op("Pow", []string{a, em1})})})
				}
				return b.op("Mul", []string{dys[0], b.op("Mul", []string{y, b.op("Log", []string{a})})})
			})
		},
		"Where": func(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
			z := b.scalar(0, b.dtype(n.Outputs[0]))
			return rowBinary(b, n, want, func(i int) string {
				if i == 1 {
					return b.op("Where", []string{n.Inputs[0], dys[0], z})
				}
				return b.op("Where", []string{n.Inputs[0], z, dys[0]})
			})
		},
		"MatMul": rowMatMul, "Gemm": rowGemm, "Conv": rowConv,
		"LayerNormalization": rowLayerNorm, "BatchNormalization": rowBatchNorm, "Gather": rowGather,
	}
}

// rowUnbroadcast reduces g (shaped like the data value out, examples on
// axis 0) to [R, target's shape...] for a parameter-only operand target.
func (b *builder) rowUnbroadcast(g, out, target string) (string, error) {
	ti, err := b.get(target)
	if err != nil {
		return "", err
	}
	oi, err := b.get(out)
	if err != nil {
		return "", err
	}
	ro, rt := len(oi.Shape), len(ti.Shape)
	if rt > ro {
		return "", fmt.Errorf("%w: operand %q has a higher rank than the result", ErrInput, target)
	}
	padded := make([]int64, ro)
	for i := range padded {
		padded[i] = 1
	}
	copy(padded[ro-rt:], ti.Shape)
	if padded[0] != 1 {
		return "", fmt.Errorf("%w: parameter-only operand %q spans the example axis", ErrUnsupported, target)
	}
	var axes []int64
	for i := 1; i < ro; i++ {
		if padded[i] == 1 && oi.Shape[i] != 1 {
			axes = append(axes, int64(i))
		}
	}
	if len(axes) > 0 {
		g = b.reduceSum(g, axes, true)
	}
	return b.op("Reshape", []string{g, b.ints(append([]int64{-1}, ti.Shape...)...)}), nil
}

func rowBinary(b *builder, n onnxio.Node, want []bool, g func(i int) string) ([]string, error) {
	out := make([]string, len(n.Inputs))
	for i := range n.Inputs {
		if !want[i] {
			continue
		}
		var err error
		if out[i], err = b.rowUnbroadcast(g(i), n.Outputs[0], n.Inputs[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// sumMiddle sums axes 1..r-3 of a value of rank r (batch axes between the
// example axis and a trailing matrix).
func (b *builder) sumMiddle(g string, r int) string {
	if r <= 3 {
		return g
	}
	return b.reduceSum(g, seq(1, r-2), false)
}

func rowMatMul(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	a, w, dy := n.Inputs[0], n.Inputs[1], dys[0]
	ra, err := b.rank(a)
	if err != nil {
		return nil, err
	}
	rw, err := b.rank(w)
	if err != nil {
		return nil, err
	}
	out := make([]string, 2)
	if want[1] { // data A [R, ..., K], parameter W [K, N]
		if rw != 2 || ra < 2 {
			return nil, fmt.Errorf("%w: per-example MatMul gradient for a weight of rank %d and data of rank %d", ErrUnsupported, rw, ra)
		}
		if ra == 2 {
			out[1] = b.op("Mul", []string{b.op("Unsqueeze", []string{a, b.ints(2)}), b.op("Unsqueeze", []string{dy, b.ints(1)})})
		} else {
			out[1] = b.sumMiddle(b.op("MatMul", []string{b.swapLast(a, ra), dy}), ra)
		}
	}
	if want[0] { // parameter A [M, K], data W [R, ..., K, N]
		if ra != 2 || rw < 3 {
			return nil, fmt.Errorf("%w: per-example MatMul gradient for a left operand of rank %d and data of rank %d", ErrUnsupported, ra, rw)
		}
		out[0] = b.sumMiddle(b.op("MatMul", []string{dy, b.swapLast(w, rw)}), rw)
	}
	return out, nil
}

func rowGemm(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	a, dy := n.Inputs[0], dys[0]
	if want[0] || n.Int("transA", 0) != 0 {
		return nil, fmt.Errorf("%w: per-example Gemm gradient with a parameter A or transA=1", ErrUnsupported)
	}
	out := make([]string, len(n.Inputs))
	alpha := float64(n.Float("alpha", 1))
	if want[1] {
		g := b.op("Mul", []string{b.op("Unsqueeze", []string{a, b.ints(2)}), b.op("Unsqueeze", []string{dy, b.ints(1)})}) // [R, K, N]
		if alpha != 1 {
			g = b.op("Mul", []string{g, b.scalar(alpha, b.dtype(a))})
		}
		if n.Int("transB", 0) != 0 {
			g = b.op("Transpose", []string{g}, onnxio.AttrIntList("perm", 0, 2, 1))
		}
		out[1] = g
	}
	if len(want) > 2 && want[2] {
		g := dy
		if beta := float64(n.Float("beta", 1)); beta != 1 {
			g = b.op("Mul", []string{dy, b.scalar(beta, b.dtype(n.Inputs[2]))})
		}
		var err error
		if out[2], err = b.rowUnbroadcast(g, n.Outputs[0], n.Inputs[2]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func rowConv(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	x, wt, y, dy := n.Inputs[0], n.Inputs[1], n.Outputs[0], dys[0]
	if want[0] {
		return nil, fmt.Errorf("%w: per-example Conv gradient for a parameter input", ErrUnsupported)
	}
	wi, err := b.get(wt)
	if err != nil {
		return nil, err
	}
	g := n.Int("group", 1)
	geo, err := b.geometry(n, x, y, wi.Shape[2:])
	if err != nil {
		return nil, err
	}
	r := len(geo.in)
	out := make([]string, len(n.Inputs))
	if want[1] {
		o, cg := wi.Shape[0], wi.Shape[1]
		c := g * cg
		kk := int64(1)
		for _, k := range geo.kernel {
			kk *= k
		}
		// Patches P [R, C·KK, o...]: a depthwise Conv with one-hot kernels
		// E[(c,j), 0, k...] = δ(j, k) extracts every input window.
		ev := make([]float64, c*kk*kk)
		for ch := int64(0); ch < c; ch++ {
			for j := int64(0); j < kk; j++ {
				ev[(ch*kk+j)*kk+j] = 1
			}
		}
		et, err := onnxio.FromFloat64("", b.dtype(x), append([]int64{c * kk, 1}, geo.kernel...), ev)
		if err != nil {
			return nil, err
		}
		pt := b.op("Conv", []string{x, b.constTensor(et)}, onnxio.AttrInt("group", c),
			onnxio.AttrIntList("strides", geo.strides...), onnxio.AttrIntList("dilations", geo.dils...),
			onnxio.AttrIntList("pads", geo.pads()...), onnxio.AttrIntList("kernel_shape", geo.kernel...))
		pr := b.op("Reshape", []string{pt, b.ints(0, g, cg*kk, -1)}) // [R, g, Cg·KK, L]
		yr := b.op("Reshape", []string{dy, b.ints(0, g, o/g, -1)})   // [R, g, Og, L]
		m := b.op("MatMul", []string{yr, b.swapLast(pr, 4)})         // [R, g, Og, Cg·KK]
		out[1] = b.op("Reshape", []string{m, b.ints(append([]int64{-1, o, cg}, geo.kernel...)...)})
	}
	if len(want) > 2 && want[2] {
		out[2] = b.reduceSum(dy, seq(2, r+2), false)
	}
	return out, nil
}

func rowLayerNorm(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	if want[0] {
		return nil, fmt.Errorf("%w: LayerNormalization of a parameter-only input", ErrUnsupported)
	}
	y, dy := n.Outputs[0], dys[0]
	xh, _, _, err := layerNormForward(b, n)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(n.Inputs))
	if want[1] {
		if out[1], err = b.rowUnbroadcast(b.op("Mul", []string{dy, xh}), y, n.Inputs[1]); err != nil {
			return nil, err
		}
	}
	if len(want) > 2 && want[2] {
		if out[2], err = b.rowUnbroadcast(dy, y, n.Inputs[2]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func rowBatchNorm(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	if want[0] || n.Int("training_mode", 0) != 0 {
		return nil, fmt.Errorf("%w: per-example BatchNormalization gradient", ErrUnsupported)
	}
	x, scale, mean, vr, dy := n.Inputs[0], n.Inputs[1], n.Inputs[3], n.Inputs[4], dys[0]
	rx, err := b.rank(x)
	if err != nil {
		return nil, err
	}
	dt := b.dtype(x)
	shp := []int64{-1}
	for i := 2; i < rx; i++ {
		shp = append(shp, 1)
	}
	u := func(v string) string { return b.op("Reshape", []string{v, b.ints(shp...)}) }
	sum := func(v string) string {
		if rx <= 2 {
			return v
		}
		return b.reduceSum(v, seq(2, rx), false)
	}
	inv := b.op("Reciprocal", []string{b.op("Sqrt", []string{b.op("Add", []string{vr, b.scalar(float64(n.Float("epsilon", 1e-5)), dt)})})})
	out := make([]string, 5)
	var sdy, sxc string
	if want[2] || want[3] {
		sdy = sum(dy)
	}
	if want[1] || want[4] {
		sxc = sum(b.op("Mul", []string{dy, b.op("Sub", []string{x, u(mean)})}))
	}
	if want[1] {
		out[1] = b.op("Mul", []string{sxc, inv})
	}
	if want[2] {
		out[2] = sdy
	}
	if want[3] {
		out[3] = b.op("Neg", []string{b.op("Mul", []string{sdy, b.op("Mul", []string{scale, inv})})})
	}
	if want[4] {
		inv3 := b.op("Mul", []string{inv, b.op("Mul", []string{inv, inv})})
		out[4] = b.op("Mul", []string{b.op("Mul", []string{sxc, b.op("Mul", []string{scale, inv3})}), b.scalar(-0.5, dt)})
	}
	return out, nil
}

func rowGather(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	if n.Int("axis", 0) != 0 {
		return nil, fmt.Errorf("%w: per-example Gather gradient with axis != 0", ErrUnsupported)
	}
	x, dy := n.Inputs[0], dys[0]
	sel := b.op("Gather", []string{b.indexTensor(x), n.Inputs[1]}, onnxio.AttrInt("axis", 0)) // [R, ...]
	fi := b.op("Reshape", []string{sel, b.ints(0, -1)})
	fg := b.op("Reshape", []string{dy, b.ints(0, -1)})
	rows := b.op("Slice", []string{b.shapeOf(sel), b.ints(0), b.ints(1)})
	nx := b.op("Reshape", []string{b.op("Size", []string{x}), b.ints(1)})
	zeros := b.op("ConstantOfShape", []string{b.op("Concat", []string{rows, nx}, onnxio.AttrInt("axis", 0))}, onnxio.AttrTensorVal("value", b.tensor1(0, b.dtype(x))))
	s := b.op("ScatterElements", []string{zeros, fi, fg}, onnxio.AttrInt("axis", 1), onnxio.AttrStr("reduction", "add"))
	sh := b.op("Concat", []string{b.ints(-1), b.shapeOf(x)}, onnxio.AttrInt("axis", 0))
	return []string{b.op("Reshape", []string{s, sh}), ""}, nil
}
