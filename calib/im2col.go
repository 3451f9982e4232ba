package calib

import (
	"fmt"

	"github.com/onnxpost/onnxpost/onnxio"
)

// Conv is the geometry of a 1-D or 2-D Conv's im2col view (a 1-D Conv is
// seen as 2-D with a height of 1).
type Conv struct {
	// C is the number of input channels per group, Group the number of
	// groups; KH, KW the kernel.
	C, Group, KH, KW int
	// SH, SW are the strides, DH, DW the dilations.
	SH, SW, DH, DW int
	// PadT, PadL, PadB, PadR are the explicit pads (AutoPad NOTSET).
	PadT, PadL, PadB, PadR int
	// AutoPad is the node's auto_pad (NOTSET, VALID, SAME_UPPER,
	// SAME_LOWER).
	AutoPad string
	// OneD marks a 1-D Conv: its input is [N, C, L].
	OneD bool
}

// ConvOf reads the geometry of Conv node n with weight dims w
// ([O, C/group, kh, kw] or [O, C/group, k]).
func ConvOf(n onnxio.Node, w []int64) (*Conv, error) {
	cg := &Conv{Group: int(n.Int("group", 1)), SH: 1, SW: 1, DH: 1, DW: 1, AutoPad: n.Str("auto_pad", "NOTSET")}
	switch len(w) {
	case 4:
		cg.C, cg.KH, cg.KW = int(w[1]), int(w[2]), int(w[3])
		if s := n.Ints("strides"); len(s) == 2 {
			cg.SH, cg.SW = int(s[0]), int(s[1])
		}
		if d := n.Ints("dilations"); len(d) == 2 {
			cg.DH, cg.DW = int(d[0]), int(d[1])
		}
		if p := n.Ints("pads"); len(p) == 4 {
			cg.PadT, cg.PadL, cg.PadB, cg.PadR = int(p[0]), int(p[1]), int(p[2]), int(p[3])
		}
	case 3:
		cg.C, cg.KH, cg.KW, cg.OneD = int(w[1]), 1, int(w[2]), true
		if s := n.Ints("strides"); len(s) == 1 {
			cg.SW = int(s[0])
		}
		if d := n.Ints("dilations"); len(d) == 1 {
			cg.DW = int(d[0])
		}
		if p := n.Ints("pads"); len(p) == 2 {
			cg.PadL, cg.PadR = int(p[0]), int(p[1])
		}
	default:
		return nil, fmt.Errorf("%w: only 1-D and 2-D Conv are supported (weight shape %v)", ErrUnsupported, w)
	}
	if cg.Group < 1 || cg.C < 1 || cg.KH < 1 || cg.KW < 1 || cg.SH < 1 || cg.SW < 1 || cg.DH < 1 || cg.DW < 1 {
		return nil, fmt.Errorf("%w: Conv %s: bad geometry (weight %v, group %d, strides/dilations must be ≥ 1)", ErrUnsupported, n.Name, w, cg.Group)
	}
	return cg, nil
}

// D returns the patch length C·kh·kw.
func (cg *Conv) D() int { return cg.C * cg.KH * cg.KW }

// geometry checks x of the given shape against the Conv and returns the
// input's dims, the output's spatial dims and the top and left pads.
func (cg *Conv) geometry(x []float64, shape []int64) (n, c, h, w, oh, ow, pt, pl int, err error) {
	if cg.OneD && len(shape) == 3 {
		shape = []int64{shape[0], shape[1], 1, shape[2]}
	}
	if len(shape) != 4 || int(shape[1]) != cg.C*cg.Group {
		err = fmt.Errorf("%w: Conv input shape %v, want [N, %d, H, W]", ErrUnsupported, shape, cg.C*cg.Group)
		return
	}
	n, c, h, w = int(shape[0]), int(shape[1]), int(shape[2]), int(shape[3])
	if len(x) != n*c*h*w {
		err = fmt.Errorf("%w: Conv input of %d values for shape %v", ErrUnsupported, len(x), shape)
		return
	}
	ekh, ekw := (cg.KH-1)*cg.DH+1, (cg.KW-1)*cg.DW+1
	var pb, pr int
	pt, pl, pb, pr = cg.PadT, cg.PadL, cg.PadB, cg.PadR
	switch cg.AutoPad {
	case "NOTSET", "":
	case "VALID":
		pt, pl, pb, pr = 0, 0, 0, 0
	case "SAME_UPPER", "SAME_LOWER":
		oh, ow := (h+cg.SH-1)/cg.SH, (w+cg.SW-1)/cg.SW
		th := max(0, (oh-1)*cg.SH+ekh-h)
		tw := max(0, (ow-1)*cg.SW+ekw-w)
		if cg.AutoPad == "SAME_UPPER" {
			pt, pb, pl, pr = th/2, th-th/2, tw/2, tw-tw/2
		} else {
			pt, pb, pl, pr = th-th/2, th/2, tw-tw/2, tw/2
		}
	default:
		err = fmt.Errorf("%w: auto_pad %q", ErrUnsupported, cg.AutoPad)
		return
	}
	oh = (h+pt+pb-ekh)/cg.SH + 1
	ow = (w+pl+pr-ekw)/cg.SW + 1
	if oh <= 0 || ow <= 0 {
		err = fmt.Errorf("%w: Conv output would be empty for input %v", ErrUnsupported, shape)
	}
	return
}

