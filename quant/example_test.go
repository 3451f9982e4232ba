package quant_test

import (
	"context"
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

	q, rep, err := quant.Quantize(context.Background(), m, quant.Options{Weights: "int8"})
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

// A mixed-precision allocation written as packed weights: one MatMulNBits
// per weight, each with its own bits attribute (weights absent from the
// map get 4 bits).
func ExampleQuantizeMixed() {
	m := onnxio.New("two", 17)
	m.AddInput(onnxio.ValueInfo{Name: "X", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "batch"}, {Value: 32}}})
	for _, w := range []struct {
		name string
		k, n int64
	}{{"W1", 32, 16}, {"W2", 16, 16}, {"W3", 16, 4}} {
		v := make([]float32, w.k*w.n)
		for i := range v {
			v[i] = float32(i%13-6) / 10
		}
		t, _ := onnxio.FromFloat32(w.name, onnxio.Float, []int64{w.k, w.n}, v)
		_ = m.SetInitializer(t)
	}
	_ = m.InsertNodes(
		onnxio.Node{Name: "mm1", OpType: "MatMul", Inputs: []string{"X", "W1"}, Outputs: []string{"h"}},
		onnxio.Node{Name: "mm2", OpType: "MatMul", Inputs: []string{"h", "W2"}, Outputs: []string{"g"}},
		onnxio.Node{Name: "mm3", OpType: "MatMul", Inputs: []string{"g", "W3"}, Outputs: []string{"Y"}})
	m.AddOutput(onnxio.ValueInfo{Name: "Y", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "batch"}, {Value: 4}}})

	q, rep, err := quant.QuantizeMixed(context.Background(), m, map[string]int{"W1": 2, "W3": 8}, quant.Options{BlockSize: 16})
	if err != nil {
		panic(err)
	}
	fmt.Println(rep.Mode)
	for _, n := range q.Nodes() {
		fmt.Println(n.OpType, n.Inputs[1], "bits", n.Int("bits", 0))
	}
	fmt.Printf("weight bytes %d → %d\n", rep.WeightBytesBefore, rep.WeightBytesAfter)
	// Output:
	// mixed-bits block 16 asymmetric matmulnbits rtn (2-bit×1 4-bit×1 8-bit×1)
	// MatMulNBits W1_Q2 bits 2
	// MatMulNBits W2_Q4 bits 4
	// MatMulNBits W3_Q8 bits 8
	// weight bytes 3328 → 564
}
