package quant

import (
	"fmt"
	"math"
)

// ScaleZeroPoint returns the scale and zero point that map the real range
// [rmin, rmax] onto the integer range [qmin, qmax], with the rule of ONNX
// Runtime's quantizer: the range is first widened to contain 0 (so that 0 is
// exactly representable); a symmetric range becomes [−a, a] with
// a = max(|rmin|, |rmax|); scale = (rmax − rmin)/(qmax − qmin), replaced by 1
// (with zero point 0) when it is 0; zero point = round(qmin − rmin/scale) clamped to
// [qmin, qmax] (for a symmetric range with qmin = −qmax it is 0).
func ScaleZeroPoint(rmin, rmax float64, qmin, qmax int, symmetric bool) (scale float32, zeroPoint int) {
	rmin = math.Min(rmin, 0)
	rmax = math.Max(rmax, 0)
	if symmetric {
		a := math.Max(math.Abs(rmin), math.Abs(rmax))
		rmin, rmax = -a, a
	}
	s := (rmax - rmin) / float64(qmax-qmin)
	scale = float32(s)
	if scale < math.SmallestNonzeroFloat32 || math.IsInf(float64(scale), 0) {
		return 1, clampInt(0, qmin, qmax)
	}
	if symmetric {
		zeroPoint = int(math.RoundToEven(float64(qmin+qmax) / 2))
	} else {
		zeroPoint = int(math.RoundToEven(float64(qmin) - rmin/float64(scale)))
	}
	return scale, clampInt(zeroPoint, qmin, qmax)
}

// Int8Range returns the integer range used for int8 weights: [−127, 127]
// when symmetric (ONNX Runtime's restricted symmetric range, so that the
// zero point is 0), [−128, 127] otherwise.
func Int8Range(symmetric bool) (qmin, qmax int) {
	if symmetric {
		return -127, 127
	}
	return -128, 127
}

// QuantizeValue returns clamp(roundToEven(x/scale) + zeroPoint, qmin, qmax),
// the element rule of ONNX QuantizeLinear.
func QuantizeValue(x float32, scale float32, zeroPoint, qmin, qmax int) int {
	q := math.RoundToEven(float64(x)/float64(scale)) + float64(zeroPoint)
	if q < float64(qmin) {
		return qmin
	}
	if q > float64(qmax) {
		return qmax
	}
	return int(q)
}

// LinearOptions chooses an 8-bit linear quantization.
type LinearOptions struct {
	// Axis is the channel axis for per-channel quantization, or −1 for one
	// scale for the whole tensor.
	Axis int
	// Symmetric uses a zero point of 0 and the range [−127, 127].
	Symmetric bool
}

// Linear is a tensor quantized to int8 with per-tensor or per-channel scale
// and zero point: x ≈ (Q − ZeroPoint[c]) · Scale[c].
type Linear struct {
	// Shape is the tensor's shape.
	Shape []int
	// Axis is the channel axis, or −1 when per tensor.
	Axis int
	// Q holds the int8 codes, in the tensor's row-major order.
	Q []int8
	// Scale has one entry per channel (one when per tensor).
	Scale []float32
	// ZeroPoint has one entry per channel (one when per tensor).
	ZeroPoint []int8
}

// numel returns the product of shape, panicking on negative dims.
func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		if d < 0 {
			panic(fmt.Errorf("%w: negative dimension in %v", ErrShape, shape))
		}
		n *= d
	}
	return n
}

// channelLayout returns (outer, channels, inner) of shape around axis.
func channelLayout(shape []int, axis int) (outer, ch, inner int) {
	outer, inner = 1, 1
	for i, d := range shape {
		switch {
		case i < axis:
			outer *= d
		case i > axis:
			inner *= d
		}
	}
	return outer, shape[axis], inner
}

