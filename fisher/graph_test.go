package fisher_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/autodiff"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/fisher"
	"github.com/onnxpost/onnxpost/onnxio"
)

// A model whose graph has a cycle or reads an undefined value used to
// panic in the probe (exit 2 from the CLI); it is now an error naming the
// nodes, before any ONNX Runtime session.
func TestComputeInvalidGraph(t *testing.T) {
	for _, tc := range []struct {
		name, from, to, mention string
	}{
		{"cycle", "x", "h", `"fc" (MatMul)`},
		{"undefined input", "b", "nothing", `"nothing"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := onnxio.New("bad", 17)
			w, _ := onnxio.FromFloat32("w", onnxio.Float, []int64{2, 2}, []float32{1, 0, 0, 1})
			b, _ := onnxio.FromFloat32("b", onnxio.Float, []int64{2}, []float32{0, 1})
			_ = m.SetInitializer(w)
			_ = m.SetInitializer(b)
			m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "n"}, {Value: 2}}})
			if err := m.InsertNodes(
				onnxio.Node{Name: "fc", OpType: "MatMul", Inputs: []string{"x", "w"}, Outputs: []string{"h"}},
				onnxio.Node{Name: "bias", OpType: "Add", Inputs: []string{"h", "b"}, Outputs: []string{"logits"}},
			); err != nil {
				t.Fatal(err)
			}
			m.AddOutput(onnxio.ValueInfo{Name: "logits", DType: onnxio.Float})
			m.RenameInput(tc.from, tc.to)
			ds, err := evalharness.NewDataset(map[string]*evalharness.Array{"x": evalharness.FromFloat32([]int64{2, 2}, []float32{1, 2, 3, 4})}, []int64{0, 1})
			if err != nil {
				t.Fatal(err)
			}
			_, err = fisher.ComputeResult(context.Background(), m, ds, fisher.Options{})
			if !errors.Is(err, autodiff.ErrGraph) || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("err = %v, want autodiff.ErrGraph naming %s", err, tc.mention)
			}
		})
	}
}

// The default parameters are the float initializers but the 0-d ones
// (expression constants such as folded exponents and epsilons); a
// one-element tensor of rank 1 is a parameter, integer tensors are not.
func TestDefaultParamsLeaveOutScalars(t *testing.T) {
	m := onnxio.New("p", 17)
	for _, tc := range []struct {
		name  string
		dt    onnxio.DType
		shape []int64
	}{
		{"W", onnxio.Float, []int64{2, 2}},
		{"exponent", onnxio.Float, []int64{}},
		{"one", onnxio.Float, []int64{1}},
		{"half", onnxio.Float16, []int64{3}},
		{"eps64", onnxio.Double, nil},
		{"axes", onnxio.Int64, []int64{2}},
	} {
		n, _ := onnxio.NumElements(tc.shape)
		var tt *onnxio.Tensor
		var err error
		if tc.dt == onnxio.Int64 {
			tt, err = onnxio.FromInt64(tc.name, tc.dt, tc.shape, make([]int64, n))
		} else {
			tt, err = onnxio.FromFloat32(tc.name, tc.dt, tc.shape, make([]float32, n))
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetInitializer(tt); err != nil {
			t.Fatal(err)
		}
	}
	got, err := fisher.DefaultParams(m)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"W", "one", "half"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("DefaultParams = %v, want %v", got, want)
	}
}
