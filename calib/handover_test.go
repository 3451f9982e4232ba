package calib

import (
	"slices"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

// TestHandOver: with Grams on demand, the last of the weights that share a
// Gram gets the held matrix itself (no copy) and the Collected forgets
// it; the earlier readers get copies; a second read computes it again,
// bit-identical.
func TestHandOver(t *testing.T) {
	m := onnxio.New("handover", 17)
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "n"}, {Value: 3}}})
	for _, w := range []struct{ w, out string }{{"Wq", "q"}, {"Wk", "k"}} {
		t0, err := onnxio.FromFloat32(w.w, onnxio.Float, []int64{3, 3}, make([]float32, 9))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetInitializer(t0); err != nil {
			t.Fatal(err)
		}
		if err := m.InsertNodes(onnxio.Node{Name: "mm_" + w.w, OpType: "MatMul", Inputs: []string{"x", w.w}, Outputs: []string{w.out}}); err != nil {
			t.Fatal(err)
		}
		m.AddOutput(onnxio.ValueInfo{Name: w.out})
	}
	acts := map[string]Activation{"x": {Shape: []int64{4, 3}, Data: []float32{1, 2, 3, -1, 0, 2, 4, 1, -2, 0.5, 3, 1}}}
	want, err := FromActivations(m, acts, Request{Grams: []string{"Wq", "Wk"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantG, _, _, _ := want.InputGram("Wq")
	a, err := NewAccumulator(m, Request{Grams: []string{"Wq", "Wk"}, MaxGramBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	passes := 0
	c, err := a.Collect(func(a *Accumulator) error {
		passes++
		v := make([]float64, len(acts["x"].Data))
		for i, x := range acts["x"].Data {
			v[i] = float64(x)
		}
		for again := true; again; again = a.EndPass() {
			if err := a.Add(map[string][]float64{"x": v}, map[string][]int64{"x": acts["x"].Shape}, nil, 4); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	l := c.layers["Wq"]
	q, _, _, err := c.InputGram("Wq")
	if err != nil {
		t.Fatal(err)
	}
	held := &l.g.xtx[0]
	if &q[0] == held || !slices.Equal(q, wantG) {
		t.Fatalf("first reader: a copy of the Gram expected (equal %v)", slices.Equal(q, wantG))
	}
	k, _, n, err := c.InputGram("Wk")
	if err != nil {
		t.Fatal(err)
	}
	if &k[0] != held {
		t.Fatal("the last reader got a copy, not the held matrix")
	}
	if !slices.Equal(k, wantG) || n != 4 {
		t.Fatalf("handed-over Gram %v (n %d), want %v (n 4)", k, n, wantG)
	}
	if l.g != nil || len(c.lazy.resident) != 0 {
		t.Fatal("the Collected still holds the handed-over Gram")
	}
	clear(k) // the caller's to overwrite
	again, _, _, err := c.InputGram("Wk")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(again, wantG) || passes != 2 || c.GramPasses() != 2 {
		t.Fatalf("read again: %v after %d passes, want %v after 2", again, passes, wantG)
	}
}
