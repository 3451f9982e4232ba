package quant

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"testing"

	"github.com/onnxpost/onnxpost/calib"
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
	v := make([]float64, len(x))
	for i, f := range x {
		v[i] = float64(f)
	}
	c, e, err := calib.HistogramOf(v, bins)
	if err != nil {
		panic(err)
	}
	return c, e, x
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

// TestQuantizeFromActivations: calib's in-memory implementation serves
// Quantize's GPTQ (Gram matrices) and static activations (histograms).
func TestQuantizeFromActivations(t *testing.T) {
	m := testModel(t, 11, false)
	rng := rand.New(rand.NewSource(14))
	acts := map[string]calib.Activation{}
	for _, v := range []struct {
		name string
		d    int64
	}{{"X", 64}, {"a1", 32}, {"a2", 16}} {
		acts[v.name] = calib.Activation{Shape: []int64{5, v.d}, Data: randWeights(rng, int(5*v.d), 1)}
	}
	grams, err := GramWeights(m, Options{Weights: "int4", Method: "gptq"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := calib.FromActivations(m, acts, calib.Request{Grams: grams, Tensors: []string{"X"}, Bins: 64}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g, d, n, err := st.InputGram("W1")
	if err != nil || d != 64 || n != 5 {
		t.Fatalf("W1: d %d n %d err %v", d, n, err)
	}
	want, _, _ := calib.GramOf(acts["X"].Data, 64)
	for i := range want {
		if g[i] != want[i] {
			t.Fatalf("Gram differs at %d", i)
		}
	}
	if _, _, err := Quantize(context.Background(), m, Options{Weights: "int4", Method: "gptq", BlockSize: 16, Calibration: st}); err != nil {
		t.Fatal(err)
	}
	c, e, err := st.ActivationHistogram("X")
	if err != nil || len(c) != 64 || len(e) != 65 {
		t.Fatalf("histogram: %d %d %v", len(c), len(e), err)
	}
}
