package calib_test

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/onnxio"
)

// A MatMul y = x·W with W [2, 3]: the in-memory calibration from captured
// values of x gives W's input Gram matrix, its column norms and x's range.
func Example() {
	m := onnxio.New("mm", 17)
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "N", Value: -1}, {Value: 2}}})
	raw := make([]byte, 4*6)
	for i := 0; i < 6; i++ {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(1))
	}
	w, _ := onnxio.NewTensor("W", onnxio.Float, []int64{2, 3}, raw)
	_ = m.SetInitializer(w)
	_ = m.InsertNodes(onnxio.Node{Name: "mm", OpType: "MatMul", Inputs: []string{"x", "W"}, Outputs: []string{"y"}})
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float})

	x := calib.Activation{Shape: []int64{3, 2}, Data: []float32{1, 2, 3, 4, -5, 6}}
	var st calib.Stats
	st, err := calib.FromActivations(m, map[string]calib.Activation{"x": x}, calib.Request{Grams: []string{"W"}, Tensors: []string{"x"}, Bins: 4}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	xtx, d, n, _ := st.InputGram("W")
	sq, _, _ := st.SquaredColumnNorms("W")
	lo, hi, _ := st.ActivationRange("x")
	counts, _, _ := st.ActivationHistogram("x")
	fmt.Println(d, n, xtx)
	fmt.Println(sq, lo, hi, counts)
	// Output:
	// 2 3 [35 -16 -16 56]
	// [35 56] -5 6 [1 0 3 2]
}
