package quant

import (
	"errors"
	"math"
	"math/rand"
	"strings"
	"testing"
)

func TestValidBlockSize(t *testing.T) {
	for b, want := range map[int]bool{0: false, 8: false, 15: false, 16: true, 24: false, 32: true, 128: true, 96: false, -16: false} {
		if got := ValidBlockSize(b); got != want {
			t.Errorf("ValidBlockSize(%d) = %v", b, got)
		}
	}
	if _, err := QuantizeRTN(make([]float32, 64), 32, 2, BlockOptions{BlockSize: 24}); !errors.Is(err, ErrBlockSize) {
		t.Fatalf("block 24: %v", err)
	}
	if _, err := QuantizeRTN(make([]float32, 64), 32, 2, BlockOptions{Bits: 3}); !errors.Is(err, ErrBits) {
		t.Fatalf("3 bits: %v", err)
	}
}

func TestBlockParamsRules(t *testing.T) {
	tests := []struct {
		name  string
		xs    []float64
		sym   bool
		rule  ScaleRule
		scale float64
		zp    int
	}{
		{"ort symmetric negative max", []float64{-3, 1, 2}, true, RuleORT, 3.0 / 8, 8},
		{"ort symmetric positive max", []float64{-1, 4}, true, RuleORT, -0.5, 8},
		{"gptq symmetric", []float64{-3, 1, 2}, true, RuleGPTQ, 6.0 / 15, 8},
		{"asymmetric", []float64{-1, 2}, false, RuleORT, 0.2, 5},
		{"asymmetric positive", []float64{1, 3}, false, RuleGPTQ, 0.2, 0},
		{"gptq all zero", []float64{0, 0}, false, RuleGPTQ, 2.0 / 15, 8},
		{"ort all zero", []float64{0, 0}, false, RuleORT, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, z := blockParams(tc.xs, 4, tc.sym, tc.rule)
			if math.Abs(s-tc.scale) > 1e-12 || z != tc.zp {
				t.Fatalf("got (%g, %d), want (%g, %d)", s, z, tc.scale, tc.zp)
			}
		})
	}
}

func TestQuantizeRTN(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	tests := []struct {
		name       string
		k, n       int
		bits, bs   int
		sym        bool
		maxRelErr  float64
		wantBlocks int
	}{
		{"4-bit asym", 64, 8, 4, 32, false, 0.15, 2},
		{"4-bit sym", 64, 8, 4, 16, true, 0.15, 4},
		{"4-bit K not multiple", 50, 3, 4, 32, false, 0.15, 2},
		{"8-bit asym", 64, 4, 8, 64, false, 0.01, 1},
		{"2-bit sym", 32, 4, 2, 16, true, 0.9, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := randWeights(rng, tc.k*tc.n, 1)
			b, err := QuantizeRTN(w, tc.k, tc.n, BlockOptions{Bits: tc.bits, BlockSize: tc.bs, Symmetric: tc.sym})
			if err != nil {
				t.Fatal(err)
			}
			if b.Blocks() != tc.wantBlocks {
				t.Fatalf("%d blocks, want %d", b.Blocks(), tc.wantBlocks)
			}
			maxq := uint8(1<<tc.bits - 1)
			for _, c := range b.Codes {
				if c > maxq {
					t.Fatalf("code %d > %d", c, maxq)
				}
			}
			d := b.Dequantize()
			for kk := 0; kk < tc.k; kk++ {
				for c := 0; c < tc.n; c++ {
					// Half a step; a full step for ORT's symmetric rule,
					// which clips the side opposite the largest magnitude
					// to 2^(bits-1)-1 steps.
					s := math.Abs(float64(b.Scales[c*b.Blocks()+kk/tc.bs]))
					bound := s / 2
					if tc.sym {
						bound = s
					}
					if e := math.Abs(float64(d[kk*tc.n+c] - w[kk*tc.n+c])); e > bound*(1+1e-5)+1e-7 {
						t.Fatalf("[%d,%d]: error %g > %g", kk, c, e, bound)
					}
				}
			}
			if tc.sym {
				for _, z := range b.ZeroPoints {
					if int(z) != 1<<(tc.bits-1) {
						t.Fatalf("symmetric zero point %d", z)
					}
				}
			}
			if e := RelError(w, d); e > tc.maxRelErr {
				t.Fatalf("relative error %g > %g", e, tc.maxRelErr)
			}
		})
	}
}

// unpack reads code i of the given bit width from packed bytes.
func unpack(p []uint8, i, bits int) uint8 {
	bit := i * bits
	return (p[bit/8] >> (bit % 8)) & uint8(1<<bits-1)
}

