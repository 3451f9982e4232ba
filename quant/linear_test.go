package quant

import (
	"errors"
	"math"
	"math/rand"
	"testing"
)

func randWeights(rng *rand.Rand, n int, scale float64) []float32 {
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * scale)
	}
	return w
}

func TestScaleZeroPoint(t *testing.T) {
	tests := []struct {
		name       string
		lo, hi     float64
		qmin, qmax int
		sym        bool
		scale      float32
		zp         int
	}{
		{"symmetric int8", -1, 2, -127, 127, true, float32(4.0 / 254), 0},
		{"asymmetric int8", -1, 3, -128, 127, false, float32(4.0 / 255), -128 + 64},
		{"positive only widened to 0", 1, 2, -128, 127, false, float32(2.0 / 255), -128},
		{"negative only widened to 0", -2, -1, -128, 127, false, float32(2.0 / 255), 127},
		{"all zero", 0, 0, -128, 127, false, 1, 0},
		{"uint8 asymmetric", -0.5, 1.5, 0, 255, false, float32(2.0 / 255), 64},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, z := ScaleZeroPoint(tc.lo, tc.hi, tc.qmin, tc.qmax, tc.sym)
			if s != tc.scale || z != tc.zp {
				t.Fatalf("got (%g, %d), want (%g, %d)", s, z, tc.scale, tc.zp)
			}
			// 0 is exactly representable.
			if q := QuantizeValue(0, s, z, tc.qmin, tc.qmax); q != z {
				t.Fatalf("0 quantizes to %d, want the zero point %d", q, z)
			}
		})
	}
}

func TestQuantizeLinearRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	tests := []struct {
		name  string
		shape []int
		axis  int
		sym   bool
	}{
		{"per tensor symmetric", []int{8, 5}, -1, true},
		{"per tensor asymmetric", []int{8, 5}, -1, false},
		{"MatMul B axis 1", []int{16, 6}, 1, true},
		{"Conv W axis 0", []int{4, 3, 3, 3}, 0, true},
		{"Gemm transB axis 0 asym", []int{6, 16}, 0, false},
		{"middle axis", []int{2, 3, 4}, 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := randWeights(rng, numel(tc.shape), 0.3)
			orig := append([]float32(nil), w...)
			l, err := QuantizeLinear(w, tc.shape, LinearOptions{Axis: tc.axis, Symmetric: tc.sym})
			if err != nil {
				t.Fatal(err)
			}
			for i := range w {
				if w[i] != orig[i] {
					t.Fatal("input modified")
				}
			}
			nch := 1
			if tc.axis >= 0 {
				nch = tc.shape[tc.axis]
			}
			if len(l.Scale) != nch || len(l.ZeroPoint) != nch {
				t.Fatalf("%d scales, want %d", len(l.Scale), nch)
			}
			d := l.Dequantize()
			outer, ch, inner := 1, 1, len(w)
			if tc.axis >= 0 {
				outer, ch, inner = channelLayout(tc.shape, tc.axis)
			}
			for o := 0; o < outer; o++ {
				for c := 0; c < ch; c++ {
					for i := 0; i < inner; i++ {
						idx := (o*ch+c)*inner + i
						s := float64(l.Scale[c])
						if tc.sym && l.ZeroPoint[c] != 0 {
							t.Fatalf("symmetric zero point %d", l.ZeroPoint[c])
						}
						if e := math.Abs(float64(d[idx] - w[idx])); e > s/2*(1+1e-5) {
							t.Fatalf("element %d: error %g > scale/2 = %g", idx, e, s/2)
						}
					}
				}
			}
			if e := RelError(w, d); e > 0.02 {
				t.Fatalf("relative error %g", e)
			}
		})
	}
}

func TestQuantizeLinearErrors(t *testing.T) {
	if _, err := QuantizeLinear([]float32{1, float32(math.NaN())}, []int{2}, LinearOptions{Axis: -1}); !errors.Is(err, ErrNonFinite) {
		t.Fatalf("NaN: got %v", err)
	}
	if _, err := QuantizeLinear([]float32{1, 2}, []int{2}, LinearOptions{Axis: 1}); !errors.Is(err, ErrOptions) {
		t.Fatalf("bad axis: got %v", err)
	}
	defer func() {
		if r := recover(); r == nil {
			t.Fatal("no panic on shape mismatch")
		} else if err, ok := r.(error); !ok || !errors.Is(err, ErrShape) {
			t.Fatalf("panic %v, want ErrShape", r)
		}
	}()
	QuantizeLinear([]float32{1, 2, 3}, []int{2}, LinearOptions{Axis: -1})
}

func TestRelError(t *testing.T) {
	if e := RelError([]float32{3, 4}, []float32{3, 4}); e != 0 {
		t.Fatalf("equal: %g", e)
	}
	if e := RelError([]float32{3, 4}, []float32{0, 0}); e != 1 {
		t.Fatalf("zero estimate: %g", e)
	}
	if e := RelError([]float32{0, 0}, []float32{0, 1}); !math.IsInf(e, 1) {
		t.Fatalf("zero reference: %g", e)
	}
}
