package sparsity

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

// Calibration activations with NaN or ±Inf would give NaN Wanda scores
// (a meaningless mask, silently) or a NaN SparseGPT Hessian: the Gram
// refuses them, naming the activation, and so does PruneModel.
func TestCapturedNonFinite(t *testing.T) {
	m := onnxio.New("g", 17)
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "n"}, {Value: 4}}})
	w, _ := onnxio.FromFloat32("w", onnxio.Float, []int64{4, 4}, []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	if err := m.SetInitializer(w); err != nil {
		t.Fatal(err)
	}
	if err := m.InsertNodes(onnxio.Node{Name: "fc", OpType: "MatMul", Inputs: []string{"x", "w"}, Outputs: []string{"y"}}); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float})
	for _, bad := range []float32{float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN())} {
		x := []float32{1, 2, 3, 4, 5, bad, 7, 8}
		c, err := NewCaptured(m, map[string]Activation{"x": {Shape: []int64{2, 4}, Data: x}})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := c.InputGram("w"); !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), "activation x of node fc") {
			t.Errorf("%v: InputGram err = %v, want ErrNonFinite naming x", bad, err)
		}
		for _, method := range []Method{Wanda, SparseGPT} {
			if _, err := PruneModel(context.Background(), m.Clone(), Options{Method: method, Sparsity: 0.5}, Selection{}, c); !errors.Is(err, ErrNonFinite) {
				t.Errorf("%v %s: PruneModel err = %v, want ErrNonFinite", bad, method, err)
			}
		}
	}
}

func TestPruneCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l := []Layer{{Name: "w", Layout: LayoutKN, Dims: []int64{4, 4}, Data: make([]float32, 16)}}
	for _, o := range []Options{{Sparsity: 0.5}, {Sparsity: 0.5, Scope: ScopeGlobal}, {Pattern: Pattern{N: 2, M: 4}}} {
		if _, _, err := Prune(ctx, l, o, nil); !errors.Is(err, context.Canceled) {
			t.Errorf("%+v: err = %v, want context.Canceled", o, err)
		}
	}
	xtx := make([]float64, 16)
	for i := 0; i < 4; i++ {
		xtx[i*4+i] = 1
	}
	if _, err := PruneSparseGPT(ctx, make([]float32, 16), Shape{Rows: 4, Cols: 4, Stride: 1}, xtx, Options{Pattern: Pattern{N: 2, M: 4}}); !errors.Is(err, context.Canceled) {
		t.Errorf("SparseGPT: err = %v, want context.Canceled", err)
	}
}
