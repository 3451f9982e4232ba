package pipeline

import (
	"context"
	"errors"
	"math/rand"
	"regexp"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

// constMLP returns X[batch,16] → MatMul(W1[16,8]) → Relu → MatMul(W2[8,4])
// → Y whose weights are Constant nodes (as in the PaddleOCR exports), and a
// calibration set of n rows.
func constMLP(t *testing.T, n int) (*onnxio.Model, *evalharness.Dataset) {
	t.Helper()
	r := rand.New(rand.NewSource(3))
	randn := func(k int) []float32 {
		v := make([]float32, k)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	m := onnxio.New("constmlp", 17)
	batch := onnxio.Dim{Param: "batch"}
	m.AddInput(onnxio.ValueInfo{Name: "X", DType: onnxio.Float, Shape: []onnxio.Dim{batch, {Value: 16}}})
	w1, err := onnxio.FromFloat32("", onnxio.Float, []int64{16, 8}, randn(128))
	if err != nil {
		t.Fatal(err)
	}
	w2, err := onnxio.FromFloat32("", onnxio.Float, []int64{8, 4}, randn(32))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.InsertNodes(
		onnxio.Node{Name: "c1", OpType: "Constant", Outputs: []string{"W1"}, Attrs: []onnxio.Attr{onnxio.AttrTensorVal("value", w1)}},
		onnxio.Node{Name: "c2", OpType: "Constant", Outputs: []string{"W2"}, Attrs: []onnxio.Attr{onnxio.AttrTensorVal("value", w2)}},
		onnxio.Node{Name: "mm1", OpType: "MatMul", Inputs: []string{"X", "W1"}, Outputs: []string{"H"}},
		onnxio.Node{Name: "relu", OpType: "Relu", Inputs: []string{"H"}, Outputs: []string{"R"}},
		onnxio.Node{Name: "mm2", OpType: "MatMul", Inputs: []string{"R", "W2"}, Outputs: []string{"Y"}},
	); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "Y", DType: onnxio.Float, Shape: []onnxio.Dim{batch, {Value: 4}}})
	ds, err := evalharness.NewDataset(map[string]*evalharness.Array{"X": evalharness.FromFloat32([]int64{int64(n), 16}, randn(n*16))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m, ds
}

// TestSearchFoldsConstantWeights: weights held in Constant nodes are
// folded into initializers and searched (it failed with "no MatMul, Gemm
// or Conv weights selected").
func TestSearchFoldsConstantWeights(t *testing.T) {
	m, ds := constMLP(t, 16)
	if _, err := SelectLayers(m, nil, nil); !errors.Is(err, ErrNoSearchableWeight) || !strings.Contains(err.Error(), "W1 (MatMul): held in a Constant node") {
		t.Fatalf("before folding: %v, want the Constant weights named", err)
	}
	needORT(t)
	out, rep, err := RunSearch(context.Background(), m, ds, LevelSearch{Space: SpaceSparsity, Target: 0.5, Levels: 2, Search: smallSearch(1)})
	if err != nil {
		t.Fatal(err)
	}
	if n := out.OpCounts()["Constant"]; n != 0 {
		t.Errorf("%d Constant nodes left in the output", n)
	}
	zeros, total := 0, 0
	for _, name := range []string{"W1", "W2"} {
		w, err := out.Initializer(name)
		if err != nil {
			t.Fatalf("searched weight %s: %v", name, err)
		}
		v, _ := w.Float32()
		for _, x := range v {
			if x == 0 {
				zeros++
			}
		}
		total += len(v)
	}
	if zeros != total/2 || rep == nil {
		t.Errorf("%d zeros of %d weights, want exactly half", zeros, total)
	}
}

// TestSelectLayersSaysWhy: when no weight can be searched the error wraps
// ErrNoSearchableWeight and names each layer with its reason.
func TestSelectLayersSaysWhy(t *testing.T) {
	quantized := func() *onnxio.Model {
		m := onnxio.New("q", 17)
		m.AddInput(onnxio.ValueInfo{Name: "X", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 1}, {Value: 4}}})
		q, _ := onnxio.NewTensor("Wq", onnxio.Int8, []int64{4, 2}, make([]byte, 8))
		s, _ := onnxio.FromFloat32("Ws", onnxio.Float, nil, []float32{0.1})
		if err := m.SetInitializer(q); err != nil {
			t.Fatal(err)
		}
		if err := m.SetInitializer(s); err != nil {
			t.Fatal(err)
		}
		if err := m.InsertNodes(
			onnxio.Node{Name: "dq", OpType: "DequantizeLinear", Inputs: []string{"Wq", "Ws"}, Outputs: []string{"W"}},
			onnxio.Node{Name: "mm", OpType: "MatMul", Inputs: []string{"X", "W"}, Outputs: []string{"Y"}},
		); err != nil {
			t.Fatal(err)
		}
		m.AddOutput(onnxio.ValueInfo{Name: "Y", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 1}, {Value: 2}}})
		return m
	}
	half := func() *onnxio.Model {
		m := onnxio.New("h", 17)
		m.AddInput(onnxio.ValueInfo{Name: "X", DType: onnxio.Float16, Shape: []onnxio.Dim{{Value: 1}, {Value: 4}}})
		w, _ := onnxio.FromFloat32("Wh", onnxio.Float16, []int64{4, 2}, make([]float32, 8))
		if err := m.SetInitializer(w); err != nil {
			t.Fatal(err)
		}
		if err := m.InsertNodes(onnxio.Node{Name: "mm", OpType: "MatMul", Inputs: []string{"X", "Wh"}, Outputs: []string{"Y"}}); err != nil {
			t.Fatal(err)
		}
		m.AddOutput(onnxio.ValueInfo{Name: "Y", DType: onnxio.Float16, Shape: []onnxio.Dim{{Value: 1}, {Value: 2}}})
		return m
	}
	constant, _ := constMLP(t, 1)
	tests := []struct {
		name    string
		m       *onnxio.Model
		include *regexp.Regexp
		want    []string
	}{
		{"already quantized", quantized(), nil, []string{"Wq (MatMul): already quantized (DequantizeLinear)"}},
		{"float16", half(), nil, []string{"Wh (MatMul): float16, the search rewrites float32 weights only"}},
		{"constant nodes", constant, nil, []string{"W1 (MatMul): held in a Constant node", "W2 (MatMul): held in a Constant node"}},
		{"filtered out", constant, regexp.MustCompile("nothing"), []string{"the include and exclude parameters left none of the 2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ws, err := SelectLayers(tc.m, tc.include, nil)
			if !errors.Is(err, ErrNoSearchableWeight) {
				t.Fatalf("got %d weights, error %v; want ErrNoSearchableWeight", len(ws), err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	// RunSearch fails the same way before it needs ONNX Runtime.
	ds, _ := evalharness.NewDataset(map[string]*evalharness.Array{"X": evalharness.FromFloat32([]int64{1, 4}, make([]float32, 4))}, nil)
	if _, _, err := RunSearch(context.Background(), quantized(), ds, LevelSearch{Target: 0.5}); !errors.Is(err, ErrNoSearchableWeight) || !strings.Contains(err.Error(), "Wq (MatMul): already quantized") {
		t.Errorf("RunSearch on a quantized model: %v", err)
	}
}
