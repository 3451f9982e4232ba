package quant

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"testing"
)

// correlatedInputs returns X [rows, k] with strongly correlated, unequally
// scaled columns (as real activations are) and its Gram matrix XᵀX.
func correlatedInputs(rng *rand.Rand, rows, k int) (x []float64, xtx []float64) {
	x = make([]float64, rows*k)
	base := make([]float64, 4)
	for r := 0; r < rows; r++ {
		for i := range base {
			base[i] = rng.NormFloat64()
		}
		for j := 0; j < k; j++ {
			x[r*k+j] = (base[j%4] + 0.3*rng.NormFloat64()) * (1 + float64(j%7))
		}
	}
	xtx = make([]float64, k*k)
	for r := 0; r < rows; r++ {
		row := x[r*k : (r+1)*k]
		for i := 0; i < k; i++ {
			for j := 0; j < k; j++ {
				xtx[i*k+j] += row[i] * row[j]
			}
		}
	}
	return x, xtx
}

// outputError returns ‖X(W − Ŵ)‖_F² for X [rows, k], W [k, n].
func outputError(x []float64, rows, k int, w, what []float32, n int) float64 {
	var e float64
	for r := 0; r < rows; r++ {
		for c := 0; c < n; c++ {
			var s float64
			for j := 0; j < k; j++ {
				s += x[r*k+j] * float64(w[j*n+c]-what[j*n+c])
			}
			e += s * s
		}
	}
	return e
}

func TestGPTQBeatsRTNOnOutputs(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	tests := []struct {
		name     string
		k, n, bs int
		sym      bool
		actOrder bool
		lazy     int
	}{
		{"asym block 32", 64, 16, 32, false, false, 128},
		{"sym block 16", 64, 16, 16, true, false, 128},
		{"act-order", 64, 16, 32, false, true, 128},
		{"lazy smaller than K", 96, 8, 16, false, false, 32},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rows := 256
			x, xtx := correlatedInputs(rng, rows, tc.k)
			w := randWeights(rng, tc.k*tc.n, 0.5)
			bo := BlockOptions{BlockSize: tc.bs, Symmetric: tc.sym, Rule: RuleGPTQ}
			g, info, err := GPTQ(context.Background(), w, tc.k, tc.n, xtx, GPTQOptions{Block: bo, ActOrder: tc.actOrder, LazyBlock: tc.lazy})
			if err != nil {
				t.Fatal(err)
			}
			if info.Damp != 0.01 {
				t.Fatalf("damping %g", info.Damp)
			}
			r, err := QuantizeRTN(w, tc.k, tc.n, bo)
			if err != nil {
				t.Fatal(err)
			}
			eg := outputError(x, rows, tc.k, w, g.Dequantize(), tc.n)
			er := outputError(x, rows, tc.k, w, r.Dequantize(), tc.n)
			if !(eg < 0.8*er) {
				t.Fatalf("GPTQ output error %g not below 0.8 × RTN's %g", eg, er)
			}
			for _, c := range g.Codes {
				if c > 15 {
					t.Fatalf("code %d", c)
				}
			}
		})
	}
}

// With H = I no error is propagated (H⁻¹ is diagonal), so GPTQ reduces to
// round-to-nearest with the same scale rule.
func TestGPTQIdentityHessianIsRTN(t *testing.T) {
	rng := rand.New(rand.NewSource(6))
	k, n := 64, 5
	w := randWeights(rng, k*n, 1)
	h := make([]float64, k*k)
	for i := 0; i < k; i++ {
		h[i*k+i] = 1
	}
	for _, sym := range []bool{false, true} {
		bo := BlockOptions{BlockSize: 32, Symmetric: sym, Rule: RuleGPTQ}
		g, _, err := GPTQ(context.Background(), w, k, n, h, GPTQOptions{Block: bo})
		if err != nil {
			t.Fatal(err)
		}
		r, _ := QuantizeRTN(w, k, n, bo)
		for i := range g.Codes {
			if g.Codes[i] != r.Codes[i] {
				t.Fatalf("sym=%v code %d: %d vs RTN %d", sym, i, g.Codes[i], r.Codes[i])
			}
		}
		for i := range g.Scales {
			if g.Scales[i] != r.Scales[i] || g.ZeroPoints[i] != r.ZeroPoints[i] {
				t.Fatalf("sym=%v block %d differs", sym, i)
			}
		}
	}
}

func TestGPTQDeadColumnsAndErrors(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	k, n := 32, 4
	_, xtx := correlatedInputs(rng, 64, k)
	for j := 0; j < k; j++ { // input 3 never active
		xtx[3*k+j], xtx[j*k+3] = 0, 0
	}
	w := randWeights(rng, k*n, 1)
	g, info, err := GPTQ(context.Background(), w, k, n, xtx, GPTQOptions{Block: BlockOptions{BlockSize: 16}})
	if err != nil {
		t.Fatal(err)
	}
	if info.DeadColumns != 1 {
		t.Fatalf("dead columns %d", info.DeadColumns)
	}
	d := g.Dequantize()
	for c := 0; c < n; c++ {
		if math.Abs(float64(d[3*n+c])) > 1e-6 {
			t.Fatalf("dead input weight %g not zero", d[3*n+c])
		}
	}
	bad := append([]float64(nil), xtx...)
	bad[0] = math.NaN()
	if _, _, err := GPTQ(context.Background(), w, k, n, bad, GPTQOptions{}); !errors.Is(err, ErrNonFinite) {
		t.Fatalf("NaN Gram: %v", err)
	}
	if _, _, err := GPTQ(context.Background(), w, k, n, xtx, GPTQOptions{Block: BlockOptions{BlockSize: 20}}); !errors.Is(err, ErrBlockSize) {
		t.Fatalf("block 20: %v", err)
	}
	neg := make([]float64, k*k)
	for i := 0; i < k; i++ {
		neg[i*k+i] = -1
	}
	if _, _, err := GPTQ(context.Background(), w, k, n, neg, GPTQOptions{}); !errors.Is(err, ErrCalibration) {
		t.Fatalf("negative definite H: %v", err)
	}
}

func TestHinvUpper(t *testing.T) {
	rng := rand.New(rand.NewSource(8))
	k := 12
	_, h := correlatedInputs(rng, 40, k)
	U := append([]float64(nil), h...)
	if !hinvUpper(U, k, 0.01) {
		t.Fatal("not positive definite")
	}
	// (H + damp)·UᵀU = I
	var mean float64
	for i := 0; i < k; i++ {
		mean += h[i*k+i]
	}
	mean /= float64(k)
	for i := 0; i < k; i++ {
		for j := 0; j < k; j++ {
			var s float64
			for m := 0; m < k; m++ {
				hm := h[i*k+m]
				if m == i {
					hm += 0.01 * mean
				}
				var inv float64
				for r := 0; r < k; r++ {
					inv += U[r*k+m] * U[r*k+j]
				}
				s += hm * inv
			}
			want := 0.0
			if i == j {
				want = 1
			}
			if math.Abs(s-want) > 1e-8 {
				t.Fatalf("(H·H⁻¹)[%d,%d] = %g", i, j, s)
			}
		}
		for j := 0; j < i; j++ {
			if U[i*k+j] != 0 {
				t.Fatal("U not upper triangular")
			}
		}
	}
}
