package onnxio

import (
	"flag"
	"math/rand"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// fixtureOpts varies the kitchen-sink fixture.
type fixtureOpts struct {
	prefix string // prepended to every tensor and node name
	hidden int64  // width of the first MatMul (default 16)
	extra  bool   // add a trailing Relu node
	seed   int64
}

// kitchenSink builds, with the public API only, a model that holds every
// kind of weight Weights knows: MatMul B and its bias Add, Gemm with transB
// 0 and 1 and C, LayerNormalization and BatchNormalization parameters, a
// Constant weight, weights reached through Transpose, Cast,
// DequantizeLinear and Identity, a Gather embedding, grouped Conv and
// ConvTranspose with biases.
func kitchenSink(t testing.TB, o fixtureOpts) *Model {
	t.Helper()
	if o.hidden == 0 {
		o.hidden = 16
	}
	p := o.prefix
	rng := rand.New(rand.NewSource(o.seed + 1))
	m := New(p+"kitchen", 21)
	f := func(name string, dt DType, shape ...int64) *Tensor {
		n, _ := NumElements(shape)
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
			if name == "bn_var" {
				v[i] = 0.5 + v[i]*v[i] // a variance: positive
			}
		}
		tt, err := FromFloat32(p+name, dt, shape, v)
		if err != nil {
			t.Fatal(err)
		}
		return tt
	}
	h := o.hidden
	inits := []*Tensor{
		f("W1", Float, 8, h), f("b1", Float, h),
		f("W2", Float, 4, h), f("b2", Float, 4),
		f("W3", Float, 4, 6), f("b3", Float, 6),
		f("ln_scale", Float, 6), f("ln_bias", Float, 6),
		f("Wt", Float, 5, 6),
		f("Wh", Float16, 5, 5),
		f("Wq", Int8, 5, 3), f("Wq_scale", Float, 3), f("Wq_zp", Int8, 3),
		f("Wi", Float, 3, 3),
		f("emb", Float, 10, 4),
		f("Wc", Float, 8, 2, 3, 3), f("bc", Float, 8),
		f("bn_scale", Float, 8), f("bn_bias", Float, 8), f("bn_mean", Float, 8), f("bn_var", Float, 8),
		f("Wct", Float, 8, 4, 2, 2), f("bct", Float, 8),
	}
	for _, it := range inits {
		if err := m.SetInitializer(it); err != nil {
			t.Fatal(err)
		}
	}
	m.AddInput(ValueInfo{Name: p + "X", DType: Float, Shape: []Dim{{Param: "batch"}, {Value: 8}}})
	m.AddInput(ValueInfo{Name: p + "ids", DType: Int64, Shape: []Dim{{Param: "batch"}, {Value: 3}}})
	m.AddInput(ValueInfo{Name: p + "img", DType: Float, Shape: []Dim{{Param: "batch"}, {Value: 4}, {Value: 8}, {Value: 8}}})
	cw := f("cW", Float, 6, 6)
	n := func(op, name string, in, out []string, attrs ...Attr) Node {
		for i := range in {
			if in[i] != "" {
				in[i] = p + in[i]
			}
		}
		for i := range out {
			out[i] = p + out[i]
		}
		return Node{Name: p + name, OpType: op, Inputs: in, Outputs: out, Attrs: attrs}
	}
	nodes := []Node{
		n("MatMul", "mm1", []string{"X", "W1"}, []string{"h1"}),
		n("Add", "add1", []string{"h1", "b1"}, []string{"h2"}),
		n("Gemm", "gemm_t", []string{"h2", "W2", "b2"}, []string{"h3"}, AttrInt("transB", 1)),
		n("Gemm", "gemm_n", []string{"h3", "W3", "b3"}, []string{"h4"}, AttrInt("transB", 0)),
		n("LayerNormalization", "ln", []string{"h4", "ln_scale", "ln_bias"}, []string{"h5"}, AttrInt("axis", -1)),
		n("Constant", "const", nil, []string{"cW"}, AttrTensorVal("value", cw)),
		n("MatMul", "mm_const", []string{"h5", "cW"}, []string{"h6"}),
		n("Transpose", "tr", []string{"Wt"}, []string{"WtT"}, AttrIntList("perm", 1, 0)),
		n("MatMul", "mm_tr", []string{"h6", "WtT"}, []string{"h7"}),
		n("Cast", "cast", []string{"Wh"}, []string{"Wh32"}, AttrInt("to", int64(Float))),
		n("MatMul", "mm_cast", []string{"h7", "Wh32"}, []string{"h8"}),
		n("DequantizeLinear", "dq", []string{"Wq", "Wq_scale", "Wq_zp"}, []string{"Wdq"}, AttrInt("axis", 1)),
		n("MatMul", "mm_dq", []string{"h8", "Wdq"}, []string{"h9"}),
		n("Identity", "id", []string{"Wi"}, []string{"Wid"}),
		n("MatMul", "mm_id", []string{"h9", "Wid"}, []string{"Y"}),
		n("Gather", "gather", []string{"emb", "ids"}, []string{"E"}, AttrInt("axis", 0)),
		n("Conv", "conv", []string{"img", "Wc", "bc"}, []string{"c1"}, AttrInt("group", 2), AttrIntList("kernel_shape", 3, 3), AttrIntList("pads", 1, 1, 1, 1)),
		n("BatchNormalization", "bn", []string{"c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"}, []string{"c2"}),
		n("ConvTranspose", "convt", []string{"c2", "Wct", "bct"}, []string{"C"}, AttrInt("group", 2), AttrIntList("strides", 2, 2)),
	}
	if o.extra {
		nodes = append(nodes, n("Relu", "relu", []string{"Y"}, []string{"Yr"}))
	}
	if err := m.InsertNodes(nodes...); err != nil {
		t.Fatal(err)
	}
	batch := Dim{Param: "batch"}
	m.AddOutput(ValueInfo{Name: p + "Y", DType: Float, Shape: []Dim{batch, {Value: 3}}})
	m.AddOutput(ValueInfo{Name: p + "E", DType: Float, Shape: []Dim{batch, {Value: 3}, {Value: 4}}})
	m.AddOutput(ValueInfo{Name: p + "C", DType: Float, Shape: []Dim{batch, {Value: 8}, {Value: 16}, {Value: 16}}})
	return m
}

// TestSeedModel keeps testdata/kitchen.onnx (a fuzz seed and a fixture for
// other packages) equal to what kitchenSink builds; -update rewrites it.
func TestSeedModel(t *testing.T) {
	path := "testdata/kitchen.onnx"
	m := kitchenSink(t, fixtureOpts{})
	if *update {
		if err := m.Save(path, &SaveOptions{External: ExternalNever}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Load(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestSeedModel -update)", err)
	}
	if !got.Equal(m) {
		t.Error("testdata/kitchen.onnx differs from kitchenSink (run go test -run TestSeedModel -update)")
	}
}
