package evalharness

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/onnxpost/onnxpost/onnxio"
)

// Array is a dense tensor held as little-endian bytes in C (row-major) order.
// It is the unit of data exchanged with datasets and sessions.
type Array struct {
	// DType is the element type (an ONNX TensorProto data type).
	DType onnxio.DType
	// Shape lists the dimensions; the first axis is the sample axis in
	// datasets. A scalar has an empty shape.
	Shape []int64
	// Data holds the elements, little-endian, C order; its length is
	// NumElements()*ElemSize(DType).
	Data []byte
}

// ErrArray reports an array whose dtype, shape and data do not agree, or an
// operation that its dtype does not support.
var ErrArray = errors.New("evalharness: invalid array")

// ElemSize returns the size in bytes of one element of d as stored in an
// Array, or 0 when Array does not support d (strings, sub-byte types).
func ElemSize(d onnxio.DType) int {
	switch d {
	case onnxio.Bool, onnxio.Uint8, onnxio.Int8:
		return 1
	case onnxio.Uint16, onnxio.Int16, onnxio.Float16, onnxio.BFloat16:
		return 2
	case onnxio.Float, onnxio.Int32, onnxio.Uint32:
		return 4
	case onnxio.Double, onnxio.Int64, onnxio.Uint64:
		return 8
	}
	return 0
}

// numElements returns the product of shape, or an error on a negative
// dimension or an overflow past limit.
func numElements(shape []int64, limit int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("%w: negative dimension %d in shape %v", ErrArray, d, shape)
		}
		if d != 0 && n > limit/d {
			return 0, fmt.Errorf("%w: shape %v has more than %d elements", ErrArray, shape, limit)
		}
		n *= d
	}
	return n, nil
}

// NumElements returns the number of elements the shape describes.
func (a *Array) NumElements() int64 {
	n := int64(1)
	for _, d := range a.Shape {
		n *= d
	}
	return n
}

// Validate checks that the dtype is supported and that len(Data) matches
// the shape.
func (a *Array) Validate() error {
	es := ElemSize(a.DType)
	if es == 0 {
		return fmt.Errorf("%w: unsupported dtype %v", ErrArray, a.DType)
	}
	n, err := numElements(a.Shape, math.MaxInt64/8)
	if err != nil {
		return err
	}
	if int64(len(a.Data)) != n*int64(es) {
		return fmt.Errorf("%w: shape %v of %v needs %d bytes, have %d", ErrArray, a.Shape, a.DType, n*int64(es), len(a.Data))
	}
	return nil
}

// Rows returns the size of the first axis (1 for a scalar).
func (a *Array) Rows() int64 {
	if len(a.Shape) == 0 {
		return 1
	}
	return a.Shape[0]
}

// Slice returns rows [i, j) along the first axis, sharing a's memory.
// It panics when the range is outside [0, Rows()] (a caller bug).
func (a *Array) Slice(i, j int64) *Array {
	if len(a.Shape) == 0 || i < 0 || j < i || j > a.Shape[0] {
		panic(fmt.Sprintf("evalharness: Slice(%d, %d) of shape %v", i, j, a.Shape))
	}
	row := int64(ElemSize(a.DType))
	for _, d := range a.Shape[1:] {
		row *= d
	}
	shape := append([]int64{j - i}, a.Shape[1:]...)
	return &Array{DType: a.DType, Shape: shape, Data: a.Data[i*row : j*row : j*row]}
}

// Concat joins arrays of the same dtype and trailing shape along the first
// axis into a new array.
func Concat(parts []*Array) (*Array, error) {
	if len(parts) == 0 {
		return nil, fmt.Errorf("%w: nothing to concatenate", ErrArray)
	}
	first := parts[0]
	if len(first.Shape) == 0 {
		return nil, fmt.Errorf("%w: cannot concatenate scalars", ErrArray)
	}
	rows := int64(0)
	size := 0
	for _, p := range parts {
		if p.DType != first.DType || !slices.Equal(p.Shape[1:], first.Shape[1:]) || len(p.Shape) != len(first.Shape) {
			return nil, fmt.Errorf("%w: cannot concatenate %v%v with %v%v", ErrArray, first.DType, first.Shape, p.DType, p.Shape)
		}
		rows += p.Shape[0]
		size += len(p.Data)
	}
	data := make([]byte, 0, size)
	for _, p := range parts {
		data = append(data, p.Data...)
	}
	shape := append([]int64{rows}, first.Shape[1:]...)
	return &Array{DType: first.DType, Shape: shape, Data: data}, nil
}

// Float64 converts the elements to float64 (bool as 0/1, float16 and
// bfloat16 decoded). It returns ErrArray for unsupported dtypes.
func (a *Array) Float64() ([]float64, error) { return a.Float64Into(nil) }

