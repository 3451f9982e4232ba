package autodiff

import (
	"fmt"

	"github.com/onnxpost/onnxpost/onnxio"
)

// window is the geometry of a convolution or pooling over r spatial axes.
type window struct {
	kernel, strides, dils, pb, pe []int64
	in, out                       []int64 // spatial sizes of the input and output
}

// geometry reads kernel/strides/dilations/pads/auto_pad of n, with the
// spatial sizes of x and y taken from the probe.
func (b *builder) geometry(n onnxio.Node, x, y string, kernel []int64) (*window, error) {
	xi, err := b.get(x)
	if err != nil {
		return nil, err
	}
	yi, err := b.get(y)
	if err != nil {
		return nil, err
	}
	r := len(xi.Shape) - 2
	if r < 1 || len(yi.Shape) != r+2 {
		return nil, fmt.Errorf("%w: %s input of rank %d", ErrUnsupported, n.OpType, len(xi.Shape))
	}
	if kernel == nil {
		kernel = n.Ints("kernel_shape")
	}
	if len(kernel) != r {
		return nil, fmt.Errorf("%w: kernel_shape %v does not fit %d spatial axes", ErrInput, kernel, r)
	}
	w := &window{kernel: kernel, in: xi.Shape[2:], out: yi.Shape[2:]}
	fill := func(name string) ([]int64, error) {
		v := n.Ints(name)
		if v == nil {
			v = make([]int64, r)
			for i := range v {
				v[i] = 1
			}
		}
		if len(v) != r {
			return nil, fmt.Errorf("%w: %s %v does not fit %d spatial axes", ErrInput, name, v, r)
		}
		return v, nil
	}
	if w.strides, err = fill("strides"); err != nil {
		return nil, err
	}
	if w.dils, err = fill("dilations"); err != nil {
		return nil, err
	}
	w.pb, w.pe = make([]int64, r), make([]int64, r)
	switch ap := n.Str("auto_pad", "NOTSET"); ap {
	case "NOTSET", "":
		if p := n.Ints("pads"); p != nil {
			if len(p) != 2*r {
				return nil, fmt.Errorf("%w: pads %v does not fit %d spatial axes", ErrInput, p, r)
			}
			copy(w.pb, p[:r])
			copy(w.pe, p[r:])
		}
	case "VALID":
	case "SAME_UPPER", "SAME_LOWER":
		for i := 0; i < r; i++ {
			tot := (w.out[i]-1)*w.strides[i] + (w.kernel[i]-1)*w.dils[i] + 1 - w.in[i]
			if tot < 0 {
				tot = 0
			}
			if ap == "SAME_UPPER" {
				w.pb[i] = tot / 2
				w.pe[i] = tot - w.pb[i]
			} else {
				w.pe[i] = tot / 2
				w.pb[i] = tot - w.pe[i]
			}
		}
	default:
		return nil, fmt.Errorf("%w: auto_pad=%q", ErrUnsupported, ap)
	}
	return w, nil
}

// outputPadding returns ConvTranspose's output_padding restoring the input
// size from the output size.
func (w *window) outputPadding() ([]int64, error) {
	op := make([]int64, len(w.in))
	for i := range op {
		full := (w.out[i]-1)*w.strides[i] - w.pb[i] - w.pe[i] + w.dils[i]*(w.kernel[i]-1) + 1
		op[i] = w.in[i] - full
		if op[i] < 0 || op[i] >= max(w.strides[i], w.dils[i]) {
			return nil, fmt.Errorf("%w: cannot restore input size %d from output size %d (ceil_mode?)", ErrUnsupported, w.in[i], w.out[i])
		}
	}
	return op, nil
}

func (w *window) pads() []int64 { return append(append([]int64{}, w.pb...), w.pe...) }

func seq(from, to int) []int64 {
	var s []int64
	for i := from; i < to; i++ {
		s = append(s, int64(i))
	}
	return s
}

