package evaltest

import (
	"errors"
	"slices"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

// run builds a one-node model (inputs a, b as given, constants as
// initializers) and returns its output y.
func run(t *testing.T, node onnxio.Node, feed map[string]*evalharness.Array, inits ...*onnxio.Tensor) *evalharness.Array {
	t.Helper()
	m := onnxio.New("g", 17)
	for _, it := range inits {
		if err := m.SetInitializer(it); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range feed {
			if !yield(k) {
				return
			}
		}
	}) {
		m.AddInput(onnxio.ValueInfo{Name: name, DType: feed[name].DType})
	}
	node.Outputs = []string{"y"}
	if err := m.InsertNodes(node); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "y"})
	b, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(evalharness.OpenRequest{Model: b}, evalharness.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.Run(feed)
	if err != nil {
		t.Fatal(err)
	}
	return out[0]
}

func f64(t *testing.T, a *evalharness.Array) []float64 {
	t.Helper()
	v, err := a.Float64()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestOps checks each op against values worked out by hand.
func TestOps(t *testing.T) {
	a := evalharness.FromFloat32([]int64{2, 3}, []float32{1, 2, 3, 4, 5, 6})
	col := evalharness.FromFloat32([]int64{2, 1}, []float32{10, 20})
	i64 := func(name string, v ...int64) *onnxio.Tensor {
		tt, _ := onnxio.FromInt64(name, onnxio.Int64, []int64{int64(len(v))}, v)
		return tt
	}
	w, _ := onnxio.FromFloat32("w", onnxio.Float, []int64{3, 2}, []float32{1, 0, 0, 1, 1, 1})
	cases := []struct {
		name  string
		node  onnxio.Node
		feed  map[string]*evalharness.Array
		inits []*onnxio.Tensor
		shape []int64
		want  []float64
	}{
		{"Add broadcasts", onnxio.Node{OpType: "Add", Inputs: []string{"a", "b"}}, map[string]*evalharness.Array{"a": a, "b": col}, nil,
			[]int64{2, 3}, []float64{11, 12, 13, 24, 25, 26}},
		{"MatMul", onnxio.Node{OpType: "MatMul", Inputs: []string{"a", "w"}}, map[string]*evalharness.Array{"a": a}, []*onnxio.Tensor{w},
			[]int64{2, 2}, []float64{4, 5, 10, 11}},
		{"Gemm transB", onnxio.Node{OpType: "Gemm", Inputs: []string{"a", "a"}, Attrs: []onnxio.Attr{onnxio.AttrInt("transB", 1)}}, map[string]*evalharness.Array{"a": a}, nil,
			[]int64{2, 2}, []float64{14, 32, 32, 77}},
		{"Transpose", onnxio.Node{OpType: "Transpose", Inputs: []string{"a"}}, map[string]*evalharness.Array{"a": a}, nil,
			[]int64{3, 2}, []float64{1, 4, 2, 5, 3, 6}},
		{"ReduceSum axis 0 keepdims", onnxio.Node{OpType: "ReduceSum", Inputs: []string{"a", "ax"}}, map[string]*evalharness.Array{"a": a}, []*onnxio.Tensor{i64("ax", 0)},
			[]int64{1, 3}, []float64{5, 7, 9}},
		{"ReduceSum all, no keepdims", onnxio.Node{OpType: "ReduceSum", Inputs: []string{"a"}, Attrs: []onnxio.Attr{onnxio.AttrInt("keepdims", 0)}}, map[string]*evalharness.Array{"a": a}, nil,
			nil, []float64{21}},
		{"Reshape 0 and -1", onnxio.Node{OpType: "Reshape", Inputs: []string{"a", "s"}}, map[string]*evalharness.Array{"a": a}, []*onnxio.Tensor{i64("s", 0, -1, 1)},
			[]int64{2, 3, 1}, []float64{1, 2, 3, 4, 5, 6}},
		{"Shape", onnxio.Node{OpType: "Shape", Inputs: []string{"a"}}, map[string]*evalharness.Array{"a": a}, nil,
			[]int64{2}, []float64{2, 3}},
		{"Concat axis 1", onnxio.Node{OpType: "Concat", Inputs: []string{"a", "b"}, Attrs: []onnxio.Attr{onnxio.AttrInt("axis", 1)}}, map[string]*evalharness.Array{"a": a, "b": col}, nil,
			[]int64{2, 4}, []float64{1, 2, 3, 10, 4, 5, 6, 20}},
		{"NonZero", onnxio.Node{OpType: "NonZero", Inputs: []string{"a"}}, map[string]*evalharness.Array{"a": evalharness.FromFloat32([]int64{2, 2}, []float32{0, 1, 2, 0})}, nil,
			[]int64{2, 2}, []float64{0, 1, 1, 0}},
		{"Softmax", onnxio.Node{OpType: "Softmax", Inputs: []string{"a"}}, map[string]*evalharness.Array{"a": evalharness.FromFloat32([]int64{1, 2}, []float32{0, 0})}, nil,
			[]int64{1, 2}, []float64{0.5, 0.5}},
		{"Gather axis 1", onnxio.Node{OpType: "Gather", Inputs: []string{"a", "i"}, Attrs: []onnxio.Attr{onnxio.AttrInt("axis", 1)}}, map[string]*evalharness.Array{"a": a}, []*onnxio.Tensor{i64("i", 2, 0)},
			[]int64{2, 2}, []float64{3, 1, 6, 4}},
		{"Flatten", onnxio.Node{OpType: "Flatten", Inputs: []string{"a"}}, map[string]*evalharness.Array{"a": evalharness.FromFloat32([]int64{2, 1, 2}, []float32{1, 2, 3, 4})}, nil,
			[]int64{2, 2}, []float64{1, 2, 3, 4}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.node.Name = "n"
			got := run(t, c.node, c.feed, c.inits...)
			if !slices.Equal(got.Shape, c.shape) && !(len(got.Shape) == 0 && c.shape == nil) {
				t.Fatalf("shape %v, want %v", got.Shape, c.shape)
			}
			if v := f64(t, got); !slices.Equal(v, c.want) {
				t.Fatalf("%v, want %v", v, c.want)
			}
		})
	}
}

// TestUnsupportedOp: an op the interpreter lacks is refused when the
// session opens, and a Recorder records requests, runs and closes.
func TestUnsupportedOp(t *testing.T) {
	m := onnxio.New("g", 17)
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float})
	if err := m.InsertNodes(onnxio.Node{Name: "c", OpType: "Cos", Inputs: []string{"x"}, Outputs: []string{"y"}}); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "y"})
	if _, err := evalharness.OpenModel(m, nil, evalharness.SessionOptions{Open: Open}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Cos: %v", err)
	}
	var r Recorder
	r.Fail = errors.New("boom")
	if _, err := evalharness.OpenModel(m, []string{"y"}, evalharness.SessionOptions{Open: r.Open}); err == nil || err.Error() != "boom" {
		t.Fatalf("Fail: %v", err)
	}
	if reqs := r.Requests(); len(reqs) != 1 || !slices.Equal(reqs[0].Outputs, []string{"y"}) {
		t.Fatalf("requests %+v", reqs)
	}
}