// AddSquaredNorms adds to sums (D() running sums) the squares of the
// im2col patch matrix's columns over x [N, C·Group, H, W] (or [N,
// C·Group, L]) without building the patches: each column's sum takes its
// values in the patches' row order (sample, group, output row, output
// column), padding left out (it adds +0), so the sums are bit for bit
// those of Patches' rows accumulated one after another. It returns the
// number of patch rows.
func (cg *Conv) AddSquaredNorms(x []float64, shape []int64, sums []float64) (int64, error) {
	n, c, h, w, oh, ow, pt, pl, err := cg.geometry(x, shape)
	if err != nil {
		return 0, err
	}
	if len(sums) != cg.D() {
		return 0, fmt.Errorf("%w: %d sums for patches of %d", ErrUnsupported, len(sums), cg.D())
	}
	k := 0
	for ch := 0; ch < cg.C; ch++ {
		for i := 0; i < cg.KH; i++ {
			for j := 0; j < cg.KW; j++ {
				s := sums[k]
				for b := 0; b < n; b++ {
					for gr := 0; gr < cg.Group; gr++ {
						base := (b*c + gr*cg.C + ch) * h * w
						for oy := 0; oy < oh; oy++ {
							y := oy*cg.SH - pt + i*cg.DH
							if y < 0 || y >= h {
								continue
							}
							row := x[base+y*w : base+(y+1)*w]
							xx := j*cg.DW - pl
							for ox := 0; ox < ow; ox, xx = ox+1, xx+cg.SW {
								if xx >= 0 && xx < w {
									v := row[xx]
									s += float64(v * v)
								}
							}
						}
					}
				}
				sums[k] = s
				k++
			}
		}
	}
	return int64(n * cg.Group * oh * ow), nil
}

// Patches produces the im2col patches of x [N, C·Group, H, W] (or
// [N, C·Group, L] for a 1-D Conv) as rows of length D(), ordered channel
// first, then kernel row, then kernel column (the order of W[o]
// flattened), with zero padding; with several groups, each group's
// patches are rows of their own (pooled). It hands them to emit in chunks
// of at most maxRows rows; the buffer is reused between calls.
func (cg *Conv) Patches(x []float64, shape []int64, maxRows int, emit func(mat []float64, rows int)) error {
	n, c, h, w, oh, ow, pt, pl, err := cg.geometry(x, shape)
	if err != nil {
		return err
	}
	d := cg.D()
	total := n * cg.Group * oh * ow
	buf := make([]float64, max(1, min(maxRows, total))*d)
	r := 0
	for b := 0; b < n; b++ {
		for gr := 0; gr < cg.Group; gr++ {
			for oy := 0; oy < oh; oy++ {
				for ox := 0; ox < ow; ox++ {
					row := buf[r*d : (r+1)*d]
					k := 0
					for ch := 0; ch < cg.C; ch++ {
						base := (b*c + gr*cg.C + ch) * h * w
						for i := 0; i < cg.KH; i++ {
							y := oy*cg.SH - pt + i*cg.DH
							for j := 0; j < cg.KW; j++ {
								xx := ox*cg.SW - pl + j*cg.DW
								if y >= 0 && y < h && xx >= 0 && xx < w {
									row[k] = x[base+y*w+xx]
								} else {
									row[k] = 0
								}
								k++
							}
						}
					}
					r++
					if r*d == len(buf) {
						emit(buf, r)
						r = 0
					}
				}
			}
		}
	}
	if r > 0 {
		emit(buf[:r*d], r)
	}
	return nil
}
