package quant

import (
	"errors"
	"testing"
)

// TestValidateWords: Options.Validate names parameters and option fields
// in the library's words (the command line phrases them as flags) and
// keeps its sentinels.
func TestValidateWords(t *testing.T) {
	for _, c := range []struct {
		o    Options
		want error
		msg  string
	}{
		{Options{Weights: "int8", Format: "matmulnbits"}, ErrOptions, `quant: invalid options: int8 weights support the format parameter qdq only, got "matmulnbits"`},
		{Options{Weights: "int8", Method: "gptq"}, ErrOptions, "quant: invalid options: the method parameter gptq applies to int4"},
		{Options{Weights: "int4", Method: "gptq"}, ErrCalibration, "quant: calibration data: the method parameter gptq needs calibration data (Options.Calibration)"},
		{Options{Weights: "int8", Activations: "int8"}, ErrCalibration, "quant: calibration data: the activations parameter int8 needs calibration data (Options.Stats)"},
		{Options{Weights: "fp16", Activations: "dynamic"}, ErrOptions, "quant: invalid options: the weights parameter fp16 takes neither the activations parameter nor the method parameter"},
		{Options{Weights: "int3"}, ErrOptions, `quant: invalid options: the weights parameter is "int3" (want int8, int4, fp16 or bf16)`},
		{Options{Weights: "int4", Format: "qdq", Bits: map[string]int{"W": 2}}, ErrBits, ""},
	} {
		err := c.o.Validate()
		if !errors.Is(err, c.want) || c.msg != "" && err.Error() != c.msg {
			t.Errorf("%+v: %v, want %v: %q", c.o, err, c.want, c.msg)
		}
	}
}
