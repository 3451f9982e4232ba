package npz_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/onnxpost/onnxpost/evalharness/npz"
)

// Example writes a .npz archive in memory and reads it back.
func Example() {
	x := &npz.Array{Type: npz.Float32, Shape: []int64{2, 2}, Data: make([]byte, 16)}
	for i, v := range []float32{1, 2, 3, 4} {
		binary.LittleEndian.PutUint32(x.Data[4*i:], math.Float32bits(v))
	}
	var buf bytes.Buffer
	if err := npz.Write(&buf, map[string]*npz.Array{"x": x}); err != nil {
		panic(err)
	}
	arrays, err := npz.Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		panic(err)
	}
	a := arrays["x"]
	fmt.Println(a.Type, a.Shape, math.Float32frombits(binary.LittleEndian.Uint32(a.Data[12:])))
	// Output: float32 [2 2] 4
}
