package onnxio

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"unsafe"
)

// Tensor is a named, typed, shaped array. Numeric data is held as the
// little-endian bytes raw_data would hold (sub-byte types packed LSB first);
// string tensors hold their elements in Strings.
//
// A Tensor returned by Model.Initializer is a copy-free view of the model's
// data where possible: do not modify the slice returned by Bytes; build a
// new Tensor instead (NewTensor, FromFloat32, ...).
type Tensor struct {
	Name    string
	DType   DType
	Shape   []int64
	data    []byte
	Strings [][]byte
}

// NumElements returns the product of dims, or an error wrapping ErrFormat
// if a dim is negative or the product overflows.
func NumElements(shape []int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("%w: negative dim %d in shape %v", ErrFormat, d, shape)
		}
		hi, lo := bits.Mul64(uint64(n), uint64(d))
		if hi != 0 || lo > math.MaxInt64/16 {
			return 0, fmt.Errorf("%w: shape %v has too many elements", ErrFormat, shape)
		}
		n = int64(lo)
	}
	return n, nil
}

// NewTensor returns a tensor over raw little-endian data, checking that its
// length matches dtype and shape. The slice is not copied.
func NewTensor(name string, dt DType, shape []int64, raw []byte) (*Tensor, error) {
	n, err := NumElements(shape)
	if err != nil {
		return nil, err
	}
	if dt == String {
		return nil, fmt.Errorf("%w: string tensors hold Strings, not raw data", ErrDType)
	}
	want := dt.ByteSize(n)
	if want < 0 {
		return nil, fmt.Errorf("%w: %v", ErrDType, dt)
	}
	if int64(len(raw)) != want {
		return nil, fmt.Errorf("%w: tensor %q: %v %v needs %d bytes, has %d", ErrFormat, name, dt, shape, want, len(raw))
	}
	return &Tensor{Name: name, DType: dt, Shape: append([]int64(nil), shape...), data: raw}, nil
}

// NumElements returns the number of elements (shape already validated).
func (t *Tensor) NumElements() int64 {
	n, _ := NumElements(t.Shape)
	return n
}

// Bytes returns the raw little-endian data (nil for string tensors). The
// caller must not modify it.
func (t *Tensor) Bytes() []byte { return t.data }

// Clone returns a deep copy.
func (t *Tensor) Clone() *Tensor {
	c := &Tensor{Name: t.Name, DType: t.DType, Shape: append([]int64(nil), t.Shape...)}
	if t.data != nil {
		c.data = append([]byte(nil), t.data...)
	}
	for _, s := range t.Strings {
		c.Strings = append(c.Strings, append([]byte(nil), s...))
	}
	return c
}

// FromFloat32 builds a tensor of dtype dt from float32 values, rounding to
// nearest even for narrower float types and saturating integers.
func FromFloat32(name string, dt DType, shape []int64, v []float32) (*Tensor, error) {
	n, err := NumElements(shape)
	if err != nil {
		return nil, err
	}
	if int64(len(v)) != n {
		return nil, fmt.Errorf("%w: %d values for shape %v", ErrFormat, len(v), shape)
	}
	raw, err := EncodeFloat32(dt, v)
	if err != nil {
		return nil, err
	}
	return &Tensor{Name: name, DType: dt, Shape: append([]int64(nil), shape...), data: raw}, nil
}

// FromFloat64 builds a tensor of dtype dt from float64 values: float64 is
// stored exactly, integers are rounded to nearest even and saturated from
// the float64 value itself, and narrower float types are rounded once, to
// nearest even, as FromFloat32 does (through a float32 rounded to odd, which
// avoids double rounding).
func FromFloat64(name string, dt DType, shape []int64, v []float64) (*Tensor, error) {
	n, err := NumElements(shape)
	if err != nil {
		return nil, err
	}
	if int64(len(v)) != n {
		return nil, fmt.Errorf("%w: %d values for shape %v", ErrFormat, len(v), shape)
	}
	switch {
	case dt == Double:
		raw := make([]byte, 8*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint64(raw[8*i:], math.Float64bits(x))
		}
		return &Tensor{Name: name, DType: dt, Shape: append([]int64(nil), shape...), data: raw}, nil
	case dt.IsInteger() || dt == Bool:
		raw := make([]byte, dt.ByteSize(n))
		for i, x := range v {
			if dt == Bool {
				if x != 0 {
					raw[i] = 1
				}
				continue
			}
			putInt(raw, i, dt, saturate(x, dt))
		}
		return &Tensor{Name: name, DType: dt, Shape: append([]int64(nil), shape...), data: raw}, nil
	}
	f := make([]float32, len(v))
	for i, x := range v {
		if dt == Float {
			f[i] = float32(x)
		} else {
			f[i] = float32RoundToOdd(x)
		}
	}
	return FromFloat32(name, dt, shape, f)
}