func TestMatMulNBitsLayout(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	for _, tc := range []struct {
		k, n, bits, bs int
		sym            bool
	}{{40, 3, 4, 16, false}, {64, 2, 4, 32, true}, {48, 2, 8, 16, false}, {70, 2, 2, 32, false}} {
		w := randWeights(rng, tc.k*tc.n, 1)
		b, err := QuantizeRTN(w, tc.k, tc.n, BlockOptions{Bits: tc.bits, BlockSize: tc.bs, Symmetric: tc.sym})
		if err != nil {
			t.Fatal(err)
		}
		B, scales, zps := b.MatMulNBits()
		nb := b.Blocks()
		blob := tc.bs * tc.bits / 8
		if len(B) != tc.n*nb*blob || len(scales) != tc.n*nb {
			t.Fatalf("sizes %d %d", len(B), len(scales))
		}
		if tc.sym != (zps == nil) {
			t.Fatalf("zero points present = %v for symmetric = %v", zps != nil, tc.sym)
		}
		zpRow := (nb*tc.bits + 7) / 8
		for c := 0; c < tc.n; c++ {
			for kk := 0; kk < nb*tc.bs; kk++ {
				j := kk / tc.bs
				got := unpack(B[(c*nb+j)*blob:(c*nb+j+1)*blob], kk%tc.bs, tc.bits)
				want := b.ZeroPoints[c*nb+j] // padding
				if kk < tc.k {
					want = b.Codes[c*tc.k+kk]
				}
				if got != want {
					t.Fatalf("B[%d, %d]: %d want %d", c, kk, got, want)
				}
			}
			if zps != nil {
				for j := 0; j < nb; j++ {
					if got := unpack(zps[c*zpRow:(c+1)*zpRow], j, tc.bits); got != b.ZeroPoints[c*nb+j] {
						t.Fatalf("zp[%d, %d] = %d want %d", c, j, got, b.ZeroPoints[c*nb+j])
					}
				}
			}
		}
	}
}

func TestBlockedQDQLayout(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	for _, tc := range []struct {
		bits int
		sym  bool
	}{{4, false}, {4, true}, {8, false}, {8, true}} {
		k, n, bs := 40, 3, 16
		w := randWeights(rng, k*n, 1)
		b, err := QuantizeRTN(w, k, n, BlockOptions{Bits: tc.bits, BlockSize: bs, Symmetric: tc.sym})
		if err != nil {
			t.Fatal(err)
		}
		data, scales, zps, err := b.BlockedQDQ()
		if err != nil {
			t.Fatal(err)
		}
		if want := (k*n*tc.bits + 7) / 8; len(data) != want {
			t.Fatalf("%+v: %d data bytes, want %d", tc, len(data), want)
		}
		d := b.Dequantize()
		nb := b.Blocks()
		for kk := 0; kk < k; kk++ {
			for c := 0; c < n; c++ {
				code := int(unpack(data, kk*n+c, tc.bits))
				zp := 0
				if tc.sym {
					// two's complement sign extension of a bits-wide value
					shift := 8 - tc.bits
					code = int(int8(uint8(code)<<shift) >> shift)
				} else {
					zp = int(unpack(zps, (kk/bs)*n+c, tc.bits))
				}
				v := float32(code-zp) * scales[(kk/bs)*n+c]
				if v != d[kk*n+c] {
					t.Fatalf("%+v [%d,%d]: %g want %g", tc, kk, c, v, d[kk*n+c])
				}
			}
		}
		if len(scales) != nb*n {
			t.Fatalf("%d scales", len(scales))
		}
	}
	b2, _ := QuantizeRTN(make([]float32, 32), 16, 2, BlockOptions{Bits: 2, BlockSize: 16})
	if _, _, _, err := b2.BlockedQDQ(); !errors.Is(err, ErrBits) || !strings.Contains(err.Error(), "opset 25") {
		t.Fatalf("2-bit blocked QDQ: %v", err)
	}
}

// TestBlockwiseRelError checks that the streaming relative error equals
// RelError of the materialized dequantized weight, bit for bit, and that
// a wrong length panics.
func TestBlockwiseRelError(t *testing.T) {
	k, n := 70, 9
	w := make([]float32, k*n)
	for i := range w {
		w[i] = float32(math.Sin(float64(i)*0.37)) * float32(1+i%5)
	}
	for _, bo := range []BlockOptions{{Bits: 4, BlockSize: 32}, {Bits: 2, BlockSize: 16, Symmetric: true}} {
		b, err := QuantizeRTN(w, k, n, bo)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := b.RelError(w), RelError(w, b.Dequantize()); got != want {
			t.Fatalf("%+v: streaming %v, materialized %v", bo, got, want)
		}
	}
	b, _ := QuantizeRTN(w, k, n, BlockOptions{Bits: 4, BlockSize: 32})
	defer func() {
		if recover() == nil {
			t.Fatal("a wrong length did not panic")
		}
	}()
	b.RelError(w[1:])
}