func gradConv(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	x, wt, y, dy := n.Inputs[0], n.Inputs[1], n.Outputs[0], dys[0]
	wi, err := b.get(wt)
	if err != nil {
		return nil, err
	}
	if len(wi.Shape) < 3 {
		return nil, fmt.Errorf("%w: Conv weight of rank %d", ErrInput, len(wi.Shape))
	}
	g := n.Int("group", 1)
	geo, err := b.geometry(n, x, y, wi.Shape[2:])
	if err != nil {
		return nil, err
	}
	r := len(geo.in)
	out := make([]string, len(n.Inputs))
	if want[0] {
		op, err := geo.outputPadding()
		if err != nil {
			return nil, err
		}
		out[0] = b.op("ConvTranspose", []string{dy, wt},
			onnxio.AttrInt("group", g), onnxio.AttrIntList("strides", geo.strides...),
			onnxio.AttrIntList("dilations", geo.dils...), onnxio.AttrIntList("pads", geo.pads()...),
			onnxio.AttrIntList("output_padding", op...), onnxio.AttrIntList("kernel_shape", geo.kernel...))
	}
	if want[1] {
		o := wi.Shape[0]
		cg := wi.Shape[1]
		if g <= 0 || o%g != 0 {
			return nil, fmt.Errorf("%w: %d output channels in %d groups", ErrInput, o, g)
		}
		og := o / g
		// X [N, g·Cg, s...] -> [Cg, g·N, s...]
		xr := b.op("Reshape", []string{x, b.ints(0, g, cg, -1)})
		xt := b.op("Transpose", []string{xr}, onnxio.AttrIntList("perm", 2, 1, 0, 3))
		xs := b.op("Reshape", []string{xt, b.ints(append([]int64{cg, -1}, geo.in...)...)})
		// dY [N, g·Og, o...] -> [g·Og, N, o...]
		yr := b.op("Reshape", []string{dy, b.ints(0, g, og, -1)})
		yt := b.op("Transpose", []string{yr}, onnxio.AttrIntList("perm", 1, 2, 0, 3))
		ys := b.op("Reshape", []string{yt, b.ints(append([]int64{o, -1}, geo.out...)...)})
		c := b.op("Conv", []string{xs, ys}, onnxio.AttrInt("group", g),
			onnxio.AttrIntList("strides", geo.dils...), onnxio.AttrIntList("dilations", geo.strides...),
			onnxio.AttrIntList("pads", geo.pads()...))
		starts := make([]int64, r)
		s := b.op("Slice", []string{c, b.ints(starts...), b.ints(geo.kernel...), b.ints(seq(2, r+2)...)})
		perm := append([]int64{1, 0}, seq(2, r+2)...)
		out[1] = b.op("Transpose", []string{s}, onnxio.AttrIntList("perm", perm...))
	}
	if len(want) > 2 && want[2] {
		out[2] = b.reduceSum(dy, append([]int64{0}, seq(2, r+2)...), false)
	}
	return out, nil
}

func gradMaxPool(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	if len(dys) > 1 && dys[1] != "" {
		return nil, fmt.Errorf("%w: gradient through MaxPool indices", ErrUnsupported)
	}
	if n.Int("storage_order", 0) != 0 {
		return nil, fmt.Errorf("%w: MaxPool with storage_order=1", ErrUnsupported)
	}
	x := n.Inputs[0]
	idx := b.fresh("argmax")
	b.add("MaxPool", []string{x}, []string{b.fresh("maxpool"), idx}, n.Attrs...)
	return []string{b.scatterAdd(x, idx, dys[0])}, nil
}

func gradGlobalMaxPool(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	x := n.Inputs[0]
	xi, err := b.get(x)
	if err != nil {
		return nil, err
	}
	if len(xi.Shape) < 3 {
		return nil, fmt.Errorf("%w: GlobalMaxPool input of rank %d", ErrInput, len(xi.Shape))
	}
	idx := b.fresh("argmax")
	b.add("MaxPool", []string{x}, []string{b.fresh("maxpool"), idx}, onnxio.AttrIntList("kernel_shape", xi.Shape[2:]...))
	return []string{b.scatterAdd(x, idx, dys[0])}, nil
}

