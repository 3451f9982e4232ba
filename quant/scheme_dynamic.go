package quant

import "github.com/onnxpost/onnxpost/transform"

// Int8Dynamic quantizes weights to int8 and MatMul/Gemm activations at
// run time (DynamicQuantizeLinear + MatMulInteger).
var Int8Dynamic = &transform.Transform{
	Name: "quantize/int8-dynamic",
	Doc: schemeDoc("int8 weights and activations quantized at run time: DynamicQuantizeLinear + MatMulInteger",
		"for MatMul and Gemm (ONNX Runtime's quantize_dynamic pattern), QDQ weights for Conv."),
	Params: []*transform.Param{paramWeights, paramFormat, paramActivations, paramPerChannel, symmetricParam(true), paramExcludeOps, paramExclude},
	Run:    runScheme,
}
