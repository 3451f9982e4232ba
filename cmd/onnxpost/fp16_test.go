package main

import (
	"encoding/binary"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

func f32Array(shape []int64, v []float32) *evalharness.Array {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return &evalharness.Array{DType: onnxio.Float, Shape: shape, Data: b}
}

// runFirst runs the model at path on inputs and returns its first output.
func runFirst(t *testing.T, path string, inputs map[string]*evalharness.Array) []float64 {
	t.Helper()
	return runOutput(t, path, inputs, 0)
}

// runOutput runs the model at path on inputs and returns output k.
func runOutput(t *testing.T, path string, inputs map[string]*evalharness.Array, k int) []float64 {
	t.Helper()
	s, err := evalharness.NewSessionFromFile(path, evalharness.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.Run(inputs)
	if err != nil {
		t.Fatal(err)
	}
	v, err := out[k].Float64()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func cosine(a, b []float64) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += a[i] * b[i]
		aa += a[i] * a[i]
		bb += b[i] * b[i]
	}
	return ab / math.Sqrt(aa*bb)
}

// bnModel is Conv → BatchNormalization whose variance (9.8e7) and mean lie
// far beyond the float16 range, → Resize ×2 (scales input).
func bnModel(t *testing.T, path string) string {
	t.Helper()
	m := onnxio.New("g", 17)
	add := func(name string, shape []int64, v []float32) {
		tt, err := onnxio.FromFloat32(name, onnxio.Float, shape, v)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetInitializer(tt); err != nil {
			t.Fatal(err)
		}
	}
	w := make([]float32, 2*2*3*3)
	for i := range w {
		w[i] = float32(i%5) * 300
	}
	add("W", []int64{2, 2, 3, 3}, w)
	add("scale", []int64{2}, []float32{1, 2})
	add("bias", []int64{2}, []float32{0.5, -0.5})
	add("mean", []int64{2}, []float32{7e4, 1e3})
	add("var", []int64{2}, []float32{9.8e7, 4e6})
	add("scales", []int64{4}, []float32{1, 1, 2, 2})
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 1}, {Value: 2}, {Value: 4}, {Value: 4}}})
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 1}, {Value: 2}, {Value: 8}, {Value: 8}}})
	err := m.InsertNodes(
		onnxio.Node{Name: "conv", OpType: "Conv", Inputs: []string{"x", "W"}, Outputs: []string{"c"}, Attrs: []onnxio.Attr{onnxio.AttrIntList("pads", 1, 1, 1, 1)}},
		onnxio.Node{Name: "bn", OpType: "BatchNormalization", Inputs: []string{"c", "scale", "bias", "mean", "var"}, Outputs: []string{"b"}},
		onnxio.Node{Name: "resize", OpType: "Resize", Inputs: []string{"b", "", "scales"}, Outputs: []string{"y"}},
	)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Save(path, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestFloat16KeepsWhatItCannotRepresent: fp16 keeps out-of-range weights
// (BatchNormalization statistics) in float32 with their consumers and
// reports them, never converts Resize scales (also with the block list
// replaced), keeps --exclude'd weights float32, and keeps If/Loop nodes
// and what their subgraphs read in float32: every output loads and tracks
// the float model.
func TestFloat16KeepsWhatItCannotRepresent(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	bn := bnModel(t, filepath.Join(dir, "bn.onnx"))
	x := make([]float32, 32)
	for i := range x {
		x[i] = float32(i%7) - 3
	}
	bnIn := map[string]*evalharness.Array{"x": f32Array([]int64{1, 2, 4, 4}, x)}
	h := make([]float32, 32)
	for i := range h {
		h[i] = float32(i%5) * 0.1
	}
	ifIn := map[string]*evalharness.Array{"x": f32Array([]int64{2, 16}, h), "c": {DType: onnxio.Bool, Shape: []int64{1}, Data: []byte{0}}}
	loopIn := map[string]*evalharness.Array{"x": f32Array([]int64{2, 16}, h)}
	untypedIn := map[string]*evalharness.Array{"x": f32Array([]int64{2, 16}, h), "c": {DType: onnxio.Bool, Shape: []int64{}, Data: []byte{1}}}
	for _, tc := range []struct {
		name   string
		model  string
		inputs map[string]*evalharness.Array
		args   []string
		want   []string
		float  []string // initializers that must stay float32
	}{
		{"batchnorm variance", bn, bnIn, nil, []string{"skipped var: kept float32 with its consumers: values up to 9.8e+07"}, []string{"var", "mean", "scales"}},
		{"block list replaced", bn, bnIn, []string{"--exclude-ops", "Pow"}, nil, []string{"scales"}},
		{"exclude by name", bn, bnIn, []string{"--exclude", "^W$"}, []string{"skipped W: kept float32: name matches the exclude pattern"}, []string{"W"}},
		{"if subgraphs", weightsFixture("if.onnx"), ifIn, nil, []string{"float16 (stored; computed in float32 in if0.else_branch)"}, nil},
		{"loop subgraph", weightsFixture("loop.onnx"), loopIn, nil, []string{"float16 (stored; computed in float32 in loop.body)"}, nil},
		{"subgraph weight excluded", weightsFixture("loop.onnx"), loopIn, []string{"--exclude", "^Wl$"}, []string{"skipped Wl: kept float32: name matches the exclude pattern"}, []string{"Wl"}},
		// value_info declares the float32 scale and bias of a Cast+Mul
		// dequantized weight: the written model must not contradict it.
		{"declared weights", weightsFixture("fp16_valueinfo.onnx"), loopIn, nil, nil, nil},
		// The If's branches declare no output type; its Unsqueeze'd output
		// meets the converted x·W in an Add, which must stay float32.
		{"untyped If output", weightsFixture("if_untyped.onnx"), untypedIn, nil, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".onnx")
			code, stderr := captureRun(t, append(append([]string{"quantize", "--weights", "fp16", tc.model}, tc.args...), "-o", out, "--allow-noop")...)
			if code != 0 {
				t.Fatalf("exit %d:\n%s", code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if tc.args == nil && strings.Contains(stderr, "does not rewrite") {
				t.Errorf("a weight left unconverted:\n%s", stderr)
			}
			m, err := onnxio.Load(out)
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range tc.float {
				if dt, _, err := m.InitializerInfo(name); err != nil || dt != onnxio.Float {
					t.Errorf("%s: %v %v, want float32", name, dt, err)
				}
			}
			ref, got := runFirst(t, tc.model, tc.inputs), runFirst(t, out, tc.inputs)
			if c := cosine(ref, got); !(c > 0.999) {
				t.Errorf("cosine %v to the float model", c)
			}
			checkModelFull(t, out)
		})
	}
}
