package evalharness

import (
	"context"
	"math"
	"reflect"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

// inputsRunner is a Runner that only declares inputs (batchSize reads
// nothing else).
type inputsRunner []TensorInfo

func (r inputsRunner) Inputs() []TensorInfo                    { return r }
func (r inputsRunner) Outputs() []TensorInfo                   { return nil }
func (r inputsRunner) Run(map[string]*Array) ([]*Array, error) { return nil, nil }

// TestDecoderInputsDerived checks the feeds of a merged decoder's inputs
// that a text dataset lacks: empty past_key_values of the declared dtype
// (batch on axis 0, past length 0), use_cache_branch a single false fed
// whole to every batch, position_ids from attention_mask. The merged
// decoder's use_cache_branch [1] used to be taken for a fixed batch axis
// of size 1, so the whole dataset ran one sample per batch.
func TestDecoderInputsDerived(t *testing.T) {
	seq := []string{"batch", "sequence"}
	inputs := []TensorInfo{
		{Name: "input_ids", DType: onnxio.Int64, Shape: []int64{-1, -1}, DimParams: seq},
		{Name: "attention_mask", DType: onnxio.Int64, Shape: []int64{-1, -1}, DimParams: []string{"batch", "past+sequence"}},
		{Name: "position_ids", DType: onnxio.Int64, Shape: []int64{-1, -1}, DimParams: seq},
		{Name: "past_key_values.0.key", DType: onnxio.Float16, Shape: []int64{-1, 2, -1, 4}, DimParams: []string{"batch", "", "past", ""}},
		{Name: "past_key_values.0.value", DType: onnxio.Float, Shape: []int64{-1, 2, -1, 4}, DimParams: []string{"batch", "", "past", ""}},
		{Name: "use_cache_branch", DType: onnxio.Bool, Shape: []int64{1}},
	}
	ids := FromInt64([]int64{5, 3}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	mask := FromInt64([]int64{5, 3}, []int64{1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1})
	ds, err := NewDataset(map[string]*Array{"input_ids": ids, "attention_mask": mask}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ds.Check(inputs); err != nil {
		t.Fatal(err)
	}
	if ax := ds.BatchAxes()["use_cache_branch"]; ax != -1 {
		t.Errorf("use_cache_branch batch axis %d, want -1 (fed whole)", ax)
	}
	if b, err := batchSize(inputsRunner(inputs), ds, 4); err != nil || b != 4 {
		t.Errorf("batch size %d (%v), want 4: use_cache_branch [1] is no fixed batch axis", b, err)
	}
	b := ds.Batch(1, 4)
	want := map[string]struct {
		dt    onnxio.DType
		shape []int64
		bytes int
	}{
		"use_cache_branch":        {onnxio.Bool, []int64{1}, 1},
		"past_key_values.0.key":   {onnxio.Float16, []int64{3, 2, 0, 4}, 0},
		"past_key_values.0.value": {onnxio.Float, []int64{3, 2, 0, 4}, 0},
		"position_ids":            {onnxio.Int64, []int64{3, 3}, 72},
	}
	for name, w := range want {
		a := b[name]
		if a == nil {
			t.Errorf("%s not fed", name)
			continue
		}
		if a.DType != w.dt || !reflect.DeepEqual(a.Shape, w.shape) || len(a.Data) != w.bytes {
			t.Errorf("%s: %v %v (%d bytes), want %v %v (%d bytes)", name, a.DType, a.Shape, len(a.Data), w.dt, w.shape, w.bytes)
		}
	}
	if b["use_cache_branch"].Data[0] != 0 {
		t.Errorf("use_cache_branch fed true, want false")
	}
	pos, _ := b["position_ids"].Int64()
	if wantPos := []int64{1, 0, 1, 0, 1, 1, 0, 1, 2}; !reflect.DeepEqual(pos, wantPos) {
		t.Errorf("position_ids %v, want %v", pos, wantPos)
	}
	// use_cache_branch of another type is not guessed at
	bad := append([]TensorInfo(nil), inputs...)
	bad[5].DType = onnxio.Int64
	if err := ds.Check(bad); err == nil {
		t.Errorf("an int64 use_cache_branch was derived; want a missing-input error")
	}
}

// TestKeepRows checks which activations lose the rows of padded token
// positions: one row per position, as [N, T, D] or [N·T, D]; anything
// else comes back unchanged.
func TestKeepRows(t *testing.T) {
	mask := []bool{true, false, true, true, false, false} // [2, 3]
	x := make([]float64, 12)
	for i := range x {
		x[i] = float64(i)
	}
	cases := []struct {
		name   string
		shape  []int64
		mask   []bool
		want   []float64
		shape2 []int64
	}{
		{"[N,T,D]", []int64{2, 3, 2}, mask, []float64{0, 1, 4, 5, 6, 7}, []int64{3, 2}},
		{"[N*T,D]", []int64{6, 2}, mask, []float64{0, 1, 4, 5, 6, 7}, []int64{3, 2}},
		{"no mask", []int64{2, 3, 2}, nil, x, []int64{2, 3, 2}},
		{"rows differ", []int64{2, 6}, mask, x, []int64{2, 6}},
		{"rank 1", []int64{12}, mask, x, []int64{12}},
		{"all kept", []int64{2, 3, 2}, []bool{true, true, true, true, true, true}, x, []int64{2, 3, 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, shape := KeepRows(x, tc.shape, tc.mask)
			if !reflect.DeepEqual(got, tc.want) || !reflect.DeepEqual(shape, tc.shape2) {
				t.Errorf("KeepRows = %v %v, want %v %v", got, shape, tc.want, tc.shape2)
			}
		})
	}
}

// TestCaptureExcludesPaddedTokens checks that calibration over token
// activations [N, T, D] counts N·T rows less the padded positions: the
// input Gram and the tensor range of x leave out the rows where
// attention_mask is 0 (which hold huge values here), when the model takes
// an attention_mask; a model without one counts every row.
func TestCaptureExcludesPaddedTokens(t *testing.T) {
	build := func(withMask bool) *onnxio.Model {
		m := onnxio.New("g", 17)
		m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "batch"}, {Param: "seq"}, {Value: 2}}})
		if withMask {
			m.AddInput(onnxio.ValueInfo{Name: "attention_mask", DType: onnxio.Int64, Shape: []onnxio.Dim{{Param: "batch"}, {Param: "seq"}}})
		}
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
	// two windows of 3 positions; padded positions hold 1000
	x := []float32{1, 2, 3, 4, 1000, 1000, 5, 6, 1000, 1000, 1000, 1000}
	mask := []int64{1, 1, 0, 1, 0, 0}
	cases := []struct {
		name     string
		withMask bool
		rows     []int // rows of x that count
	}{
		{"masked", true, []int{0, 1, 3}},
		{"model without attention_mask", false, []int{0, 1, 2, 3, 4, 5}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ds, err := NewDataset(map[string]*Array{
				"x":              FromFloat32([]int64{2, 3, 2}, x),
				"attention_mask": FromInt64([]int64{2, 3}, mask),
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			// batches of one sample, and of two converted and
			// accumulated a sample at a time with its part of the mask
			for _, batch := range []int{1, 2} {
				st, err := Capture(context.Background(), build(tc.withMask), ds, CaptureOptions{Grams: []string{"w"}, Tensors: []string{"x"}, Bins: 4, Batch: batch})
				if err != nil {
					t.Fatal(err)
				}
				checkPadded(t, st, x, tc.rows)
			}
		})
	}
}

// checkPadded checks the Gram of w and the statistics of x over the rows
// of x that count.
func checkPadded(t *testing.T, st *Stats, x []float32, rows []int) {
	t.Helper()
	g, d, n, err := st.InputGram("w")
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float64, 4)
	hi := 0.0
	for _, r := range rows {
		a, b := float64(x[2*r]), float64(x[2*r+1])
		want[0] += a * a
		want[1] += a * b
		want[2] += a * b
		want[3] += b * b
		hi = math.Max(hi, math.Max(a, b))
	}
	if d != 2 || n != int64(len(rows)) || !reflect.DeepEqual(g, want) {
		t.Errorf("Gram %v (d %d, %d rows), want %v (%d rows)", g, d, n, want, len(rows))
	}
	ts, _ := st.Tensor("x")
	if ts.Count != int64(2*len(rows)) || ts.Max != hi || ts.Hist.Total() != ts.Count {
		t.Errorf("x stats: count %d max %v hist %d, want count %d max %v", ts.Count, ts.Max, ts.Hist.Total(), 2*len(rows), hi)
	}
}

