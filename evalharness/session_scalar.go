//go:build cgo

package evalharness

import (
	"encoding/binary"
	"fmt"
	"math"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/onnxpost/onnxpost/onnxio"
)

// scalarValue builds a 0-d ONNX Runtime value (a sample rate, a step
// count) from a one-element array with an empty shape; onnxruntime_go's
// tensor constructors refuse empty shapes, its Scalar type does not.
func scalarValue(a *Array) (ort.Value, error) {
	le := binary.LittleEndian
	d := a.Data
	switch a.DType {
	case onnxio.Float:
		return ort.NewScalar(math.Float32frombits(le.Uint32(d)))
	case onnxio.Double:
		return ort.NewScalar(math.Float64frombits(le.Uint64(d)))
	case onnxio.Int64:
		return ort.NewScalar(int64(le.Uint64(d)))
	case onnxio.Int32:
		return ort.NewScalar(int32(le.Uint32(d)))
	case onnxio.Int16:
		return ort.NewScalar(int16(le.Uint16(d)))
	case onnxio.Int8:
		return ort.NewScalar(int8(d[0]))
	case onnxio.Uint64:
		return ort.NewScalar(le.Uint64(d))
	case onnxio.Uint32:
		return ort.NewScalar(le.Uint32(d))
	case onnxio.Uint16:
		return ort.NewScalar(le.Uint16(d))
	case onnxio.Uint8:
		return ort.NewScalar(d[0])
	case onnxio.Bool:
		return ort.NewScalar(d[0] != 0)
	}
	return nil, fmt.Errorf("%w: 0-d inputs of type %v are not supported", ErrArray, a.DType)
}