// QuantizeLinear quantizes w (row-major, of the given shape) to int8. It
// returns an error for non-finite weights or an axis outside the shape; it
// panics with ErrShape when len(w) does not match shape.
func QuantizeLinear(w []float32, shape []int, opt LinearOptions) (*Linear, error) {
	if numel(shape) != len(w) {
		panic(fmt.Errorf("%w: %d values for shape %v", ErrShape, len(w), shape))
	}
	if opt.Axis < -1 || opt.Axis >= len(shape) {
		return nil, fmt.Errorf("%w: axis %d for a rank-%d tensor", ErrOptions, opt.Axis, len(shape))
	}
	for i, v := range w {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("%w: weight element %d is %v", ErrNonFinite, i, v)
		}
	}
	qmin, qmax := Int8Range(opt.Symmetric)
	l := &Linear{Shape: append([]int(nil), shape...), Axis: opt.Axis, Q: make([]int8, len(w))}
	if opt.Axis == -1 {
		lo, hi := minMax(w)
		s, z := ScaleZeroPoint(lo, hi, qmin, qmax, opt.Symmetric)
		l.Scale, l.ZeroPoint = []float32{s}, []int8{int8(z)}
		for i, v := range w {
			l.Q[i] = int8(QuantizeValue(v, s, z, qmin, qmax))
		}
		return l, nil
	}
	outer, ch, inner := channelLayout(shape, opt.Axis)
	l.Scale, l.ZeroPoint = make([]float32, ch), make([]int8, ch)
	for c := 0; c < ch; c++ {
		lo, hi := math.Inf(1), math.Inf(-1)
		for o := 0; o < outer; o++ {
			base := (o*ch + c) * inner
			for _, v := range w[base : base+inner] {
				lo = math.Min(lo, float64(v))
				hi = math.Max(hi, float64(v))
			}
		}
		if outer*inner == 0 {
			lo, hi = 0, 0
		}
		s, z := ScaleZeroPoint(lo, hi, qmin, qmax, opt.Symmetric)
		l.Scale[c], l.ZeroPoint[c] = s, int8(z)
		for o := 0; o < outer; o++ {
			base := (o*ch + c) * inner
			for i := base; i < base+inner; i++ {
				l.Q[i] = int8(QuantizeValue(w[i], s, z, qmin, qmax))
			}
		}
	}
	return l, nil
}

// Dequantize returns (Q − ZeroPoint)·Scale as float32, the value ONNX
// DequantizeLinear computes.
func (l *Linear) Dequantize() []float32 {
	out := make([]float32, len(l.Q))
	if l.Axis == -1 {
		for i, q := range l.Q {
			out[i] = float32(int(q)-int(l.ZeroPoint[0])) * l.Scale[0]
		}
		return out
	}
	outer, ch, inner := channelLayout(l.Shape, l.Axis)
	for o := 0; o < outer; o++ {
		for c := 0; c < ch; c++ {
			base := (o*ch + c) * inner
			s, z := l.Scale[c], int(l.ZeroPoint[c])
			for i := base; i < base+inner; i++ {
				out[i] = float32(int(l.Q[i])-z) * s
			}
		}
	}
	return out
}

// RelError returns ‖w − ŵ‖₂ / ‖w‖₂ in float64 (0 when w is all zeros and
// ŵ equals it). It panics with ErrShape when the lengths differ.
func RelError(w, what []float32) float64 {
	if len(w) != len(what) {
		panic(fmt.Errorf("%w: %d and %d values", ErrShape, len(w), len(what)))
	}
	var num, den float64
	for i, v := range w {
		d := float64(v) - float64(what[i])
		num += d * d
		den += float64(v) * float64(v)
	}
	return relFromSums(num, den)
}

// relFromSums is √(num/den): ‖W−Ŵ‖/‖W‖ from its two sums of squares (0 for
// 0/0, +Inf for a nonzero error of a zero weight).
func relFromSums(num, den float64) float64 {
	if den == 0 {
		if num == 0 {
			return 0
		}
		return math.Inf(1)
	}
	return math.Sqrt(num / den)
}

func minMax(w []float32) (lo, hi float64) {
	if len(w) == 0 {
		return 0, 0
	}
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, v := range w {
		lo = math.Min(lo, float64(v))
		hi = math.Max(hi, float64(v))
	}
	return lo, hi
}

func clampInt(v, lo, hi int) int {
	if v < lo {
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}