// TestBoolOutput: a bool output (a decoder's causal mask exposed as a
// probe, e.g. by fisher) used to fail with "unsupported output value
// *onnxruntime_go.Tensor[bool]"; it now comes back as a bool array.
func TestBoolOutput(t *testing.T) {
	requireORTLib(t)
	m := onnxio.New("g", 17)
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "n"}, {Value: 3}}})
	zero, _ := onnxio.FromFloat32("zero", onnxio.Float, []int64{}, []float32{0})
	if err := m.SetInitializer(zero); err != nil {
		t.Fatal(err)
	}
	if err := m.InsertNodes(onnxio.Node{Name: "gt", OpType: "Greater", Inputs: []string{"x", "zero"}, Outputs: []string{"pos"}}); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "pos", DType: onnxio.Bool, Shape: []onnxio.Dim{{Param: "n"}, {Value: 3}}})
	b, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSession(b, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	outs, err := s.Run(map[string]*Array{"x": FromFloat32([]int64{2, 3}, []float32{1, -1, 0, 2, 3, -4})})
	if err != nil {
		t.Fatal(err)
	}
	if o := outs[0]; o.DType != onnxio.Bool || !reflect.DeepEqual(o.Shape, []int64{2, 3}) || !reflect.DeepEqual(o.Data, []byte{1, 0, 0, 1, 1, 0}) {
		t.Errorf("bool output %v %v %v, want bool [2 3] [1 0 0 1 1 0]", o.DType, o.Shape, o.Data)
	}
}
