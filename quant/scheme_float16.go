package quant

import "github.com/onnxpost/onnxpost/transform"

// Float16 converts initializers and compute to IEEE half precision, model
// inputs and outputs kept float32 through Casts.
var Float16 = &transform.Transform{
	Name: "quantize/fp16",
	Doc: schemeDoc("initializers and compute in IEEE half precision, model inputs and outputs kept float32 through Casts,",
		"an op block list kept in fp32, weights beyond ±65504 kept float32 with their consumers."),
	Params: []*transform.Param{paramWeights, paramExcludeOps, paramExclude},
	Run:    runScheme,
}

// BFloat16 is Float16 with bfloat16.
var BFloat16 = &transform.Transform{
	Name: "quantize/bf16",
	Doc: schemeDoc("initializers and compute in bfloat16, model inputs and outputs kept float32 through Casts,",
		"an op block list kept in fp32."),
	Params: []*transform.Param{paramWeights, paramExcludeOps, paramExclude},
	Run:    runScheme,
}
