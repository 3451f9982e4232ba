package quant

import "github.com/onnxpost/onnxpost/transform"

// Int8Static quantizes weights to int8 and activations statically, from
// ranges measured on calibration data.
var Int8Static = &transform.Transform{
	Name: "quantize/int8-static",
	Doc: schemeDoc("int8 weights and static int8 activations: QuantizeLinear/DequantizeLinear pairs on the inputs",
		"of quantized ops, ranges from activation histograms (minmax, percentile or entropy)."),
	Params: []*transform.Param{paramWeights, paramFormat, paramActivations, paramPerChannel, symmetricParam(true),
		paramCalibrate, paramPercentile, paramCalibSamples, paramExcludeOps, paramExclude},
	Needs: transform.NeedCalibration,
	Run:   runScheme,
}