// float32RoundToOdd converts x to float32 rounding to odd: an inexact result
// is the neighbour of the two around x whose last mantissa bit is 1. Rounding
// that again to a format at least two bits narrower (float16, bfloat16,
// float8, ...) gives the correctly rounded result of x.
func float32RoundToOdd(x float64) float32 {
	r := float32(x)
	if float64(r) == x || x != x || math.Float32bits(r)&1 == 1 {
		return r
	}
	if float64(r) > x {
		return math.Nextafter32(r, float32(math.Inf(-1)))
	}
	return math.Nextafter32(r, float32(math.Inf(1)))
}

// FromInt64 builds an integer tensor (any integer dtype or bool) from int64
// values, saturating to the type's range.
func FromInt64(name string, dt DType, shape []int64, v []int64) (*Tensor, error) {
	if !dt.IsInteger() && dt != Bool {
		return nil, fmt.Errorf("%w: FromInt64 needs an integer type, got %v", ErrDType, dt)
	}
	n, err := NumElements(shape)
	if err != nil {
		return nil, err
	}
	if int64(len(v)) != n {
		return nil, fmt.Errorf("%w: %d values for shape %v", ErrFormat, len(v), shape)
	}
	raw := make([]byte, dt.ByteSize(n))
	for i, x := range v {
		putInt(raw, i, dt, saturate(float64(x), dt))
	}
	switch dt {
	case Int64:
		for i, x := range v {
			binary.LittleEndian.PutUint64(raw[8*i:], uint64(x))
		}
	case Uint64: // exact, where the float64 path above rounds beyond 2^53
		for i, x := range v {
			binary.LittleEndian.PutUint64(raw[8*i:], uint64(max(x, 0)))
		}
	}
	return &Tensor{Name: name, DType: dt, Shape: append([]int64(nil), shape...), data: raw}, nil
}

// intRange returns the range of an integer type.
func intRange(dt DType) (lo, hi float64) {
	switch dt {
	case Bool:
		return 0, 1
	case Uint2:
		return 0, 3
	case Int2:
		return -2, 1
	case Uint4:
		return 0, 15
	case Int4:
		return -8, 7
	case Uint8:
		return 0, math.MaxUint8
	case Int8:
		return math.MinInt8, math.MaxInt8
	case Uint16:
		return 0, math.MaxUint16
	case Int16:
		return math.MinInt16, math.MaxInt16
	case Uint32:
		return 0, math.MaxUint32
	case Int32:
		return math.MinInt32, math.MaxInt32
	case Uint64:
		return 0, math.MaxUint64
	}
	return math.MinInt64, math.MaxInt64
}

// saturate rounds x to nearest even and clamps it to dt's range.
func saturate(x float64, dt DType) int64 {
	if x != x {
		return 0
	}
	r := math.RoundToEven(x)
	// 64-bit bounds are not exact in float64: compare against the powers
	// of two, since converting an out-of-range float to an integer is
	// implementation-defined in Go (amd64 gives MinInt64).
	switch dt {
	case Int64:
		switch {
		case r >= 1<<63:
			return math.MaxInt64
		case r < -(1 << 63):
			return math.MinInt64
		}
		return int64(r)
	case Uint64:
		switch {
		case r >= 1<<64:
			return -1 // all ones
		case r <= 0:
			return 0
		}
		return int64(uint64(r))
	}
	lo, hi := intRange(dt)
	if r < lo {
		r = lo
	}
	if r > hi {
		r = hi
	}
	return int64(r)
}