func gradGlobalAveragePool(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	x := n.Inputs[0]
	xi, err := b.get(x)
	if err != nil {
		return nil, err
	}
	cnt := int64(1)
	for _, d := range xi.Shape[min(2, len(xi.Shape)):] {
		cnt *= d
	}
	e := b.op("Expand", []string{dys[0], b.shapeOf(x)})
	return []string{b.op("Mul", []string{e, b.scalar(1/float64(cnt), xi.DType)})}, nil
}

func gradAveragePool(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	x, y := n.Inputs[0], n.Outputs[0]
	geo, err := b.geometry(n, x, y, nil)
	if err != nil {
		return nil, err
	}
	r := len(geo.in)
	for i := 0; i < r; i++ {
		want := (geo.in[i]+geo.pb[i]+geo.pe[i]-geo.dils[i]*(geo.kernel[i]-1)-1)/geo.strides[i] + 1
		if want != geo.out[i] {
			return nil, fmt.Errorf("%w: AveragePool whose output size differs from the floor formula (ceil_mode=1 with partial windows)", ErrUnsupported)
		}
	}
	op, err := geo.outputPadding()
	if err != nil {
		return nil, err
	}
	dt := b.dtype(x)
	// 1/divisor for every output position.
	include := n.Int("count_include_pad", 0) != 0
	counts := make([][]float64, r)
	for i := 0; i < r; i++ {
		counts[i] = make([]float64, geo.out[i])
		for o := int64(0); o < geo.out[i]; o++ {
			c := int64(0)
			for k := int64(0); k < geo.kernel[i]; k++ {
				p := o*geo.strides[i] - geo.pb[i] + k*geo.dils[i]
				if include || (p >= 0 && p < geo.in[i]) {
					c++
				}
			}
			counts[i][o] = float64(c)
		}
	}
	total := int64(1)
	for _, o := range geo.out {
		total *= o
	}
	inv := make([]float64, total)
	for flat := range inv {
		rem := int64(flat)
		d := 1.0
		for i := r - 1; i >= 0; i-- {
			d *= counts[i][rem%geo.out[i]]
			rem /= geo.out[i]
		}
		inv[flat] = 1 / d
	}
	invT, err := onnxio.FromFloat64("", dt, append([]int64{1, 1}, geo.out...), inv)
	if err != nil {
		return nil, err
	}
	ones := make([]float64, 1)
	kn := int64(1)
	for _, k := range geo.kernel {
		kn *= k
	}
	ones = make([]float64, kn)
	for i := range ones {
		ones[i] = 1
	}
	kT, err := onnxio.FromFloat64("", dt, append([]int64{1, 1}, geo.kernel...), ones)
	if err != nil {
		return nil, err
	}
	dy1 := b.op("Reshape", []string{dys[0], b.ints(append([]int64{-1, 1}, geo.out...)...)})
	sc := b.op("Mul", []string{dy1, b.constTensor(invT)})
	dx := b.op("ConvTranspose", []string{sc, b.constTensor(kT)},
		onnxio.AttrIntList("strides", geo.strides...), onnxio.AttrIntList("dilations", geo.dils...),
		onnxio.AttrIntList("pads", geo.pads()...), onnxio.AttrIntList("output_padding", op...),
		onnxio.AttrIntList("kernel_shape", geo.kernel...))
	return []string{b.reshapeLike(dx, x)}, nil
}

