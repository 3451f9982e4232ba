package calib_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/calib/calibtest"
	"github.com/onnxpost/onnxpost/onnxio"
)

// feed returns a Pass that feeds acts (the whole set, one batch) through an
// accumulator, and counts its calls.
func feed(acts map[string]calib.Activation, passes *int) calib.Pass {
	return func(a *calib.Accumulator) error {
		*passes++
		vals := map[string][]float64{}
		shapes := map[string][]int64{}
		var samples int64
		for _, name := range a.Values() {
			act, ok := acts[name]
			if !ok {
				return fmt.Errorf("activation %q was not captured", name)
			}
			v := make([]float64, len(act.Data))
			for i, x := range act.Data {
				v[i] = float64(x)
			}
			vals[name], shapes[name] = v, act.Shape
			if len(act.Shape) > 0 {
				samples = act.Shape[0]
			}
		}
		for again := true; again; again = a.EndPass() {
			if err := a.Add(vals, shapes, nil, samples); err != nil {
				return err
			}
		}
		return nil
	}
}

// TestBudgetedConforms runs the Grams on demand (a budget of one byte: each
// Gram in a pass of its own, computed when asked for) through the
// conformance suite: the results equal the one-pass ones.
func TestBudgetedConforms(t *testing.T) {
	calibtest.Run(t, func(t *testing.T, f calibtest.Fixture) (calib.Stats, error) {
		r := f.Request
		r.MaxGramBytes = 1
		a, err := calib.NewAccumulator(f.Model, r)
		if err != nil {
			return nil, err
		}
		var passes int
		return a.Collect(feed(f.Activations, &passes))
	})
}

// TestBudgetGroups: weights reading the same input share one Gram; with a
// budget that holds two Grams, asking in order makes one pass per group,
// asking again for a freed Gram makes one more, and every Gram is
// bit-identical to the one-pass result.
func TestBudgetGroups(t *testing.T) {
	m := onnxio.New("groups", 17)
	// x → A (q, k share x) ; y = x·Wq → B(Wb) ; z → C(Wc)
	acts := map[string]calib.Activation{}
	mk := func(name string, rows, cols int) calib.Activation {
		a := calib.Activation{Shape: []int64{int64(rows), int64(cols)}, Data: make([]float32, rows*cols)}
		for i := range a.Data {
			a.Data[i] = float32((i*7+len(name))%13) - 6
		}
		acts[name] = a
		return a
	}
	mk("x", 5, 4)
	mk("y", 5, 4)
	mk("z", 5, 4)
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "n"}, {Value: 4}}})
	for _, w := range []struct{ w, in, out string }{{"Wq", "x", "y"}, {"Wk", "x", "k"}, {"Wb", "y", "z"}, {"Wc", "z", "o"}} {
		t0, err := onnxio.FromFloat32(w.w, onnxio.Float, []int64{4, 4}, make([]float32, 16))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetInitializer(t0); err != nil {
			t.Fatal(err)
		}
		if err := m.InsertNodes(onnxio.Node{Name: "mm_" + w.w, OpType: "MatMul", Inputs: []string{w.in, w.w}, Outputs: []string{w.out}}); err != nil {
			t.Fatal(err)
		}
	}
	m.AddOutput(onnxio.ValueInfo{Name: "o"})
	m.AddOutput(onnxio.ValueInfo{Name: "k"})
	grams := []string{"Wq", "Wk", "Wb", "Wc"}
	all, err := calib.FromActivations(m, acts, calib.Request{Grams: grams}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := calib.NewAccumulator(m, calib.Request{Grams: grams, MaxGramBytes: 2 * 8 * 4 * 4})
	if err != nil {
		t.Fatal(err)
	}
	var passes int
	lazy, err := a.Collect(feed(acts, &passes))
	if err != nil {
		t.Fatal(err)
	}
	if passes != 0 {
		t.Fatalf("%d passes before any Gram was asked for", passes)
	}
	// 3 distinct Grams (x, y, z): {x, y} then {z}; then x again
	for i, w := range []string{"Wq", "Wk", "Wb", "Wc", "Wq"} {
		want, d, n, err := all.InputGram(w)
		if err != nil {
			t.Fatal(err)
		}
		got, gd, gn, err := lazy.InputGram(w)
		if err != nil {
			t.Fatal(err)
		}
		if gd != d || gn != n || !slices.Equal(got, want) {
			t.Fatalf("%s: Gram on demand differs from the one-pass Gram", w)
		}
		if wantPasses := []int{1, 1, 1, 2, 3}[i]; lazy.GramPasses() != wantPasses || passes != wantPasses {
			t.Fatalf("after %s: %d passes (%d counted), want %d", w, lazy.GramPasses(), passes, wantPasses)
		}
	}
}
