package lowrank

import (
	"fmt"
	"slices"
)

// Scheme is a factorization scheme.
type Scheme int

const (
	// SchemeSVD factorizes dense layers (MatMul, Gemm): W ≈ A·B.
	SchemeSVD Scheme = iota + 1
	// SchemeChannel factorizes a Conv W [O, C, k…] as a k… conv with r
	// filters followed by a 1×1 conv to O channels: the SVD of W viewed as
	// [O, C·∏k].
	SchemeChannel
	// SchemeSpatial factorizes a 2-D Conv W [O, C, kh, kw] as a kh×1 conv
	// with r filters followed by a 1×kw conv to O channels: the SVD of W
	// permuted to [(c,kh), (o,kw)] (Jaderberg et al., TRP's "VH").
	SchemeSpatial
	// SchemeAuto uses SchemeSVD for dense layers and, for each Conv, the one
	// of SchemeChannel and SchemeSpatial that keeps fewer parameters at the
	// same rank rule (spatial on ties; channel only when whitened).
	SchemeAuto
)

// String returns the scheme's flag spelling.
func (s Scheme) String() string {
	switch s {
	case SchemeSVD:
		return "svd"
	case SchemeChannel:
		return "channel"
	case SchemeSpatial:
		return "spatial"
	case SchemeAuto:
		return "auto"
	}
	return fmt.Sprintf("Scheme(%d)", int(s))
}

// ParseScheme parses svd, channel, spatial or auto.
func ParseScheme(s string) (Scheme, error) {
	for _, sc := range []Scheme{SchemeSVD, SchemeChannel, SchemeSpatial, SchemeAuto} {
		if s == sc.String() {
			return sc, nil
		}
	}
	return 0, fmt.Errorf("%w: scheme %q (want svd, channel, spatial or auto)", ErrOption, s)
}

// ConvAttrs are the attributes of an ONNX Conv over len(Kernel) spatial
// axes, with ONNX defaults filled in (strides and dilations 1, pads 0,
// group 1, auto_pad NOTSET).
type ConvAttrs struct {
	Kernel    []int
	Strides   []int
	Pads      []int // [x1_begin, x2_begin, …, x1_end, x2_end, …]
	Dilations []int
	Group     int
	AutoPad   string
}

// Normalize fills defaults and checks lengths; kernel comes from the weight
// shape when the attribute is absent. auto_pad VALID becomes explicit zero
// pads; SAME_UPPER/SAME_LOWER are refused (they depend on the input size).
func (a ConvAttrs) Normalize(kernel []int) (ConvAttrs, error) {
	d := len(kernel)
	out := ConvAttrs{Kernel: slices.Clone(kernel), Group: a.Group, AutoPad: a.AutoPad}
	if len(a.Kernel) > 0 && !slices.Equal(a.Kernel, kernel) {
		return out, fmt.Errorf("%w: kernel_shape %v differs from the weight's %v", ErrUnsupported, a.Kernel, kernel)
	}
	if out.Group == 0 {
		out.Group = 1
	}
	fill := func(name string, v []int, n, def int) ([]int, error) {
		if len(v) == 0 {
			s := make([]int, n)
			for i := range s {
				s[i] = def
			}
			return s, nil
		}
		if len(v) != n {
			return nil, fmt.Errorf("%w: %s has %d values, want %d", ErrUnsupported, name, len(v), n)
		}
		return slices.Clone(v), nil
	}
	var err error
	if out.Strides, err = fill("strides", a.Strides, d, 1); err != nil {
		return out, err
	}
	if out.Dilations, err = fill("dilations", a.Dilations, d, 1); err != nil {
		return out, err
	}
	if out.Pads, err = fill("pads", a.Pads, 2*d, 0); err != nil {
		return out, err
	}
	switch a.AutoPad {
	case "", "NOTSET":
		out.AutoPad = ""
	case "VALID":
		out.AutoPad = ""
		clear(out.Pads)
	default:
		return out, fmt.Errorf("%w: auto_pad %s depends on the input size; export with explicit pads", ErrUnsupported, a.AutoPad)
	}
	return out, nil
}

// IsPointwise reports whether every kernel axis is 1.
func (a ConvAttrs) IsPointwise() bool {
	for _, k := range a.Kernel {
		if k != 1 {
			return false
		}
	}
	return true
}

// IsStride1 reports whether every stride is 1.
func (a ConvAttrs) IsStride1() bool {
	for _, s := range a.Strides {
		if s != 1 {
			return false
		}
	}
	return true
}

func ones(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = 1
	}
	return s
}

