package pipeline

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/transform"
)

// gramFake is a calibration for every transform that needs one: XᵀX = n·I
// of the right size for each weight (Gemm B with transB: [N, K]), and one
// histogram over [−1, 1] for every activation.
type gramFake struct {
	calib.Missing
	d map[string]int
}

func (g gramFake) SquaredColumnNorms(weight string) ([]float64, int64, error) {
	sq := make([]float64, g.d[weight])
	for i := range sq {
		sq[i] = 64
	}
	return sq, 64, nil
}

func (g gramFake) InputGram(weight string) ([]float64, int, int64, error) {
	d := g.d[weight]
	xtx := make([]float64, d*d)
	for i := 0; i < d; i++ {
		xtx[i*d+i] = 64
	}
	return xtx, d, 64, nil
}

func (gramFake) ActivationHistogram(string) ([]int64, []float64, error) {
	return []int64{1, 4, 6, 4, 1}, []float64{-1, -0.6, -0.2, 0.2, 0.6, 1}, nil
}

// saved returns the bytes Save writes for m.
func saved(t *testing.T, m *onnxio.Model) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "m.onnx")
	if err := m.Save(p, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// transformValues are the values each transform is run with here (the
// registry's defaults fill the rest).
var transformValues = map[string]map[string]any{
	"sparsify/magnitude":   {"pattern": "2:4"},
	"sparsify/wanda":       {"method": "wanda", "sparsity": 0.5},
	"sparsify/sparsegpt":   {"method": "sparsegpt", "pattern": "2:4", "blocksize": 32},
	"lowrank/svd":          {"rank-ratio": 0.25},
	"merge/slerp":          {"t": 0.3},
	"merge/nearswap":       {"param": []any{"t=0.01"}},
	"quantize/int4":        {"weights": "int4", "block": 16},
	"quantize/int4-gptq":   {"weights": "int4", "method": "gptq", "block": 16},
	"search/sparsity":      {"target": 0.5},
	"search/rank":          {"space": "rank", "target": 0.5},
	"search/bits":          {"space": "bits", "target": 3, "block": 16},
	"search/drop":          {"space": "drop", "target": 1},
	"search/sparsity,bits": {"space": "sparsity,bits", "target": 0.5, "target-bits": 3, "block": 16},
}

// TestTransformsLeaveTheirInputs runs every registered transform and
// checks that the models it was given save to the same bytes afterwards
// (Run never edits its input), and that it returned a new model.
func TestTransformsLeaveTheirInputs(t *testing.T) {
	load := func(family, name string) *onnxio.Model {
		m, err := onnxio.Load(zoo("zoo", family, name+".onnx"))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	for _, tr := range Transforms() {
		t.Run(tr.Name, func(t *testing.T) {
			values := map[string]any{}
			for k, v := range transformValues[tr.Name] {
				values[k] = v
			}
			if p := tr.Param("method"); p != nil && values["method"] == nil && len(tr.Name) > 6 && tr.Name[:6] == "merge/" {
				values["method"] = tr.Name[len("merge/"):]
			}
			if p := tr.Param("weights"); p != nil && values["weights"] == nil && tr.Name[:9] == "quantize/" {
				w := map[string]string{"quantize/fp16": "fp16", "quantize/bf16": "bf16"}[tr.Name]
				if w == "" {
					w = "int8"
				}
				values["weights"] = w
			}
			if p := tr.Param("activations"); p != nil {
				values["activations"] = map[string]string{"quantize/int8-dynamic": "dynamic", "quantize/int8-static": "int8"}[tr.Name]
			}
			args, err := tr.Bind(values)
			if err != nil {
				t.Fatal(err)
			}
			family := "mlp"
			switch tr.Name {
			case "search/drop", "search/bits", "search/sparsity,bits":
				family = "transformer" // residual blocks, 2-D MatMul weights
			}
			in := transform.Input{Args: args, Models: []*onnxio.Model{load(family, "base")}, Seed: 1}
			if tr.Needs&transform.NeedModels != 0 {
				in.Models = []*onnxio.Model{load(family, "ft_low"), load(family, "ft_high")}
				if tr.Name == "merge/nearswap" || tr.Name == "merge/arcee-fusion" {
					in.Models = in.Models[:1] // one model besides the base
				}
				if tr.Needs&transform.NeedBase != 0 {
					in.Base = load(family, "base")
				}
			}
			if tr.Needs&transform.NeedCalibration != 0 {
				in.Calibration = gramFake{d: map[string]int{"fc1.weight": 64, "fc2.weight": 128, "fc3.weight": 64}}
				if tr.Name == "merge/fisher" {
					in.Calibration = []*onnxio.Model{load(family, "ft_low"), load(family, "ft_high")}
				}
			}
			if tr.Needs&transform.NeedData != 0 {
				m, ds := loadZoo(t, family, 64)
				in.Models[0], in.Data = m, ds
				in.Args["generations"], in.Args["offspring"], in.Args["tokens"], in.Args["selection"] = "2", "2", "16:64", "2:1"
			}
			before := make([][]byte, len(in.Models))
			for i, m := range in.Models {
				before[i] = saved(t, m)
			}
			var base []byte
			if in.Base != nil {
				base = saved(t, in.Base)
			}
			out, _, err := tr.Run(context.Background(), in)
			for i, m := range in.Models {
				if !bytes.Equal(saved(t, m), before[i]) {
					t.Errorf("Run changed input model %d", i+1)
				}
			}
			if in.Base != nil && !bytes.Equal(saved(t, in.Base), base) {
				t.Error("Run changed the base model")
			}
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			for i, m := range in.Models {
				if out == m {
					t.Errorf("Run returned input model %d itself", i+1)
				}
			}
		})
	}
}

// A transform that needs calibration refuses to run without it (an
// error naming what it needs), rather than failing inside the algorithm.
func TestTransformsNeedTheirCalibration(t *testing.T) {
	m, err := onnxio.Load(zoo("zoo", "mlp", "base.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, tr := range Transforms() {
		if tr.Needs&transform.NeedCalibration == 0 {
			continue
		}
		n++
		values := map[string]any{}
		for k, v := range transformValues[tr.Name] {
			values[k] = v
		}
		switch {
		case tr.Name == "merge/fisher":
			values["method"] = "fisher"
		case tr.Name == "quantize/int8-static":
			values["activations"] = "int8"
		}
		args, err := tr.Bind(values)
		if err != nil {
			t.Fatalf("%s: %v", tr.Name, err)
		}
		models := []*onnxio.Model{m}
		if tr.Needs&transform.NeedModels != 0 {
			models = []*onnxio.Model{m, m}
		}
		_, _, err = tr.Run(context.Background(), transform.Input{Models: models, Args: args})
		if err == nil || !strings.Contains(err.Error(), "got <nil>") {
			t.Errorf("%s without calibration: %v", tr.Name, err)
		}
	}
	if n < 5 {
		t.Errorf("%d transforms need calibration; want quantize/int8-static, quantize/int4-gptq, sparsify/wanda, sparsify/sparsegpt, merge/fisher", n)
	}
}
