package autodiff_test

import (
	"fmt"
	"math"
	"math/rand"
	"testing"

	"github.com/onnxpost/onnxpost/autodiff"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

// peCase is a graph with one example input "x" ([batch, shape...]) whose
// per-example gradients are compared with ordinary gradients computed one
// example at a time.
type peCase struct {
	name    string
	shape   []int64 // x's shape without the batch axis
	gen     func(*rand.Rand, int) []float64
	intMax  int64 // x is int64 in [0, intMax) when > 0
	tensors []tensorSpec
	nodes   []onnxio.Node
}

func peCases() []peCase {
	return []peCase{
		{name: "Add/bias+pos", shape: []int64{3, 4}, tensors: []tensorSpec{p("b", 4), p("pos", 1, 3, 4)}, nodes: []onnxio.Node{
			nd("Add", []string{"x", "b"}, []string{"h"}), nd("Add", []string{"h", "pos"}, []string{"h2"}), nd("Tanh", []string{"h2"}, []string{"y"})}},
		{name: "Mul/Sub/Div/Pow", shape: []int64{4}, gen: positive, tensors: []tensorSpec{p("s", 4), p("c", 1), pg("d", positive, 4), pg("e", positive, 1)}, nodes: []onnxio.Node{
			nd("Mul", []string{"x", "s"}, []string{"a"}), nd("Sub", []string{"a", "c"}, []string{"b"}), nd("Div", []string{"b", "d"}, []string{"q"}),
			nd("Pow", []string{"x", "e"}, []string{"pw"}), nd("Add", []string{"q", "pw"}, []string{"y"})}},
		{name: "MatMul/2d", shape: []int64{5}, tensors: []tensorSpec{p("w", 5, 3)}, nodes: one("MatMul", []string{"x", "w"})},
		{name: "MatMul/3d", shape: []int64{2, 5}, tensors: []tensorSpec{p("w", 5, 3)}, nodes: one("MatMul", []string{"x", "w"})},
		{name: "MatMul/4d", shape: []int64{2, 2, 5}, tensors: []tensorSpec{p("w", 5, 3)}, nodes: one("MatMul", []string{"x", "w"})},
		{name: "MatMul/param-left", shape: []int64{5, 2}, tensors: []tensorSpec{p("w", 3, 5)}, nodes: one("MatMul", []string{"w", "x"})},
		{name: "MatMul/transposed-weight", shape: []int64{5}, tensors: []tensorSpec{p("w", 3, 5)}, nodes: []onnxio.Node{
			nd("Transpose", []string{"w"}, []string{"wt"}, ail("perm", 1, 0)), nd("MatMul", []string{"x", "wt"}, []string{"y"})}},
		{name: "Gemm", shape: []int64{5}, tensors: []tensorSpec{p("w", 3, 5), p("c", 3)}, nodes: one("Gemm", []string{"x", "w", "c"}, ai("transB", 1), af("alpha", 0.5), af("beta", 1.5))},
		{name: "Gemm/noTrans", shape: []int64{5}, tensors: []tensorSpec{p("w", 5, 3), p("c", 1, 3)}, nodes: one("Gemm", []string{"x", "w", "c"})},
		{name: "Conv/group-stride-dilation", shape: []int64{4, 7, 6}, tensors: []tensorSpec{p("w", 6, 2, 3, 2), p("b", 6)},
			nodes: one("Conv", []string{"x", "w", "b"}, ai("group", 2), ail("strides", 2, 1), ail("pads", 1, 0, 2, 1), ail("dilations", 1, 2))},
		{name: "Conv/plain+relu+pool", shape: []int64{2, 6, 6}, tensors: []tensorSpec{p("w", 3, 2, 3, 3)}, nodes: []onnxio.Node{
			nd("Conv", []string{"x", "w"}, []string{"c"}, ail("pads", 1, 1, 1, 1)), nd("Relu", []string{"c"}, []string{"r"}),
			nd("MaxPool", []string{"r"}, []string{"y"}, ail("kernel_shape", 2, 2), ail("strides", 2, 2))}},
		{name: "LayerNormalization", shape: []int64{3, 8}, tensors: []tensorSpec{p("s", 8), p("b", 8)}, nodes: one("LayerNormalization", []string{"x", "s", "b"})},
		{name: "BatchNormalization", shape: []int64{3, 4, 4}, tensors: []tensorSpec{p("s", 3), p("b", 3), p("m", 3), pg("v", positive, 3)},
			nodes: one("BatchNormalization", []string{"x", "s", "b", "m", "v"})},
		{name: "Gather/embedding", shape: []int64{3}, intMax: 7, tensors: []tensorSpec{p("emb", 7, 4)}, nodes: one("Gather", []string{"emb", "x"})},
		{name: "MLP", shape: []int64{6}, tensors: []tensorSpec{p("w1", 8, 6), p("b1", 8), p("w2", 4, 8), p("b2", 4)}, nodes: []onnxio.Node{
			nd("Gemm", []string{"x", "w1", "b1"}, []string{"h"}, ai("transB", 1)), nd("Relu", []string{"h"}, []string{"r"}),
			nd("Gemm", []string{"r", "w2", "b2"}, []string{"z"}, ai("transB", 1)), nd("LogSoftmax", []string{"z"}, []string{"y"})}},
	}
}

func (c peCase) model(t *testing.T) (*onnxio.Model, []string) {
	t.Helper()
	dt := onnxio.Float
	if c.intMax > 0 {
		dt = onnxio.Int64
	}
	dims := []onnxio.Dim{{Param: "batch"}}
	for _, d := range c.shape {
		dims = append(dims, onnxio.Dim{Value: d})
	}
	g := gradCase{name: c.name, tensors: c.tensors, nodes: c.nodes, inputs: []onnxio.ValueInfo{{Name: "x", DType: dt, Shape: dims}}}
	return g.build(t, onnxio.Float, 3)
}

func (c peCase) input(r *rand.Rand, batch int) *evalharness.Array {
	shape := append([]int64{int64(batch)}, c.shape...)
	n, _ := onnxio.NumElements(shape)
	if c.intMax > 0 {
		v := make([]int64, n)
		for i := range v {
			v[i] = r.Int63n(c.intMax)
		}
		return evalharness.FromInt64(shape, v)
	}
	g := c.gen
	if g == nil {
		g = normal
	}
	f := g(r, int(n))
	v := make([]float32, n)
	for i := range f {
		v[i] = float32(f[i])
	}
	return evalharness.FromFloat32(shape, v)
}

func TestPerExampleMatchesOneByOne(t *testing.T) {
	requireORT(t)
	const batch = 3
	for _, c := range peCases() {
		t.Run(c.name, func(t *testing.T) {
			m, params := c.model(t)
			r := rand.New(rand.NewSource(5))
			x := c.input(r, batch)
			info1, err := probe(m, map[string]*evalharness.Array{"x": x.Slice(0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			info2, err := probe(m, map[string]*evalharness.Array{"x": x.Slice(0, 2)})
			if err != nil {
				t.Fatal(err)
			}
			yi := info1["y"]
			yshape := append([]int64{batch}, yi.Shape[1:]...)
			ny, _ := onnxio.NumElements(yshape)
			sv := normal(r, int(ny))
			s32 := make([]float32, len(sv))
			for i := range sv {
				s32[i] = float32(sv[i])
			}
			seed := evalharness.FromFloat32(yshape, s32)

			// per-example graph, one run over the batch
			pm := m.Clone()
			sd := make([]onnxio.Dim, len(yshape))
			for i := range sd {
				sd[i] = onnxio.Dim{Value: -1}
			}
			pm.AddInput(onnxio.ValueInfo{Name: "seed", DType: onnxio.Float, Shape: sd})
			grads, err := autodiff.VJP(pm, "y", "seed", params, autodiff.Options{Info: info1, Info2: info2, PerExample: true})
			if err != nil {
				t.Fatal(err)
			}
			var outs []onnxio.ValueInfo
			for _, p := range params {
				outs = append(outs, onnxio.ValueInfo{Name: grads[p]})
			}
			pm.SetOutputs(outs)
			per, err := run(pm, map[string]*evalharness.Array{"x": x, "seed": seed})
			if err != nil {
				t.Fatal(err)
			}
			// ordinary gradients, one example at a time
			om, names, err := autodiff.Gradients(m, "y", "seed", params, autodiff.Options{Info: info1})
			if err != nil {
				t.Fatal(err)
			}
			for j, p := range params {
				pa := per[grads[p]]
				if pa.Shape[0] != batch {
					t.Fatalf("%s: per-example gradient shape %v", p, pa.Shape)
				}
				pv, _ := pa.Float64()
				stride := len(pv) / batch
				worst, scale := 0.0, 1e-6
				for i := 0; i < batch; i++ {
					o, err := run(om, map[string]*evalharness.Array{"x": x.Slice(int64(i), int64(i)+1), "seed": seed.Slice(int64(i), int64(i)+1)})
					if err != nil {
						t.Fatal(err)
					}
					ov, _ := o[names[j]].Float64()
					if len(ov) != stride {
						t.Fatalf("%s: %d elements per example, want %d", p, stride, len(ov))
					}
					for k := range ov {
						scale = math.Max(scale, math.Abs(ov[k]))
						worst = math.Max(worst, math.Abs(ov[k]-pv[i*stride+k]))
					}
				}
				if worst/scale > 1e-5 {
					t.Errorf("%s: per-example gradient differs from the one-example gradient: max abs diff %.3g (scale %.3g)", p, worst, scale)
				}
			}
		})
	}
}

func TestPerExampleRejectsMovedBatchAxis(t *testing.T) {
	requireORT(t)
	c := peCase{name: "moved", shape: []int64{4}, tensors: []tensorSpec{p("w", 4, 3)}, nodes: []onnxio.Node{
		nd("Transpose", []string{"x"}, []string{"xt"}, ail("perm", 1, 0)),
		nd("Transpose", []string{"xt"}, []string{"xtt"}, ail("perm", 1, 0)),
		nd("Unsqueeze", []string{"xtt", "ax0"}, []string{"u"}),
		nd("MatMul", []string{"u", "w"}, []string{"y"}),
	}}
	c.tensors = append(c.tensors, ci("ax0", 0))
	m, params := c.model(t)
	r := rand.New(rand.NewSource(1))
	x := c.input(r, 2)
	info1, err := probe(m, map[string]*evalharness.Array{"x": x.Slice(0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	info2, err := probe(m, map[string]*evalharness.Array{"x": x})
	if err != nil {
		t.Fatal(err)
	}
	m.AddInput(onnxio.ValueInfo{Name: "seed", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: -1}}})
	_, err = autodiff.VJP(m, "y", "seed", params, autodiff.Options{Info: info1, Info2: info2, PerExample: true})
	if err == nil {
		t.Fatal("VJP accepted a graph whose examples leave axis 0")
	}
	t.Log(err)
	_ = fmt.Sprint
}