func gradBatchNorm(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	if n.Int("training_mode", 0) != 0 || len(n.Outputs) > 1 && n.Outputs[1] != "" {
		return nil, fmt.Errorf("%w: BatchNormalization in training mode", ErrUnsupported)
	}
	if len(n.Inputs) < 5 {
		return nil, fmt.Errorf("%w: BatchNormalization with %d inputs", ErrInput, len(n.Inputs))
	}
	x, scale, bias, mean, vr := n.Inputs[0], n.Inputs[1], n.Inputs[2], n.Inputs[3], n.Inputs[4]
	rx, err := b.rank(x)
	if err != nil {
		return nil, err
	}
	if rx < 2 {
		return nil, fmt.Errorf("%w: BatchNormalization input of rank %d", ErrInput, rx)
	}
	dt := b.dtype(x)
	dy := dys[0]
	shp := []int64{-1}
	for i := 2; i < rx; i++ {
		shp = append(shp, 1)
	}
	u := func(v string) string { return b.op("Reshape", []string{v, b.ints(shp...)}) }
	sumAxes := append([]int64{0}, seq(2, rx)...)
	inv := b.op("Reciprocal", []string{b.op("Sqrt", []string{b.op("Add", []string{vr, b.scalar(float64(n.Float("epsilon", 1e-5)), dt)})})})
	out := make([]string, 5)
	if want[0] {
		out[0] = b.op("Mul", []string{dy, u(b.op("Mul", []string{scale, inv}))})
	}
	var sdy, sxc string
	if want[2] || want[3] {
		sdy = b.reduceSum(dy, sumAxes, false)
	}
	if want[1] || want[4] {
		xc := b.op("Sub", []string{x, u(mean)})
		sxc = b.reduceSum(b.op("Mul", []string{dy, xc}), sumAxes, false)
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
		t := b.op("Mul", []string{sxc, b.op("Mul", []string{scale, inv3})})
		out[4] = b.op("Mul", []string{t, b.scalar(-0.5, dt)})
	}
	_ = bias
	return out, nil
}

// layerNormForward rebuilds a LayerNormalization node's normalized input
// x̂ = (x − μ)·inv, inv = 1/√(σ² + ε), over the normalized axes, and returns
// x̂, inv and a function that builds the mean of a value over those axes.
func layerNormForward(b *builder, n onnxio.Node) (xh, inv string, mean func(string) string, err error) {
	x := n.Inputs[0]
	xi, err := b.get(x)
	if err != nil {
		return "", "", nil, err
	}
	r := len(xi.Shape)
	a, err := normAxis(n.Int("axis", -1), r)
	if err != nil {
		return "", "", nil, err
	}
	axes := seq(int(a), r)
	cnt := int64(1)
	for _, d := range xi.Shape[a:] {
		cnt *= d
	}
	dt := xi.DType
	mean = func(v string) string {
		return b.op("Mul", []string{b.reduceSum(v, axes, true), b.scalar(1/float64(cnt), dt)})
	}
	xc := b.op("Sub", []string{x, mean(x)})
	vr := mean(b.op("Mul", []string{xc, xc}))
	inv = b.op("Reciprocal", []string{b.op("Sqrt", []string{b.op("Add", []string{vr, b.scalar(float64(n.Float("epsilon", 1e-5)), dt)})})})
	return b.op("Mul", []string{xc, inv}), inv, mean, nil
}

func gradLayerNorm(b *builder, n onnxio.Node, dys []string, want []bool) ([]string, error) {
	for j := 1; j < len(dys); j++ {
		if dys[j] != "" {
			return nil, fmt.Errorf("%w: gradient through LayerNormalization's Mean/InvStdDev outputs", ErrUnsupported)
		}
	}
	scale, y, dy := n.Inputs[1], n.Outputs[0], dys[0]
	xh, inv, mean, err := layerNormForward(b, n)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(n.Inputs))
	if want[0] {
		gs := b.op("Mul", []string{dy, scale})
		t := b.op("Sub", []string{gs, mean(gs)})
		t = b.op("Sub", []string{t, b.op("Mul", []string{xh, mean(b.op("Mul", []string{gs, xh}))})})
		out[0] = b.op("Mul", []string{t, inv})
	}
	if want[1] {
		if out[1], err = b.unbroadcast(b.op("Mul", []string{dy, xh}), y, scale); err != nil {
			return nil, err
		}
	}
	if len(want) > 2 && want[2] {
		if out[2], err = b.unbroadcast(dy, y, n.Inputs[2]); err != nil {
			return nil, err
		}
	}
	return out, nil
}