// Float64Into is Float64 converting into buf when it has the capacity (a
// new slice otherwise), so that a caller converting batch after batch
// reuses one buffer.
func (a *Array) Float64Into(buf []float64) ([]float64, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	n := int(a.NumElements())
	out := buf[:0]
	if cap(out) < n {
		out = make([]float64, n)
	}
	out = out[:n]
	d := a.Data
	le := binary.LittleEndian
	switch a.DType {
	case onnxio.Float:
		for i := range out {
			out[i] = float64(math.Float32frombits(le.Uint32(d[4*i:])))
		}
	case onnxio.Double:
		for i := range out {
			out[i] = math.Float64frombits(le.Uint64(d[8*i:]))
		}
	case onnxio.Float16:
		for i := range out {
			out[i] = float64(onnxio.Float16ToFloat32(le.Uint16(d[2*i:])))
		}
	case onnxio.BFloat16:
		for i := range out {
			out[i] = float64(onnxio.BFloat16ToFloat32(le.Uint16(d[2*i:])))
		}
	case onnxio.Int8:
		for i := range out {
			out[i] = float64(int8(d[i]))
		}
	case onnxio.Uint8, onnxio.Bool:
		for i := range out {
			out[i] = float64(d[i])
		}
	case onnxio.Int16:
		for i := range out {
			out[i] = float64(int16(le.Uint16(d[2*i:])))
		}
	case onnxio.Uint16:
		for i := range out {
			out[i] = float64(le.Uint16(d[2*i:]))
		}
	case onnxio.Int32:
		for i := range out {
			out[i] = float64(int32(le.Uint32(d[4*i:])))
		}
	case onnxio.Uint32:
		for i := range out {
			out[i] = float64(le.Uint32(d[4*i:]))
		}
	case onnxio.Int64:
		for i := range out {
			out[i] = float64(int64(le.Uint64(d[8*i:])))
		}
	case onnxio.Uint64:
		for i := range out {
			out[i] = float64(le.Uint64(d[8*i:]))
		}
	default:
		return nil, fmt.Errorf("%w: cannot convert %v to float64", ErrArray, a.DType)
	}
	return out, nil
}

// Int64 converts an integer (or bool) array to int64; floating-point arrays
// are rejected.
func (a *Array) Int64() ([]int64, error) {
	switch a.DType {
	case onnxio.Bool, onnxio.Uint8, onnxio.Int8, onnxio.Uint16, onnxio.Int16, onnxio.Int32, onnxio.Uint32, onnxio.Int64:
	default:
		return nil, fmt.Errorf("%w: %v is not an integer type", ErrArray, a.DType)
	}
	f, err := a.Float64()
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(f))
	if a.DType == onnxio.Int64 {
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint64(a.Data[8*i:]))
		}
		return out, nil
	}
	for i, v := range f {
		out[i] = int64(v)
	}
	return out, nil
}

// FromFloat32 returns a float32 Array of the given shape holding a copy of v.
// It panics when len(v) does not match the shape (a caller bug).
func FromFloat32(shape []int64, v []float32) *Array {
	a := &Array{DType: onnxio.Float, Shape: append([]int64(nil), shape...), Data: make([]byte, 4*len(v))}
	if a.NumElements() != int64(len(v)) {
		panic(fmt.Sprintf("evalharness: FromFloat32: %d values for shape %v", len(v), shape))
	}
	for i, x := range v {
		binary.LittleEndian.PutUint32(a.Data[4*i:], math.Float32bits(x))
	}
	return a
}

// FromFloat64 returns a float64 Array of the given shape holding a copy of v.
// It panics when len(v) does not match the shape (a caller bug).
func FromFloat64(shape []int64, v []float64) *Array {
	a := &Array{DType: onnxio.Double, Shape: append([]int64(nil), shape...), Data: make([]byte, 8*len(v))}
	if a.NumElements() != int64(len(v)) {
		panic(fmt.Sprintf("evalharness: FromFloat64: %d values for shape %v", len(v), shape))
	}
	for i, x := range v {
		binary.LittleEndian.PutUint64(a.Data[8*i:], math.Float64bits(x))
	}
	return a
}

// FromInt64 returns an int64 Array of the given shape holding a copy of v.
// It panics when len(v) does not match the shape (a caller bug).
func FromInt64(shape []int64, v []int64) *Array {
	a := &Array{DType: onnxio.Int64, Shape: append([]int64(nil), shape...), Data: make([]byte, 8*len(v))}
	if a.NumElements() != int64(len(v)) {
		panic(fmt.Sprintf("evalharness: FromInt64: %d values for shape %v", len(v), shape))
	}
	for i, x := range v {
		binary.LittleEndian.PutUint64(a.Data[8*i:], uint64(x))
	}
	return a
}
