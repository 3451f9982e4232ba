package sparsity

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/onnxio"
)

// nanNorms is a calibration whose statistics hold NaN, as a capture that
// did not check its activations would give.
type nanNorms struct{ calib.Missing }

func (nanNorms) SquaredColumnNorms(string) ([]float64, int64, error) {
	return []float64{1, math.NaN(), 1, 1}, 2, nil
}

// Calibration activations with NaN or ±Inf would give NaN Wanda scores
// (a meaningless mask, silently) or a NaN SparseGPT Hessian: the
// calibration refuses them, naming the activation, and Wanda refuses
// non-finite norms all the same.
func TestCalibrationNonFinite(t *testing.T) {
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
		for _, r := range []calib.Request{{Grams: []string{"w"}}, {Norms: []string{"w"}}} {
			_, err := calib.FromActivations(m, map[string]calib.Activation{"x": {Shape: []int64{2, 4}, Data: x}}, r, nil)
			if !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), `activation "x"`) {
				t.Errorf("%v %+v: err = %v, want ErrNonFinite naming x", bad, r, err)
			}
		}
	}
	if _, err := PruneModel(context.Background(), m.Clone(), Options{Method: Wanda, Sparsity: 0.5}, Selection{}, nanNorms{}); err == nil || !strings.Contains(err.Error(), "invalid XᵀX diagonal NaN") {
		t.Errorf("Wanda with NaN norms: err = %v, want the invalid diagonal named", err)
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