// SplitChannel returns the attributes of the two convs of the channel-wise
// scheme: the first keeps the kernel, strides, pads and dilations of a (r
// output channels), the second is a 1×…×1 conv with unit strides and no
// pads. a must be normalized; group > 1 is refused.
func SplitChannel(a ConvAttrs) (first, second ConvAttrs, err error) {
	if a.Group != 1 {
		return first, second, fmt.Errorf("%w: grouped conv (group=%d) is not supported by the channel scheme", ErrUnsupported, a.Group)
	}
	d := len(a.Kernel)
	first = ConvAttrs{Kernel: slices.Clone(a.Kernel), Strides: slices.Clone(a.Strides), Pads: slices.Clone(a.Pads), Dilations: slices.Clone(a.Dilations), Group: 1}
	second = ConvAttrs{Kernel: ones(d), Strides: ones(d), Pads: make([]int, 2*d), Dilations: ones(d), Group: 1}
	return first, second, nil
}

// SplitSpatial returns the attributes of the two convs of the spatial-wise
// scheme for a normalized 2-D conv: a vertical kh×1 conv carrying the height
// stride, dilation and pads, then a horizontal 1×kw conv carrying the width
// ones. Zero-padding the width of the intermediate equals padding the input's
// width because the vertical conv has no bias and a 1-wide kernel, so the
// split is exact for any strides, pads and dilations. group > 1 and
// non-2-D kernels are refused.
func SplitSpatial(a ConvAttrs) (vert, horiz ConvAttrs, err error) {
	if len(a.Kernel) != 2 {
		return vert, horiz, fmt.Errorf("%w: the spatial scheme needs a 2-D conv, this one has %d spatial axes", ErrUnsupported, len(a.Kernel))
	}
	if a.Group != 1 {
		return vert, horiz, fmt.Errorf("%w: grouped conv (group=%d) is not supported by the spatial scheme", ErrUnsupported, a.Group)
	}
	p := a.Pads
	vert = ConvAttrs{
		Kernel: []int{a.Kernel[0], 1}, Strides: []int{a.Strides[0], 1},
		Pads: []int{p[0], 0, p[2], 0}, Dilations: []int{a.Dilations[0], 1}, Group: 1,
	}
	horiz = ConvAttrs{
		Kernel: []int{1, a.Kernel[1]}, Strides: []int{1, a.Strides[1]},
		Pads: []int{0, p[1], 0, p[3]}, Dilations: []int{1, a.Dilations[1]}, Group: 1,
	}
	return vert, horiz, nil
}

// SpatialMatrix permutes a conv weight W [o, c, kh, kw] (row-major) into the
// (c·kh)×(o·kw) matrix M[(c,i), (p,j)] = W[p, c, i, j] whose rank-r
// factorization is the spatial-wise scheme.
func SpatialMatrix(w []float64, o, c, kh, kw int) []float64 {
	if len(w) != o*c*kh*kw || o < 1 || c < 1 || kh < 1 || kw < 1 {
		panic(fmt.Errorf("%w: %d values for a [%d,%d,%d,%d] conv weight", ErrShape, len(w), o, c, kh, kw))
	}
	m := make([]float64, len(w))
	cols := o * kw
	for p := 0; p < o; p++ {
		for ci := 0; ci < c; ci++ {
			for i := 0; i < kh; i++ {
				for j := 0; j < kw; j++ {
					m[(ci*kh+i)*cols+p*kw+j] = w[((p*c+ci)*kh+i)*kw+j]
				}
			}
		}
	}
	return m
}

// SpatialWeights turns the factors of SpatialMatrix, a [(c·kh), r] and
// b [r, (o·kw)], into the vertical conv weight [r, c, kh, 1] and the
// horizontal conv weight [o, r, 1, kw].
func SpatialWeights(a, b []float64, r, o, c, kh, kw int) (vert, horiz []float64) {
	if len(a) != c*kh*r || len(b) != r*o*kw {
		panic(fmt.Errorf("%w: spatial factors %d and %d values for r=%d o=%d c=%d k=%d×%d", ErrShape, len(a), len(b), r, o, c, kh, kw))
	}
	vert = make([]float64, r*c*kh)
	for k := 0; k < r; k++ {
		for ci := 0; ci < c; ci++ {
			for i := 0; i < kh; i++ {
				vert[(k*c+ci)*kh+i] = a[(ci*kh+i)*r+k]
			}
		}
	}
	horiz = make([]float64, o*r*kw)
	for p := 0; p < o; p++ {
		for k := 0; k < r; k++ {
			for j := 0; j < kw; j++ {
				horiz[(p*r+k)*kw+j] = b[k*o*kw+p*kw+j]
			}
		}
	}
	return vert, horiz
}

// Transpose returns the n×m transpose of the m×n row-major matrix w.
func Transpose(w []float64, m, n int) []float64 {
	if len(w) != m*n {
		panic(fmt.Errorf("%w: %d values for a %d×%d matrix", ErrShape, len(w), m, n))
	}
	t := make([]float64, len(w))
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			t[j*m+i] = w[i*n+j]
		}
	}
	return t
}
