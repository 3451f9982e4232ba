package pipeline

import (
	"context"
	"math"
	"testing"

	"github.com/onnxpost/onnxpost/compress/lowrank"
	"github.com/onnxpost/onnxpost/compress/sparsity"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/quant"
)

// The calibration entry points agree: the Gram matrices of the zoo MLP's
// layers from the sparsity capture, the streaming
// capture (lowrank, GPTQ) and the sequential capture on the unpruned
// model are equal, over exactly Samples samples.
func TestCalibrationEntryPointsAgree(t *testing.T) {
	needORT(t)
	m, err := onnxio.Load(zoo("zoo", "mlp", "base.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	m.EnsureNodeNames()
	ds, err := evalharness.LoadDataset(zoo("data", "digits_union_val.npz"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	co := CalibOptions{Samples: 100, Batch: 32}
	sp, err := SparsityCalibration(ctx, m, ds, sparsity.Selection{}, sparsity.SparseGPT, co)
	if err != nil {
		t.Fatal(err)
	}
	seq := SequentialSparsityCalibration(ctx, m, ds, co)
	lr, err := LowrankCalibration(ctx, m, ds, lowrank.Options{Scheme: lowrank.SchemeSVD, Rule: lowrank.Rule{Kind: lowrank.ByRank, Value: 8}, Force: true}, co)
	if err != nil {
		t.Fatal(err)
	}
	qopt := quant.Options{Weights: "int4", Method: "gptq", BlockSize: 32, Damp: 0.01}
	qs, err := QuantCalibration(ctx, m, ds, qopt, co)
	if err != nil {
		t.Fatal(err)
	}
	names, err := quant.GramWeights(m, qopt)
	if err != nil || len(names) == 0 {
		t.Fatalf("weights %v (%v)", names, err)
	}
	for _, w := range names {
		want, d, n, err := sp.InputGram(w)
		if err != nil {
			t.Fatal(err)
		}
		if n != 100 {
			t.Errorf("%s: %d samples, want 100", w, n)
		}
		for name, c := range map[string]interface {
			InputGram(string) ([]float64, int, int64, error)
		}{"sequential": seq, "lowrank": lr, "quant": qs} {
			got, gd, gn, err := c.InputGram(w)
			if err != nil {
				t.Fatalf("%s %s: %v", name, w, err)
			}
			if gd != d || gn != n || len(got) != len(want) {
				t.Fatalf("%s %s: d=%d n=%d, want d=%d n=%d", name, w, gd, gn, d, n)
			}
			for i := range want {
				if math.Abs(got[i]-want[i]) > 1e-6*(1+math.Abs(want[i])) {
					t.Fatalf("%s %s: XᵀX[%d] = %g, want %g", name, w, i, got[i], want[i])
				}
			}
		}
	}
}
