package evaltest_test

import (
	"fmt"
	"log"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/evalharness/evaltest"
	"github.com/onnxpost/onnxpost/onnxio"
)

// Sessions opened with SessionOptions.Open set to a Recorder's Open run in
// the pure-Go interpreter: no ONNX Runtime library is needed.
func Example() {
	m := onnxio.New("double", 17)
	two, _ := onnxio.FromFloat32("two", onnxio.Float, []int64{1}, []float32{2})
	if err := m.SetInitializer(two); err != nil {
		log.Fatal(err)
	}
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "N"}, {Value: 2}}})
	if err := m.InsertNodes(onnxio.Node{Name: "mul", OpType: "Mul", Inputs: []string{"x", "two"}, Outputs: []string{"y"}}); err != nil {
		log.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float})

	var rec evaltest.Recorder
	s, err := evalharness.OpenModel(m, nil, evalharness.SessionOptions{Open: rec.Open})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	out, err := s.Run(map[string]*evalharness.Array{"x": evalharness.FromFloat32([]int64{1, 2}, []float32{1.5, -3})})
	if err != nil {
		log.Fatal(err)
	}
	y, _ := out[0].Float64()
	fmt.Println(y, "sessions:", len(rec.Requests()), "runs:", rec.Runs())
	// Output:
	// [3 -6] sessions: 1 runs: 1
}
