package quant

import (
	"context"
	"fmt"

	"github.com/onnxpost/onnxpost/onnxio"
)

// QuantizeMixed writes a mixed-precision allocation as packed block-wise
// weights: each MatMul or Gemm weight named in bits (initializer name → 2,
// 4 or 8) is quantized with its own width, every other MatMul/Gemm weight
// with 4 bits (or, with o.BitsOnly, left float32). It is Quantize with o.Bits = bits and o.Weights "int4"
// (Weights may be left empty; any other value is refused); o.Format
// defaults to "matmulnbits" (one com.microsoft MatMulNBits per weight with
// its bits attribute, which ONNX Runtime's CPU kernel runs for 2, 4 and 8
// bits), "qdq" stores 4- and 8-bit weights as opset-21 blocked
// DequantizeLinear and refuses 2 bits. o.Method "gptq" takes the Gram
// matrices from o.Calibration, as for Quantize. Names of bits that are not
// quantized weights of m (unknown, excluded, shared, Conv) are refused with
// ErrOptions; m is not changed. ctx is checked as by Quantize.
func QuantizeMixed(ctx context.Context, m *onnxio.Model, bits map[string]int, o Options) (*onnxio.Model, *Report, error) {
	if o.Weights == "" {
		o.Weights = "int4"
	}
	if o.Weights != "int4" {
		return nil, nil, fmt.Errorf("%w: mixed bit widths are block-wise weights (int4 mode), not %s", ErrOptions, o.Weights)
	}
	if len(bits) == 0 {
		return nil, nil, fmt.Errorf("%w: empty bit allocation", ErrOptions)
	}
	o.Bits = bits
	return Quantize(ctx, m, o)
}
