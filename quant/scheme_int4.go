package quant

import "github.com/onnxpost/onnxpost/transform"

// Int4 quantizes MatMul and Gemm weights to 4-bit blocks along K by round
// to nearest: com.microsoft MatMulNBits, or opset-21 blocked QDQ.
var Int4 = &transform.Transform{
	Name: "quantize/int4",
	Doc: schemeDoc("4-bit blocks along K for MatMul and Gemm by round to nearest: com.microsoft MatMulNBits",
		"(default) or opset-21 blocked DequantizeLinear (format qdq); asymmetric by default."),
	Params: []*transform.Param{paramWeights, paramFormat, paramBlock, paramMethod, symmetricParam(false),
		paramAccuracyLevel, paramExcludeOps, paramExclude},
	Run: runScheme,
}

// Int4GPTQ is Int4 with GPTQ's error feedback, from the Gram matrix XᵀX
// of each layer's input on calibration data.
var Int4GPTQ = &transform.Transform{
	Name: "quantize/int4-gptq",
	Doc: schemeDoc("4-bit blocks along K for MatMul and Gemm by GPTQ: columns quantized in turn, the error fed back",
		"through the inverse of each layer input's XᵀX (damped by damp, optionally in act-order)."),
	Params: []*transform.Param{paramWeights, paramFormat, paramBlock, paramMethod, symmetricParam(false),
		paramActOrder, paramDamp, paramAccuracyLevel, paramCalibSamples, paramExcludeOps, paramExclude},
	Needs: transform.NeedCalibration,
	Run:   runScheme,
}