// putInt stores integer v as element i of raw for integer type dt.
func putInt(raw []byte, i int, dt DType, v int64) {
	switch dt.Bits() {
	case 2, 4:
		putPacked(raw, i, dt.Bits(), uint8(v))
	case 8:
		raw[i] = uint8(v)
	case 16:
		binary.LittleEndian.PutUint16(raw[2*i:], uint16(v))
	case 32:
		binary.LittleEndian.PutUint32(raw[4*i:], uint32(v))
	case 64:
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
	}
}

// putPacked stores the low w bits of v as element i of an LSB-first bit stream.
func putPacked(raw []byte, i, w int, v uint8) {
	bit := i * w
	mask := uint16(1)<<w - 1
	word := uint16(v) & mask
	b := bit / 8
	off := bit % 8
	raw[b] = raw[b]&^uint8(mask<<off) | uint8(word<<off)
	if off+w > 8 {
		raw[b+1] = raw[b+1]&^uint8(mask>>(8-off)) | uint8(word>>(8-off))
	}
}

// getPacked returns element i of an LSB-first bit stream of w-bit elements.
func getPacked(raw []byte, i, w int) uint8 {
	bit := i * w
	b := bit / 8
	off := bit % 8
	v := uint16(raw[b]) >> off
	if off+w > 8 {
		v |= uint16(raw[b+1]) << (8 - off)
	}
	return uint8(v & (1<<w - 1))
}

// EncodeFloat32 encodes float32 values as raw data of dtype dt.
func EncodeFloat32(dt DType, v []float32) ([]byte, error) {
	n := int64(len(v))
	sz := dt.ByteSize(n)
	if sz < 0 || dt == Complex64 || dt == Complex128 {
		return nil, fmt.Errorf("%w: cannot encode float32 values as %v", ErrDType, dt)
	}
	raw := make([]byte, sz)
	switch dt {
	case Float:
		for i, x := range v {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(x))
		}
	case Double:
		for i, x := range v {
			binary.LittleEndian.PutUint64(raw[8*i:], math.Float64bits(float64(x)))
		}
	case Float16:
		for i, x := range v {
			binary.LittleEndian.PutUint16(raw[2*i:], Float32ToFloat16(x))
		}
	case BFloat16:
		for i, x := range v {
			binary.LittleEndian.PutUint16(raw[2*i:], Float32ToBFloat16(x))
		}
	default:
		if f := smallFloatFormat(dt); f != nil {
			if f.bits == 8 {
				for i, x := range v {
					raw[i] = f.encode(x)
				}
			} else {
				for i, x := range v {
					putPacked(raw, i, f.bits, f.encode(x))
				}
			}
			return raw, nil
		}
		if !dt.IsInteger() && dt != Bool {
			return nil, fmt.Errorf("%w: cannot encode float32 values as %v", ErrDType, dt)
		}
		for i, x := range v {
			if dt == Bool {
				if x != 0 {
					raw[i] = 1
				}
				continue
			}
			putInt(raw, i, dt, saturate(float64(x), dt))
		}
	}
	return raw, nil
}

// elem returns element i as float64 (complex types: the real part is not
// supported; callers check the type first).
func (t *Tensor) elem(i int) float64 {
	r := t.data
	switch t.DType {
	case Float:
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(r[4*i:])))
	case Double:
		return math.Float64frombits(binary.LittleEndian.Uint64(r[8*i:]))
	case Float16:
		return float64(Float16ToFloat32(binary.LittleEndian.Uint16(r[2*i:])))
	case BFloat16:
		return float64(BFloat16ToFloat32(binary.LittleEndian.Uint16(r[2*i:])))
	case Bool, Uint8:
		return float64(r[i])
	case Int8:
		return float64(int8(r[i]))
	case Uint16:
		return float64(binary.LittleEndian.Uint16(r[2*i:]))
	case Int16:
		return float64(int16(binary.LittleEndian.Uint16(r[2*i:])))
	case Uint32:
		return float64(binary.LittleEndian.Uint32(r[4*i:]))
	case Int32:
		return float64(int32(binary.LittleEndian.Uint32(r[4*i:])))
	case Uint64:
		return float64(binary.LittleEndian.Uint64(r[8*i:]))
	case Int64:
		return float64(int64(binary.LittleEndian.Uint64(r[8*i:])))
	case Uint4:
		return float64(getPacked(r, i, 4))
	case Int4:
		return float64(int8(getPacked(r, i, 4)<<4) >> 4)
	case Uint2:
		return float64(getPacked(r, i, 2))
	case Int2:
		return float64(int8(getPacked(r, i, 2)<<6) >> 6)
	}
	f := smallFloatFormat(t.DType)
	f.init()
	if f.bits == 8 {
		return float64(f.decode[r[i]])
	}
	return float64(f.decode[getPacked(r, i, f.bits)])
}

