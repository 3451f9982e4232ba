package evalharness

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

// nonFiniteModel is y = x·w with x [n, 2]: capturing x (a graph input) and
// w's input Gram needs no ONNX Runtime session.
func nonFiniteModel(t *testing.T) *onnxio.Model {
	t.Helper()
	m := onnxio.New("g", 17)
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "n"}, {Value: 2}}})
	w, _ := onnxio.FromFloat32("w", onnxio.Float, []int64{2, 2}, []float32{1, 0, 0, 1})
	if err := m.SetInitializer(w); err != nil {
		t.Fatal(err)
	}
	if err := m.InsertNodes(onnxio.Node{Name: "mm", OpType: "MatMul", Inputs: []string{"x", "w"}, Outputs: []string{"y"}}); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float})
	return m
}

// Calibration sets holding Inf, NaN or values at the float32 limit used to
// panic (index out of range) in the histogram pass. Non-finite values are
// now counted apart and kept out of the range and histogram, Finite names
// them, and an input Gram refuses them.
func TestCaptureNonFinite(t *testing.T) {
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	big := float32(3.3e38)
	cases := []struct {
		name             string
		x                []float32
		nans, infs       int64
		min, max         float64
		gramErr          bool
		histTotal        int64
		finiteErrMessage string
	}{
		{"finite", []float32{1, 2, 3, 4}, 0, 0, 1, 4, false, 4, ""},
		{"plus and minus Inf", []float32{1, inf, -inf, 4, 2, 3}, 0, 2, 1, 4, true, 4, "0 NaN and 2 ±Inf among 6"},
		{"NaN", []float32{1, nan, 3, 4}, 1, 0, 1, 4, true, 3, "1 NaN and 0 ±Inf among 4"},
		{"float32 limit", []float32{-big, big, 0, 1}, 0, 0, float64(-big), float64(big), false, 4, ""},
		{"only Inf", []float32{inf, inf}, 0, 2, math.NaN(), math.NaN(), true, 0, "0 NaN and 2 ±Inf among 2"},
	}
	m := nonFiniteModel(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ds, err := NewDataset(map[string]*Array{"x": FromFloat32([]int64{int64(len(tc.x) / 2), 2}, tc.x)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			st, err := Capture(context.Background(), m, ds, CaptureOptions{Tensors: []string{"x"}, Bins: 16, Batch: 1})
			if err != nil {
				t.Fatalf("tensor statistics: %v", err)
			}
			ts, _ := st.Tensor("x")
			if ts.NaNs != tc.nans || ts.Infs != tc.infs || ts.Count != int64(len(tc.x)) {
				t.Errorf("count %d, NaNs %d, Infs %d; want %d, %d, %d", ts.Count, ts.NaNs, ts.Infs, len(tc.x), tc.nans, tc.infs)
			}
			same := func(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }
			if !same(ts.Min, tc.min) || !same(ts.Max, tc.max) {
				t.Errorf("range [%g, %g], want [%g, %g]", ts.Min, ts.Max, tc.min, tc.max)
			}
			if got := ts.Hist.Total(); got != tc.histTotal {
				t.Errorf("histogram counts %d values, want %d", got, tc.histTotal)
			}
			for _, e := range ts.Hist.Edges() {
				if math.IsNaN(e) || math.IsInf(e, 0) {
					t.Errorf("histogram edge %v", e)
				}
			}
			ferr := ts.Finite()
			if (ferr != nil) != (tc.finiteErrMessage != "") {
				t.Fatalf("Finite() = %v", ferr)
			}
			if ferr != nil && (!errors.Is(ferr, ErrNonFinite) || !strings.Contains(ferr.Error(), "x: ") || !strings.Contains(ferr.Error(), tc.finiteErrMessage)) {
				t.Errorf("Finite() = %q, want ErrNonFinite naming x and %q", ferr, tc.finiteErrMessage)
			}
			_, err = Capture(context.Background(), m, ds, CaptureOptions{Grams: []string{"w"}})
			if tc.gramErr {
				if !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), `activation "x"`) {
					t.Errorf("Gram capture: err = %v, want ErrNonFinite naming x", err)
				}
			} else if err != nil {
				t.Errorf("Gram capture: %v", err)
			}
		})
	}
}

func TestCaptureCancelled(t *testing.T) {
	m := nonFiniteModel(t)
	ds, err := NewDataset(map[string]*Array{"x": FromFloat32([]int64{2, 2}, []float32{1, 2, 3, 4})}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Capture(ctx, m, ds, CaptureOptions{Tensors: []string{"x"}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}
