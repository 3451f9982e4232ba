package quant

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

func loadWeightsFixture(t *testing.T, name string) *onnxio.Model {
	t.Helper()
	m, err := onnxio.Load(filepath.Join("..", "onnxio", "testdata", "weights", name))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestFloat16DeclaredWeights: float32 initializers that value_info declares
// (sk, B of an int8 Cast+Mul weight, as torch.onnx's dynamo exporter writes
// them) are converted under new names, so that no declaration says float32
// of a float16 tensor; the consumers read the new names.
func TestFloat16DeclaredWeights(t *testing.T) {
	m := loadWeightsFixture(t, "fp16_valueinfo.onnx")
	q, _, err := Quantize(context.Background(), m, Options{Weights: "fp16"})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sk", "B"} {
		if q.HasInitializer(name) {
			t.Errorf("%s still stored under its declared name", name)
		}
		h := name + "_float16"
		if dt, _, err := q.InitializerInfo(h); err != nil || dt != onnxio.Float16 {
			t.Errorf("%s: %v %v, want float16", h, dt, err)
		}
	}
	for _, name := range q.Initializers() {
		dt, _, _ := q.InitializerInfo(name)
		if vi, ok := q.ValueInfo(name); ok && vi.DType != dt {
			t.Errorf("initializer %s is %v, declared %v", name, dt, vi.DType)
		}
	}
	reads := map[string]bool{}
	for _, n := range q.Nodes() {
		for _, in := range n.Inputs {
			reads[in] = true
		}
	}
	if !reads["sk_float16"] || !reads["B_float16"] || reads["sk"] || reads["B"] {
		t.Errorf("node inputs %v", reads)
	}
}

// TestFloat16UntypedValuesStayFloat32: a node reading a value of unknown
// element type (an If whose branches declare none, through an Unsqueeze
// whose int64 axes must not lend it their type) computes in float32, with a
// Cast back to float32 of its converted input.
func TestFloat16UntypedValuesStayFloat32(t *testing.T) {
	m := loadWeightsFixture(t, "if_untyped.onnx")
	q, _, err := Quantize(context.Background(), m, Options{Weights: "fp16"})
	if err != nil {
		t.Fatal(err)
	}
	producer := map[string]onnxio.Node{}
	for _, n := range q.Nodes() {
		for _, o := range n.Outputs {
			producer[o] = n
		}
	}
	add, err := q.Node("add")
	if err != nil {
		t.Fatal(err)
	}
	if add.Input(0) != "u" {
		t.Errorf("add reads %v, want u unchanged", add.Inputs)
	}
	c := producer[add.Input(1)]
	if c.OpType != "Cast" || onnxio.DType(c.Int("to", 0)) != onnxio.Float {
		t.Errorf("add's second input %s comes from %s %v, want a Cast to float32", add.Input(1), c.OpType, c.Attrs)
	}
	if dt, _, err := q.InitializerInfo("W"); err != nil || dt != onnxio.Float16 {
		t.Errorf("W: %v %v, want float16", dt, err)
	}
}
