package quant

import (
	"context"
	"testing"
)

// TestZeroOptionsAreTheCLIDefaults: the zero value of every field but
// Weights gives what `onnxpost quantize --weights W` gives: int8 per
// channel and symmetric (it used to be per tensor and asymmetric), int4
// asymmetric blocks of 32 by round to nearest.
func TestZeroOptionsAreTheCLIDefaults(t *testing.T) {
	for _, tc := range []struct {
		opt  Options
		mode string
	}{
		{Options{Weights: "int8"}, "int8 per-channel symmetric qdq"},
		{Options{Weights: "int8", PerTensor: true}, "int8 per-tensor symmetric qdq"},
		{Options{Weights: "int8", Symmetry: Asymmetric}, "int8 per-channel asymmetric qdq"},
		{Options{Weights: "int4"}, "int4 block 32 asymmetric matmulnbits rtn"},
		{Options{Weights: "int4", Symmetry: Symmetric}, "int4 block 32 symmetric matmulnbits rtn"},
	} {
		_, rep, err := Quantize(context.Background(), testModel(t, 32, false), tc.opt)
		if err != nil {
			t.Fatalf("%+v: %v", tc.opt, err)
		}
		if rep.Mode != tc.mode {
			t.Errorf("%+v: mode %q, want %q", tc.opt, rep.Mode, tc.mode)
		}
	}
}
