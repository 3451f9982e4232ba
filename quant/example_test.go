package quant_test

import (
	"fmt"

	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/quant"
)

// Block-wise 4-bit quantization of a MatMul weight B [K, N] and the inputs
// of ONNX Runtime's MatMulNBits op.
func ExampleQuantizeRTN() {
	k, n := 32, 2
	w := make([]float32, k*n)
	for i := range w {
		w[i] = float32(i%7-3) / 10
	}
	b, err := quant.QuantizeRTN(w, k, n, quant.BlockOptions{Bits: 4, BlockSize: 16})
	if err != nil {
		panic(err)
	}
	B, scales, zeroPoints := b.MatMulNBits()
	fmt.Println("blocks:", b.Blocks(), "packed B:", len(B), "scales:", len(scales), "zero points:", len(zeroPoints))
	fmt.Printf("relative error: %.3f\n", quant.RelError(w, b.Dequantize()))
	// Output:
	// blocks: 2 packed B: 32 scales: 4 zero points: 2
	// relative error: 0.075
}

// Quantizing a model: int8 per-channel QDQ weights.
func ExampleQuantize() {
	m := onnxio.New("tiny", 17)
	m.AddInput(onnxio.ValueInfo{Name: "X", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "batch"}, {Value: 4}}})
	w, _ := onnxio.FromFloat32("W", onnxio.Float, []int64{4, 3}, []float32{
		0.1, -0.2, 0.3, 0.4, -0.5, 0.6, -0.7, 0.8, -0.9, 1.0, 1.1, -1.2})
	_ = m.SetInitializer(w)
	_ = m.InsertNodes(onnxio.Node{Name: "mm", OpType: "MatMul", Inputs: []string{"X", "W"}, Outputs: []string{"Y"}})
	m.AddOutput(onnxio.ValueInfo{Name: "Y", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "batch"}, {Value: 3}}})

	q, rep, err := quant.Quantize(m, quant.Options{Weights: "int8", PerChannel: true, Symmetric: true})
	if err != nil {
		panic(err)
	}
	fmt.Println(rep.Mode)
	fmt.Println("ops:", q.OpCounts()["DequantizeLinear"], "DequantizeLinear,", q.OpCounts()["MatMul"], "MatMul")
	fmt.Printf("%s: %d scales, weight bytes %d → %d\n", rep.Layers[0].Weight, rep.Layers[0].Scales, rep.WeightBytesBefore, rep.WeightBytesAfter)
	// Output:
	// int8 per-channel symmetric qdq
	// ops: 1 DequantizeLinear, 1 MatMul
	// W: 3 scales, weight bytes 48 → 27
}
