package quant

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"testing"
)

// gaussHist returns a histogram of n samples of N(0,1) with some outliers.
func gaussHist(rng *rand.Rand, n, bins int, outliers int) ([]int64, []float64, []float32) {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	for i := 0; i < outliers; i++ {
		x[i] = float32(20 + rng.Float64())
	}
	c, e, err := Histogram(x, bins)
	if err != nil {
		panic(err)
	}
	return c, e, x
}

func TestHistogram(t *testing.T) {
	c, e, err := Histogram([]float32{0, 1, 2, 3, 4}, 4)
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{1, 1, 1, 2}
	for i := range want {
		if c[i] != want[i] {
			t.Fatalf("counts %v want %v", c, want)
		}
	}
	if e[0] != 0 || e[4] != 4 {
		t.Fatalf("edges %v", e)
	}
	if _, _, err := Histogram([]float32{1, float32(math.Inf(1))}, 4); !errors.Is(err, ErrNonFinite) {
		t.Fatalf("Inf: %v", err)
	}
	if _, _, err := Histogram(nil, 4); !errors.Is(err, ErrCalibration) {
		t.Fatalf("empty: %v", err)
	}
}

func TestActivationRanges(t *testing.T) {
	rng := rand.New(rand.NewSource(13))
	c, e, _ := gaussHist(rng, 200000, 2048, 20)
	lo, hi, err := MinMaxRange(c, e)
	if err != nil || lo != e[0] || hi < 20 {
		t.Fatalf("minmax [%g, %g] %v", lo, hi, err)
	}
	// Percentile 99.9: close to the normal quantiles ±3.09, outliers cut.
	plo, phi, err := PercentileRange(c, e, 99.9)
	if err != nil || math.Abs(plo+3.09) > 0.1 || math.Abs(phi-3.09) > 0.1 {
		t.Fatalf("percentile [%g, %g] %v", plo, phi, err)
	}
	// Entropy clips the outliers far inside the range.
	elo, ehi, err := EntropyRange(c, e, 128)
	if err != nil || ehi > 10 || ehi < 2 || elo < -10 || elo > -2 {
		t.Fatalf("entropy [%g, %g] %v", elo, ehi, err)
	}
	for _, tc := range []struct {
		name   string
		counts []int64
		edges  []float64
	}{
		{"no bins", nil, []float64{0}},
		{"edge count", []int64{1, 2}, []float64{0, 1}},
		{"decreasing", []int64{1, 2}, []float64{0, 2, 1}},
		{"negative count", []int64{1, -2}, []float64{0, 1, 2}},
		{"empty", []int64{0, 0}, []float64{0, 1, 2}},
		{"NaN edge", []int64{1, 1}, []float64{0, math.NaN(), 2}},
	} {
		if _, _, err := ActivationRange(tc.counts, tc.edges, CalibEntropy, 0); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	if _, _, err := PercentileRange(c, e, 40); !errors.Is(err, ErrOptions) {
		t.Fatalf("percentile 40: %v", err)
	}
	for s, want := range map[string]CalibMethod{"minmax": CalibMinMax, "percentile": CalibPercentile, "entropy": CalibEntropy} {
		if m, err := ParseCalibMethod(s); err != nil || m != want || m.String() != s {
			t.Fatalf("%s: %v %v", s, m, err)
		}
	}
	if _, err := ParseCalibMethod("kl"); !errors.Is(err, ErrOptions) {
		t.Fatal("kl accepted")
	}
}

func TestGram(t *testing.T) {
	g, n := Gram([]float32{1, 2, 3, 4, 5, 6}, 2) // rows (1,2) (3,4) (5,6)
	want := []float64{35, 44, 44, 56}
	if n != 3 {
		t.Fatalf("rows %d", n)
	}
	for i := range want {
		if g[i] != want[i] {
			t.Fatalf("Gram %v want %v", g, want)
		}
	}
}

func BenchmarkEntropyRange2048(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	c, e, _ := gaussHist(rng, 100000, 2048, 10)
	for i := 0; i < b.N; i++ {
		EntropyRange(c, e, 128)
	}
}

func BenchmarkGPTQ256x256(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	_, xtx := correlatedInputs(rng, 512, 256)
	w := randWeights(rng, 256*256, 1)
	for i := 0; i < b.N; i++ {
		GPTQ(context.Background(), w, 256, 256, xtx, GPTQOptions{Block: BlockOptions{BlockSize: 32}})
	}
}

func BenchmarkRTN768x3072(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	w := randWeights(rng, 768*3072, 1)
	for i := 0; i < b.N; i++ {
		QuantizeRTN(w, 768, 3072, BlockOptions{BlockSize: 32})
	}
}

func TestActivationsFromCapturedValues(t *testing.T) {
	m := testModel(t, 11, false)
	rng := rand.New(rand.NewSource(14))
	x := randWeights(rng, 5*64, 1)  // X: 5 rows of K = 64 (W1's input)
	a2 := randWeights(rng, 5*16, 1) // a2: 5 rows of K = 16 (W3's input)
	acts, err := NewActivations(m, map[string][]float32{"X": x, "a2": a2}, 64)
	if err != nil {
		t.Fatal(err)
	}
	g, d, n, err := acts.InputGram("W1")
	if err != nil || d != 64 || n != 5 {
		t.Fatalf("W1: d %d n %d err %v", d, n, err)
	}
	want, _ := Gram(x, 64)
	for i := range want {
		if g[i] != want[i] {
			t.Fatalf("Gram differs at %d", i)
		}
	}
	if _, d, _, err := acts.InputGram("W3"); err != nil || d != 16 {
		t.Fatalf("W3 (Gemm, transB=0): d %d err %v", d, err)
	}
	if _, _, _, err := acts.InputGram("W2"); !errors.Is(err, ErrCalibration) {
		t.Fatalf("W2's input a1 was not captured: %v", err)
	}
	if _, _, _, err := acts.InputGram("b2"); !errors.Is(err, ErrCalibration) {
		t.Fatalf("bias: %v", err)
	}
	c, e, err := acts.ActivationHistogram("X")
	if err != nil || len(c) != 64 || len(e) != 65 {
		t.Fatalf("histogram: %d %d %v", len(c), len(e), err)
	}
	bad, _ := NewActivations(m, map[string][]float32{"X": x[:63]}, 0)
	if _, _, _, err := bad.InputGram("W1"); !errors.Is(err, ErrCalibration) {
		t.Fatalf("ragged rows: %v", err)
	}
}
