package onnxio

import "fmt"

// DType is an ONNX tensor element type; its values are those of
// TensorProto.DataType.
type DType int32

// The ONNX data types (onnx 1.23's TensorProto.DataType).
const (
	Undefined      DType = 0
	Float          DType = 1
	Uint8          DType = 2
	Int8           DType = 3
	Uint16         DType = 4
	Int16          DType = 5
	Int32          DType = 6
	Int64          DType = 7
	String         DType = 8
	Bool           DType = 9
	Float16        DType = 10
	Double         DType = 11
	Uint32         DType = 12
	Uint64         DType = 13
	Complex64      DType = 14
	Complex128     DType = 15
	BFloat16       DType = 16
	Float8E4M3FN   DType = 17
	Float8E4M3FNUZ DType = 18
	Float8E5M2     DType = 19
	Float8E5M2FNUZ DType = 20
	Uint4          DType = 21
	Int4           DType = 22
	Float4E2M1     DType = 23
	Float8E8M0     DType = 24
	Uint2          DType = 25
	Int2           DType = 26
	Float6E2M3     DType = 27
	Float6E3M2     DType = 28
)

var dtypeNames = map[DType]string{
	Undefined: "undefined", Float: "float32", Uint8: "uint8", Int8: "int8", Uint16: "uint16",
	Int16: "int16", Int32: "int32", Int64: "int64", String: "string", Bool: "bool",
	Float16: "float16", Double: "float64", Uint32: "uint32", Uint64: "uint64",
	Complex64: "complex64", Complex128: "complex128", BFloat16: "bfloat16",
	Float8E4M3FN: "float8e4m3fn", Float8E4M3FNUZ: "float8e4m3fnuz", Float8E5M2: "float8e5m2",
	Float8E5M2FNUZ: "float8e5m2fnuz", Uint4: "uint4", Int4: "int4", Float4E2M1: "float4e2m1",
	Float8E8M0: "float8e8m0", Uint2: "uint2", Int2: "int2", Float6E2M3: "float6e2m3", Float6E3M2: "float6e3m2",
}

// String returns the type's short name (float32, float16, int4, ...).
func (d DType) String() string {
	if s, ok := dtypeNames[d]; ok {
		return s
	}
	return fmt.Sprintf("dtype(%d)", int32(d))
}

// ParseDType parses a name as returned by DType.String.
func ParseDType(s string) (DType, error) {
	for d, n := range dtypeNames {
		if n == s {
			return d, nil
		}
	}
	return Undefined, fmt.Errorf("%w: unknown data type %q", ErrDType, s)
}

// Bits returns the storage size of one element in bits (0 for strings and
// unknown types).
func (d DType) Bits() int {
	switch d {
	case Bool, Uint8, Int8, Float8E4M3FN, Float8E4M3FNUZ, Float8E5M2, Float8E5M2FNUZ, Float8E8M0:
		return 8
	case Uint16, Int16, Float16, BFloat16:
		return 16
	case Float, Int32, Uint32:
		return 32
	case Double, Int64, Uint64, Complex64:
		return 64
	case Complex128:
		return 128
	case Uint4, Int4, Float4E2M1:
		return 4
	case Uint2, Int2:
		return 2
	case Float6E2M3, Float6E3M2:
		return 6
	}
	return 0
}

// IsFloat reports whether d is a real floating-point type (float8/4 included).
func (d DType) IsFloat() bool {
	switch d {
	case Float, Double, Float16, BFloat16, Float8E4M3FN, Float8E4M3FNUZ, Float8E5M2, Float8E5M2FNUZ, Float4E2M1, Float8E8M0, Float6E2M3, Float6E3M2:
		return true
	}
	return false
}

// IsInteger reports whether d is an integer type (bool excluded).
func (d DType) IsInteger() bool {
	switch d {
	case Uint8, Int8, Uint16, Int16, Int32, Int64, Uint32, Uint64, Uint4, Int4, Uint2, Int2:
		return true
	}
	return false
}

// IsNumeric reports whether Tensor can view d as float32/float64.
func (d DType) IsNumeric() bool {
	return d.IsFloat() || d.IsInteger() || d == Bool
}

// ByteSize returns the number of bytes n elements of d occupy in raw_data
// (sub-byte types packed, rounded up), or -1 for strings and unknown types.
func (d DType) ByteSize(n int64) int64 {
	b := int64(d.Bits())
	if b == 0 {
		return -1
	}
	// (n/8)*b cannot overflow for the counts NumElements accepts, where
	// n*b could for 64- and 128-bit types.
	return n/8*b + (n%8*b+7)/8
}
