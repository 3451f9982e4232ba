package npz

import (
	"fmt"
)

// Type is an element type. Its values are those of ONNX's
// TensorProto.DataType, so onnxio.DType(t) converts it.
type Type int32

// The supported element types.
const (
	Float32 Type = 1
	Uint8   Type = 2
	Int8    Type = 3
	Uint16  Type = 4
	Int16   Type = 5
	Int32   Type = 6
	Int64   Type = 7
	Bool    Type = 9
	Float16 Type = 10
	Float64 Type = 11
	Uint32  Type = 12
	Uint64  Type = 13
)

var typeNames = map[Type]string{
	Float32: "float32", Uint8: "uint8", Int8: "int8", Uint16: "uint16", Int16: "int16",
	Int32: "int32", Int64: "int64", Bool: "bool", Float16: "float16", Float64: "float64",
	Uint32: "uint32", Uint64: "uint64",
}

// String returns numpy's name of the type.
func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("type(%d)", int32(t))
}

// Size returns the size of one element in bytes (0 for unknown types).
func (t Type) Size() int { return elemSize(t) }

func elemSize(t Type) int {
	switch t {
	case Bool, Uint8, Int8:
		return 1
	case Uint16, Int16, Float16:
		return 2
	case Float32, Int32, Uint32:
		return 4
	case Float64, Int64, Uint64:
		return 8
	}
	return 0
}

// Array is one array: its type, shape and little-endian C-order bytes.
type Array struct {
	// Type is the element type.
	Type Type
	// Shape lists the dimensions (empty for a scalar).
	Shape []int64
	// Data holds the elements, little-endian, in C order.
	Data []byte
}

// Validate checks that the type is supported and len(Data) matches Shape.
func (a *Array) Validate() error {
	es := elemSize(a.Type)
	if es == 0 {
		return fmt.Errorf("%w: unsupported type %v", ErrFormat, a.Type)
	}
	n, err := numElements(a.Shape, (1<<62)/int64(es))
	if err != nil {
		return err
	}
	if int64(len(a.Data)) != n*int64(es) {
		return fmt.Errorf("%w: shape %v of %v needs %d bytes, have %d", ErrFormat, a.Shape, a.Type, n*int64(es), len(a.Data))
	}
	return nil
}

// numElements returns the product of shape, or an error on a negative
// dimension or a product past limit.
func numElements(shape []int64, limit int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("%w: negative dimension %d in shape %v", ErrFormat, d, shape)
		}
		if d != 0 && n > limit/d {
			return 0, fmt.Errorf("%w: shape %v has more than %d elements", ErrFormat, shape, limit)
		}
		n *= d
	}
	return n, nil
}
