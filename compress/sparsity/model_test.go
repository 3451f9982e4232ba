package sparsity

import (
	"context"
	"errors"
	"math/rand"
	"regexp"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

// testModel builds x[1,8,4,4] → Conv(w_conv [8,8,3,3], pad 1) → Flatten →
// MatMul(w_mm [128,16]) → Gemm(w_gemm [12,16] transB=1, fp16) → Gemm(w_odd
// [12,6]).
func testModel(t *testing.T, rng *rand.Rand) *onnxio.Model {
	t.Helper()
	m := onnxio.New("sparsity-test", 17)
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 1}, {Value: 8}, {Value: 4}, {Value: 4}}})
	add := func(name string, dt onnxio.DType, shape []int64) {
		n := 1
		for _, d := range shape {
			n *= int(d)
		}
		tt, err := onnxio.FromFloat32(name, dt, shape, randMat(rng, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetInitializer(tt); err != nil {
			t.Fatal(err)
		}
	}
	add("w_conv", onnxio.Float, []int64{8, 8, 3, 3})
	add("w_mm", onnxio.Float, []int64{128, 16})
	add("w_gemm", onnxio.Float16, []int64{12, 16})
	add("w_odd", onnxio.Float, []int64{12, 6})
	err := m.InsertNodes(
		onnxio.Node{Name: "conv", OpType: "Conv", Inputs: []string{"x", "w_conv"}, Outputs: []string{"c"}, Attrs: []onnxio.Attr{onnxio.AttrIntList("pads", 1, 1, 1, 1)}},
		onnxio.Node{Name: "flat", OpType: "Flatten", Inputs: []string{"c"}, Outputs: []string{"f"}},
		onnxio.Node{Name: "mm", OpType: "MatMul", Inputs: []string{"f", "w_mm"}, Outputs: []string{"h"}},
		onnxio.Node{Name: "cast", OpType: "Cast", Inputs: []string{"w_gemm"}, Outputs: []string{"w_gemm32"}, Attrs: []onnxio.Attr{onnxio.AttrInt("to", 1)}},
		onnxio.Node{Name: "gemm", OpType: "Gemm", Inputs: []string{"h", "w_gemm32"}, Outputs: []string{"g"}, Attrs: []onnxio.Attr{onnxio.AttrInt("transB", 1)}},
		onnxio.Node{Name: "odd", OpType: "Gemm", Inputs: []string{"g", "w_odd"}, Outputs: []string{"y"}},
	)
	if err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float})
	return m
}

func TestPruneModel(t *testing.T) {
	rng := rand.New(rand.NewSource(13))
	base := testModel(t, rng)
	ws, err := base.WeightMap()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"w_conv", "w_mm", "w_gemm", "w_odd"} {
		if _, ok := ws[n]; !ok {
			t.Fatalf("onnxio does not list %s", n)
		}
	}
	layouts := map[string]Layout{"w_conv": LayoutConv, "w_mm": LayoutKN, "w_gemm": LayoutNK}
	for _, p := range []Pattern{{2, 4}, {4, 8}} {
		m := base.Clone()
		rep, err := PruneModel(context.Background(), m, Options{Pattern: p}, Selection{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		wantSkipped := 0 // w_odd: Gemm B [12,6], transB=0, reduces over 12
		if p.M == 8 {
			wantSkipped = 1
		}
		layouts["w_odd"] = LayoutKN
		if p.M == 4 && (rep.TensorRT == nil || rep.TensorRT.Layers2x4 != 4 || rep.TensorRT.EPOptions["trt_sparsity_enable"] != "1") {
			t.Errorf("2:4: TensorRT hint %+v", rep.TensorRT)
		}
		if md := m.Metadata()[MetaSparsity]; md == "" {
			t.Errorf("no %s metadata", MetaSparsity)
		}
		if rep.NMViolations != 0 || rep.Skipped != wantSkipped {
			t.Errorf("%v: violations %d skipped %d", p, rep.NMViolations, rep.Skipped)
		}
		for _, lr := range rep.Layers {
			tt, err := m.Initializer(lr.Name)
			if err != nil {
				t.Fatal(err)
			}
			orig, _ := base.Initializer(lr.Name)
			if tt.DType != orig.DType || len(tt.Shape) != len(orig.Shape) {
				t.Errorf("%s: dtype/shape changed: %v %v", lr.Name, tt.DType, tt.Shape)
			}
			data, _ := tt.Float32()
			if lr.Name == "w_odd" && p.M == 8 {
				if lr.Skipped == "" || CountZeros(data) != 0 {
					t.Errorf("w_odd with 4:8: %+v", lr)
				}
				continue
			}
			c, err := VerifyNM(data, layouts[lr.Name], tt.Shape, p)
			if err != nil || !c.OK() || lr.NM == nil || !lr.NM.OK() {
				t.Errorf("%s: check %+v %v", lr.Name, c, err)
			}
			if lr.Layout != layouts[lr.Name] {
				t.Errorf("%s: layout %s, want %s", lr.Name, lr.Layout, layouts[lr.Name])
			}
		}
	}
	m := base.Clone()
	rep, err := PruneModel(context.Background(), m, Options{Pattern: Pattern{2, 4}}, Selection{Include: regexp.MustCompile("odd")}, nil)
	if err != nil || len(rep.Layers) != 1 || rep.Layers[0].Skipped != "" || rep.Pruned != 36 {
		t.Fatalf("include odd: %+v %v", rep, err)
	}
	// exclude everything that fits 8: refusal
	m = base.Clone()
	if _, err := PruneModel(context.Background(), m, Options{Pattern: Pattern{4, 8}}, Selection{Include: regexp.MustCompile("odd")}, nil); !errors.Is(err, ErrNoLayerFits) {
		t.Errorf("4:8 on w_odd only: %v, want ErrNoLayerFits", err)
	}
	// global unstructured, exclude conv
	m = base.Clone()
	rep, err = PruneModel(context.Background(), m, Options{Sparsity: 0.7, Scope: ScopeGlobal}, Selection{Exclude: regexp.MustCompile("conv")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := 128*16 + 12*16 + 12*6; rep.Pruned != PrunedCount(0.7, n) || len(rep.Layers) != 3 {
		t.Errorf("global: pruned %d of %d, layers %d", rep.Pruned, n, len(rep.Layers))
	}
	if _, err := PruneModel(context.Background(), base.Clone(), Options{Method: Wanda, Sparsity: 0.5}, Selection{}, nil); !errors.Is(err, ErrNoCalibration) {
		t.Errorf("wanda without calibration: %v", err)
	}
}
