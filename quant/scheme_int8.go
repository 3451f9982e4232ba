package quant

import "github.com/onnxpost/onnxpost/transform"

// Int8 quantizes weights to int8 behind DequantizeLinear (QDQ), per
// output channel (per tensor with per-channel=false), symmetric by
// default; activations stay float.
var Int8 = &transform.Transform{
	Name: "quantize/int8",
	Doc: schemeDoc("int8 weights behind DequantizeLinear feeding the original MatMul, Gemm and Conv",
		"(per channel: MatMul B axis 1, Gemm B axis 0 with transB, Conv W axis 0; or per tensor), with ONNX Runtime's scale rules;",
		"activations stay float."),
	Params: []*transform.Param{paramWeights, paramFormat, paramPerChannel, symmetricParam(true), paramExcludeOps, paramExclude},
	Run:    runScheme,
}
