package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

// oneOpModel saves x → op(x, W[, ...]) with W of dtype dt, held in a
// Constant node when constant is set; attrs are the op's attributes.
func oneOpModel(t *testing.T, path, op string, dt onnxio.DType, inShape, wShape, outShape []int64, w []float32, constant bool, attrs ...onnxio.Attr) string {
	t.Helper()
	m := onnxio.New("g", 17)
	wt, err := onnxio.FromFloat32("W", dt, wShape, w)
	if err != nil {
		t.Fatal(err)
	}
	dims := func(s []int64) []onnxio.Dim {
		out := make([]onnxio.Dim, len(s))
		for i, d := range s {
			out[i] = onnxio.Dim{Value: d}
		}
		return out
	}
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: dt, Shape: dims(inShape)})
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: dt, Shape: dims(outShape)})
	var nodes []onnxio.Node
	if constant {
		nodes = append(nodes, onnxio.Node{Name: "c", OpType: "Constant", Outputs: []string{"W"}, Attrs: []onnxio.Attr{onnxio.AttrTensorVal("value", wt)}})
	} else if err := m.SetInitializer(wt); err != nil {
		t.Fatal(err)
	}
	nodes = append(nodes, onnxio.Node{Name: "n", OpType: op, Inputs: []string{"x", "W"}, Outputs: []string{"y"}, Attrs: attrs})
	if err := m.InsertNodes(nodes...); err != nil {
		t.Fatal(err)
	}
	if err := m.Save(path, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

func mergedW(t *testing.T, path string) []float32 {
	t.Helper()
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := m.ConstantOrInitializer("W")
	if err != nil {
		t.Fatal(err)
	}
	v, err := w.Float32()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestMergeWeightsMeaning: merge pairs weights by position and by the
// attributes that give them meaning, checks finiteness after rounding to
// the output dtype, normalizes huge weights correctly, reads Constant-node
// and sparse weights of every model, and refuses subgraph weights.
func TestMergeWeightsMeaning(t *testing.T) {
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	// Gemm B stored [K,N] with transB=0 and its transpose with transB=1:
	// the same function, different storage.
	g0 := oneOpModel(t, p("g0.onnx"), "Gemm", onnxio.Float, []int64{1, 2}, []int64{2, 3}, []int64{1, 3}, []float32{1, 2, 3, 4, 5, 6}, false)
	g1 := oneOpModel(t, p("g1.onnx"), "Gemm", onnxio.Float, []int64{1, 2}, []int64{3, 2}, []int64{1, 3}, []float32{1, 4, 2, 5, 3, 6}, false, onnxio.AttrInt("transB", 1))
	g0sq := oneOpModel(t, p("g0sq.onnx"), "Gemm", onnxio.Float, []int64{1, 2}, []int64{2, 2}, []int64{1, 2}, []float32{1, 2, 3, 4}, false)
	g1sq := oneOpModel(t, p("g1sq.onnx"), "Gemm", onnxio.Float, []int64{1, 2}, []int64{2, 2}, []int64{1, 2}, []float32{1, 3, 2, 4}, false, onnxio.AttrInt("transB", 1))
	c1 := oneOpModel(t, p("c1.onnx"), "Conv", onnxio.Float, []int64{1, 2, 1, 1}, []int64{2, 2, 1, 1}, []int64{1, 2, 1, 1}, []float32{1, 2, 3, 4}, false)
	c2 := oneOpModel(t, p("c2.onnx"), "Conv", onnxio.Float, []int64{1, 4, 1, 1}, []int64{2, 2, 1, 1}, []int64{1, 2, 1, 1}, []float32{1, 2, 3, 4}, false, onnxio.AttrInt("group", 2))
	h1 := oneOpModel(t, p("h1.onnx"), "MatMul", onnxio.Float16, []int64{1, 2}, []int64{2, 1}, []int64{1, 1}, []float32{60000, 1}, false)
	h2 := oneOpModel(t, p("h2.onnx"), "MatMul", onnxio.Float16, []int64{1, 2}, []int64{2, 1}, []int64{1, 1}, []float32{60000, 1}, false)
	f1 := oneOpModel(t, p("f1.onnx"), "MatMul", onnxio.Float, []int64{1, 2}, []int64{2, 1}, []int64{1, 1}, []float32{1, 2}, false)
	f3 := oneOpModel(t, p("f3.onnx"), "MatMul", onnxio.Float, []int64{1, 2}, []int64{2, 1}, []int64{1, 1}, []float32{3, 6}, false)
	k1 := oneOpModel(t, p("k1.onnx"), "MatMul", onnxio.Float, []int64{1, 2}, []int64{2, 1}, []int64{1, 1}, []float32{1, 2}, true)
	k3 := oneOpModel(t, p("k3.onnx"), "MatMul", onnxio.Float, []int64{1, 2}, []int64{2, 1}, []int64{1, 1}, []float32{3, 6}, true)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string    // in stderr
		w    []float32 // merged W when written
	}{
		{"gemm transB mismatch", []string{g0, g1}, 1, "attribute transB 0 vs 1", nil},
		{"gemm transB mismatch square", []string{g0sq, g1sq}, 1, "attribute transB 0 vs 1", nil},
		{"conv group mismatch", []string{c1, c2}, 1, "attribute group 1 vs 2", nil},
		{"fp16 overflow after rounding", []string{h1, h2, "--no-normalize"}, 1, `tensor "W": merged value 0 overflows float16`, nil},
		{"huge weights normalized", []string{f1, f3, "--weights", "1e308,1e308"}, 0, "", []float32{2, 4}},
		{"constant-node weights merged", []string{k1, k3}, 0, "", []float32{2, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := p(strings.ReplaceAll(tc.name, " ", "_") + ".onnx")
			code, stderr := captureRun(t, append(append([]string{"merge", "--method", "linear"}, tc.args...), "-o", out)...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d (want %d), stderr:\n%s\nwant %q", code, tc.code, stderr, tc.want)
			}
			_, err := os.Stat(out)
			if (err == nil) != (tc.code == 0) {
				t.Fatalf("written %v with exit %d", err == nil, code)
			}
			if tc.w != nil {
				got := mergedW(t, out)
				for i := range tc.w {
					if got[i] != tc.w[i] {
						t.Fatalf("merged W %v, want %v", got, tc.w)
					}
				}
			}
		})
	}
}

// TestMergeSubgraphWeights: weights held in or read by If subgraphs, and
// Constant-node weights, are merged in every model (not kept from the
// first).
func TestMergeSubgraphWeights(t *testing.T) {
	dir := t.TempDir()
	in := weightsFixture("if.onnx")
	// the second model: every float weight ×3 (moved to the main graph, the
	// same function of its weights)
	m3, err := onnxio.Load(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := mergeReady([]*onnxio.Model{m3}, []string{in}); err != nil {
		t.Fatal(err)
	}
	orig := map[string][]float32{}
	for _, name := range m3.Initializers() {
		w, err := m3.Initializer(name)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := w.Float32()
		orig[name] = v
		x := make([]float32, len(v))
		for i := range v {
			x[i] = 3 * v[i]
		}
		nt, _ := onnxio.FromFloat32(name, w.DType, w.Shape, x)
		if err := m3.SetInitializer(nt); err != nil {
			t.Fatal(err)
		}
	}
	p3 := filepath.Join(dir, "if3.onnx")
	if err := m3.Save(p3, nil); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "merged.onnx")
	if code, stderr := captureRun(t, "merge", "--method", "linear", in, p3, "-o", out); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	got, err := onnxio.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Wt", "Wo", "Wc", "B"} {
		w, err := got.ConstantOrInitializer(name)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := w.Float32()
		for i := range v {
			if d := v[i] - 2*orig[name][i]; d > 1e-5 || d < -1e-5 {
				t.Fatalf("%s[%d] = %v, want %v", name, i, v[i], 2*orig[name][i])
			}
		}
	}
	checkModelFull(t, out)
}