func (t *Tensor) checkNumeric() error {
	if !t.DType.IsNumeric() {
		return fmt.Errorf("%w: tensor %q has type %v, not a real numeric type", ErrDType, t.Name, t.DType)
	}
	n, err := NumElements(t.Shape)
	if err != nil {
		return err
	}
	if int64(len(t.data)) != t.DType.ByteSize(n) {
		return fmt.Errorf("%w: tensor %q: %d bytes for %v %v", ErrFormat, t.Name, len(t.data), t.DType, t.Shape)
	}
	return nil
}

// Float32 returns the values converted to float32 (a new slice).
func (t *Tensor) Float32() ([]float32, error) {
	if err := t.checkNumeric(); err != nil {
		return nil, err
	}
	n := int(t.NumElements())
	out := make([]float32, n)
	switch t.DType {
	case Float:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.data[4*i:]))
		}
	case Float16:
		for i := range out {
			out[i] = Float16ToFloat32(binary.LittleEndian.Uint16(t.data[2*i:]))
		}
	case BFloat16:
		for i := range out {
			out[i] = BFloat16ToFloat32(binary.LittleEndian.Uint16(t.data[2*i:]))
		}
	default:
		for i := range out {
			out[i] = float32(t.elem(i))
		}
	}
	return out, nil
}

// nativeLE reports whether the host is little-endian (as raw data are).
var nativeLE = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// Float32View returns a float32 tensor's values as a slice over its bytes,
// without copying, and true; nil and false for other dtypes, on big-endian
// hosts and when the bytes are not 4-byte aligned (use Float32). The slice
// shares the bytes: what Bytes says of them holds for it.
func (t *Tensor) Float32View() ([]float32, bool) {
	if t.DType != Float || !nativeLE || t.checkNumeric() != nil {
		return nil, false
	}
	if len(t.data) == 0 {
		return []float32{}, true
	}
	if uintptr(unsafe.Pointer(&t.data[0]))%4 != 0 {
		return nil, false
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&t.data[0])), len(t.data)/4), true
}

// Float64 returns the values converted to float64 (a new slice; exact for
// every type but 64-bit integers beyond 2^53).
func (t *Tensor) Float64() ([]float64, error) {
	if err := t.checkNumeric(); err != nil {
		return nil, err
	}
	out := make([]float64, t.NumElements())
	for i := range out {
		out[i] = t.elem(i)
	}
	return out, nil
}

// Int64 returns the values of an integer or bool tensor as int64.
func (t *Tensor) Int64() ([]int64, error) {
	if !t.DType.IsInteger() && t.DType != Bool {
		return nil, fmt.Errorf("%w: tensor %q has type %v, not an integer type", ErrDType, t.Name, t.DType)
	}
	if err := t.checkNumeric(); err != nil {
		return nil, err
	}
	out := make([]int64, t.NumElements())
	for i := range out {
		switch t.DType {
		case Int64, Uint64:
			out[i] = int64(binary.LittleEndian.Uint64(t.data[8*i:]))
		default:
			out[i] = int64(t.elem(i))
		}
	}
	return out, nil
}

// ZeroFraction returns the fraction of elements equal to zero (0 for
// non-numeric or empty tensors).
func (t *Tensor) ZeroFraction() float64 {
	if t.checkNumeric() != nil {
		return 0
	}
	n := int(t.NumElements())
	if n == 0 {
		return 0
	}
	zeros := 0
	switch t.DType {
	case Float:
		for i := 0; i < n; i++ {
			if binary.LittleEndian.Uint32(t.data[4*i:])&0x7fffffff == 0 {
				zeros++
			}
		}
	default:
		for i := 0; i < n; i++ {
			if t.elem(i) == 0 {
				zeros++
			}
		}
	}
	return float64(zeros) / float64(n)
}
