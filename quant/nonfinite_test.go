package quant

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/calib"
)

// infHist is a histogram whose range reaches an infinity, as a capture of
// activations holding Inf would give without its own check.
type infHist struct {
	calib.Missing
	lo, hi float64
}

func (h infHist) ActivationHistogram(string) ([]int64, []float64, error) {
	return []int64{1, 2, 3, 4}, []float64{h.lo, -1, 0, 1, h.hi}, nil
}

// Static quantization used to turn an infinite range into a scale of 1
// (ScaleZeroPoint's fallback): a written model with useless activation
// quantizers, exit 0. It is now an ErrNonFinite naming the activation.
func TestQuantizeStaticNonFiniteRange(t *testing.T) {
	for _, h := range []infHist{{lo: -2, hi: math.Inf(1)}, {lo: math.Inf(-1), hi: 2}, {lo: math.NaN(), hi: 2}} {
		m := testModel(t, 6, true)
		_, _, err := Quantize(context.Background(), m, Options{Weights: "int8", Activations: "int8", Calibrate: CalibMinMax, Stats: h})
		if !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), "activation X") {
			t.Errorf("range [%v, %v]: err = %v, want ErrNonFinite naming activation X", h.lo, h.hi, err)
		}
	}
}

func TestQuantizeCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, o := range []Options{
		{Weights: "int8"},
		{Weights: "int8", Activations: "dynamic"},
		{Weights: "int4"},
		{Weights: "fp16"},
	} {
		if _, _, err := Quantize(ctx, testModel(t, 6, true), o); !errors.Is(err, context.Canceled) {
			t.Errorf("%s %s: err = %v, want context.Canceled", o.Weights, o.Activations, err)
		}
	}
	w := make([]float32, 64*8)
	xtx := make([]float64, 64*64)
	for i := 0; i < 64; i++ {
		xtx[i*64+i] = 1
	}
	if _, _, err := GPTQ(ctx, w, 64, 8, xtx, GPTQOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("GPTQ: err = %v, want context.Canceled", err)
	}
}
