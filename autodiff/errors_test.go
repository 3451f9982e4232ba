package autodiff_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/autodiff"
	"github.com/onnxpost/onnxpost/onnxio"
)

// errModel returns x → Atan → Relu → y with every value's info.
func errModel(opset int64) (*onnxio.Model, map[string]autodiff.Info) {
	m := onnxio.New("e", opset)
	x, _ := onnxio.FromFloat32("x", onnxio.Float, []int64{2}, []float32{1, 2})
	i, _ := onnxio.FromInt64("i", onnxio.Int64, []int64{1}, []int64{0})
	_ = m.SetInitializer(x)
	_ = m.SetInitializer(i)
	_ = m.InsertNodes(
		onnxio.Node{Name: "the_atan", OpType: "Atan", Inputs: []string{"x"}, Outputs: []string{"c"}},
		onnxio.Node{Name: "relu", OpType: "Relu", Inputs: []string{"c"}, Outputs: []string{"y"}},
		onnxio.Node{Name: "asin", OpType: "Asin", Inputs: []string{"x"}, Outputs: []string{"unused"}},
	)
	m.SetOutputs([]onnxio.ValueInfo{{Name: "y"}})
	f := autodiff.Info{DType: onnxio.Float, Shape: []int64{2}}
	return m, map[string]autodiff.Info{"c": f, "y": f, "unused": f}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name    string
		opset   int64
		output  string
		params  []string
		drop    string // value removed from the info
		want    error
		mention []string
	}{
		{name: "unsupported op names op and node", opset: 17, output: "y", params: []string{"x"}, want: autodiff.ErrUnsupported, mention: []string{"Atan", "the_atan"}},
		{name: "old opset", opset: 11, output: "y", params: []string{"x"}, want: autodiff.ErrUnsupported, mention: []string{"opset 11"}},
		{name: "integer parameter", opset: 17, output: "y", params: []string{"i"}, want: autodiff.ErrInput, mention: []string{`"i"`}},
		{name: "unknown parameter", opset: 17, output: "y", params: []string{"nope"}, want: autodiff.ErrInput, mention: []string{"nope"}},
		{name: "no parameters", opset: 17, output: "y", want: autodiff.ErrInput},
		{name: "missing info", opset: 17, output: "y", params: []string{"x"}, drop: "y", want: autodiff.ErrInfo, mention: []string{`"y"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, info := errModel(c.opset)
			delete(info, c.drop)
			m.AddInput(onnxio.ValueInfo{Name: "s", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 2}}})
			_, err := autodiff.VJP(m, c.output, "s", c.params, autodiff.Options{Info: info})
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			for _, s := range c.mention {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

// An op off the differentiated path (Asin feeds nothing the output needs)
// needs no rule.
func TestOffPathOpsIgnored(t *testing.T) {
	m, info := errModel(17)
	_ = m.InsertNodes(onnxio.Node{Name: "neg", OpType: "Neg", Inputs: []string{"x"}, Outputs: []string{"z"}})
	info["z"] = info["y"]
	m.AddInput(onnxio.ValueInfo{Name: "s", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 2}}})
	g, err := autodiff.VJP(m, "z", "s", []string{"x"}, autodiff.Options{Info: info})
	if err != nil {
		t.Fatal(err)
	}
	if g["x"] == "" {
		t.Fatal("no gradient for x")
	}
}

// Without a seed, Gradients differentiates the sum of the output:
// d Σ x²/dx = 2x.
func TestGradientsOfSum(t *testing.T) {
	requireORT(t)
	m := onnxio.New("sq", 17)
	x, _ := onnxio.FromFloat32("x", onnxio.Float, []int64{3}, []float32{1, -2, 0.5})
	_ = m.SetInitializer(x)
	m.AddInput(onnxio.ValueInfo{Name: "dummy", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 1}}})
	_ = m.InsertNodes(onnxio.Node{Name: "sq", OpType: "Mul", Inputs: []string{"x", "x"}, Outputs: []string{"y"}})
	m.SetOutputs([]onnxio.ValueInfo{{Name: "y"}})
	info, err := probe(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	g, names, err := autodiff.Gradients(m, "y", "", []string{"x"}, autodiff.Options{Info: info})
	if err != nil {
		t.Fatal(err)
	}
	outs, err := run(g, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := outs[names[0]].Float64()
	want := []float64{2, -4, 1}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("gradient %v, want %v", got, want)
		}
	}
}

// Graphs that are not dataflow graphs (a cycle, a read of a value nothing
// defines) used to panic in ProbeModel (fisher on such a model: exit 2). They
// are ErrGraph naming the nodes, from ProbeModel, VJP and Gradients alike.
func TestInvalidGraphs(t *testing.T) {
	// build makes a valid graph of nodes, then renames the value from to
	// to (RenameInput does not re-sort), which breaks it
	build := func(from, to string, nodes ...onnxio.Node) *onnxio.Model {
		m := onnxio.New("bad", 17)
		for _, name := range []string{"w", "w2"} {
			x, _ := onnxio.FromFloat32(name, onnxio.Float, []int64{2}, []float32{1, 2})
			_ = m.SetInitializer(x)
		}
		m.AddInput(onnxio.ValueInfo{Name: "in", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 2}}})
		m.AddInput(onnxio.ValueInfo{Name: "s", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 2}}})
		if err := m.InsertNodes(nodes...); err != nil {
			t.Fatal(err)
		}
		m.SetOutputs([]onnxio.ValueInfo{{Name: "y", DType: onnxio.Float}})
		m.RenameInput(from, to)
		return m
	}
	cases := []struct {
		name    string
		m       *onnxio.Model
		mention []string
	}{
		{"undefined input", build("w2", "ghost",
			onnxio.Node{Name: "mul", OpType: "Mul", Inputs: []string{"in", "w"}, Outputs: []string{"a"}},
			onnxio.Node{Name: "add", OpType: "Add", Inputs: []string{"a", "w2"}, Outputs: []string{"y"}},
		), []string{`"add" (Add)`, `"ghost"`}},
		{"two-node cycle", build("in", "b",
			onnxio.Node{Name: "first", OpType: "Add", Inputs: []string{"in", "w"}, Outputs: []string{"a"}},
			onnxio.Node{Name: "second", OpType: "Mul", Inputs: []string{"a", "w"}, Outputs: []string{"b"}},
			onnxio.Node{Name: "out", OpType: "Relu", Inputs: []string{"b"}, Outputs: []string{"y"}},
		), []string{"cycle", `"first" (Add)`, `"second" (Mul)`}},
		{"self loop", build("in", "y",
			onnxio.Node{Name: "loop", OpType: "Add", Inputs: []string{"in", "w"}, Outputs: []string{"y"}},
		), []string{"cycle", `"loop" (Add)`}},
		{"unnamed nodes", build("in", "c",
			onnxio.Node{OpType: "Sin", Inputs: []string{"in"}, Outputs: []string{"a"}},
			onnxio.Node{OpType: "Cos", Inputs: []string{"a"}, Outputs: []string{"c"}},
			onnxio.Node{OpType: "Relu", Inputs: []string{"w"}, Outputs: []string{"y"}},
		), []string{"cycle", "(unnamed Sin)", "(unnamed Cos)"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			check := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, autodiff.ErrGraph) {
					t.Fatalf("%s: err = %v, want ErrGraph", what, err)
				}
				for _, s := range c.mention {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("%s: %q does not mention %s", what, err, s)
					}
				}
			}
			_, _, err := autodiff.ProbeModel(c.m)
			check("ProbeModel", err)
			f := autodiff.Info{DType: onnxio.Float, Shape: []int64{2}}
			info := map[string]autodiff.Info{"a": f, "b": f, "c": f, "y": f}
			_, err = autodiff.VJP(c.m, "y", "s", []string{"w"}, autodiff.Options{Info: info})
			check("VJP", err)
			_, _, err = autodiff.Gradients(c.m, "y", "", []string{"w"}, autodiff.Options{Info: info})
			check("Gradients", err)
		})
	}
}
