package quant

import (
	"bytes"
	"context"
	"testing"
)

// TestQuantizeLeavesInput: Quantize works on a model derived from its input
// (sharing its tensors) and leaves the input byte-for-byte as it was, for
// models with subgraphs, Constant weights and unnamed nodes.
func TestQuantizeLeavesInput(t *testing.T) {
	for _, file := range []string{"if.onnx", "loop.onnx", "fp16_valueinfo.onnx", "if_untyped.onnx"} {
		for _, w := range []string{"int8", "fp16"} {
			if file == "fp16_valueinfo.onnx" && w == "int8" {
				continue // its weights are int8 already
			}
			m := loadWeightsFixture(t, file)
			before, err := m.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			q, _, err := Quantize(context.Background(), m, Options{Weights: w})
			if err != nil {
				t.Fatalf("%s %s: %v", file, w, err)
			}
			after, _ := m.Bytes()
			if !bytes.Equal(before, after) {
				t.Errorf("%s %s: the input changed", file, w)
			}
			if q.Equal(m) {
				t.Errorf("%s %s: nothing quantized; the test checks nothing", file, w)
			}
		}
	}
}
