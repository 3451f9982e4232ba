// Package quant quantizes the weights (and optionally the activations) of
// ONNX models: int8 QDQ per channel or per tensor, dynamic int8
// (MatMulInteger), static int8 activations from calibration ranges, 4-bit
// block-wise weights as com.microsoft MatMulNBits or as opset-21 blocked
// DequantizeLinear, with round-to-nearest (RTN) or GPTQ, and fp16/bf16
// conversion with an fp32 op block list.
//
// # Overview
//
// The numerical core is a set of pure functions over []float32 weights and
// shape integers, with no ONNX types and no I/O:
//
//   - QuantizeLinear / Linear.Dequantize: 8-bit linear quantization per
//     tensor or per channel along any axis, symmetric or asymmetric, with the
//     scale and zero point rules of ONNX Runtime's quantizer (ScaleZeroPoint).
//   - QuantizeRTN, GPTQ / Blockwise: block-wise n-bit quantization of a MatMul
//     weight B [K, N] with blocks along K, and the packings ONNX Runtime
//     expects (Blockwise.MatMulNBits, Blockwise.BlockedQDQ).
//   - MinMaxRange, PercentileRange, EntropyRange: activation ranges from
//     calibration histograms.
//
// The model rewrite Quantize applies them to a copy of an onnxio.Model:
//
//   - int8 QDQ: DequantizeLinear on int8 initializers feeding MatMul, Gemm
//     and Conv (weight-only); with Activations "dynamic", MatMul and Gemm
//     become DynamicQuantizeLinear + MatMulInteger + rescale (ONNX Runtime's
//     quantize_dynamic pattern); with "int8", QuantizeLinear/DequantizeLinear
//     pairs on the inputs and outputs of the quantized ops, so that ONNX
//     Runtime fuses them into its integer kernels.
//   - int4: com.microsoft MatMulNBits (bias added after by an Add) or
//     opset-21 blocked DequantizeLinear, RTN or GPTQ. Options.Bits (or
//     QuantizeMixed) gives each weight its own width, 2, 4 or 8 bits, as
//     real packed weights: one MatMulNBits per weight with its bits
//     attribute (ONNX Runtime 1.30's CPU kernel runs all three), or blocked
//     DequantizeLinear on int4/uint4 or int8/uint8 data (2 bits refused:
//     int2 needs opset 25).
//   - fp16: weights and compute in float16 with float32 model inputs and
//     outputs (Casts), DefaultFloat16BlockList ops in float32, values beyond
//     ±65504 clamped and counted; bf16 stores the weights in bfloat16 with
//     Casts to float32 (ONNX Runtime's CPU EP has no bfloat16 GEMM/Conv).
//
// Data-dependent modes read calibration through calib.Stats, onnxpost's
// one calibration interface (evalharness.Capture implements it, and
// calib.FromActivations from captured values): XᵀX Gram matrices for GPTQ
// (Options.Calibration) and activation histograms for static quantization
// (Options.Stats). ActivationTensors and GramWeights name what to
// capture. Models that already hold quantization ops are refused
// (ErrAlreadyQuantized).
//
// # Invariants
//
// Input slices are never modified. Every quantizer is deterministic. All
// reductions (norms, Gram updates, Cholesky factors) use float64.
//
// # Trust
//
// Weights come from untrusted model files: non-finite weights are reported as
// errors, never silently quantized. Shape mismatches between a slice and the
// shape integers passed with it are caller bugs and panic with ErrShape.
package quant
