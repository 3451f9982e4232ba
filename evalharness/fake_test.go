package evalharness

import (
	"fmt"

	"github.com/onnxpost/onnxpost/onnxio"
)

// linearRunner is a pure-Go Runner computing y = x·W for tests of the
// harness's own logic (batching, metrics); the real engine is tested with
// ONNX Runtime elsewhere.
type linearRunner struct {
	in, out int
	w       []float64 // in×out, row-major
	calls   int
}

func (l *linearRunner) Inputs() []TensorInfo {
	return []TensorInfo{{Name: "x", DType: onnxio.Float, Shape: []int64{-1, int64(l.in)}}}
}

func (l *linearRunner) Outputs() []TensorInfo {
	return []TensorInfo{{Name: "y", DType: onnxio.Float, Shape: []int64{-1, int64(l.out)}}}
}

func (l *linearRunner) Run(inputs map[string]*Array) ([]*Array, error) {
	l.calls++
	x, ok := inputs["x"]
	if !ok {
		return nil, fmt.Errorf("no x")
	}
	xv, err := x.Float64()
	if err != nil {
		return nil, err
	}
	n := int(x.Shape[0])
	y := make([]float32, n*l.out)
	for i := 0; i < n; i++ {
		for j := 0; j < l.out; j++ {
			s := 0.0
			for k := 0; k < l.in; k++ {
				s += xv[i*l.in+k] * l.w[k*l.out+j]
			}
			y[i*l.out+j] = float32(s)
		}
	}
	return []*Array{FromFloat32([]int64{int64(n), int64(l.out)}, y)}, nil
}
