package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/internal/pyoracle"
	"github.com/onnxpost/onnxpost/onnxio"
)

// weightsFixture is a model of onnxio/testdata/weights (gen.py there).
func weightsFixture(name string) string {
	return filepath.Join("..", "..", "onnxio", "testdata", "weights", name)
}

// checkModelFull runs onnx.checker.check_model(full_check=True) on path
// when the oracle Python is available.
func checkModelFull(t *testing.T, path string) {
	t.Helper()
	if os.Getenv("ONNXPOST_PYTHON") == "" {
		return
	}
	pyoracle.Run(t, "import sys, onnx; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)", path)
}

// TestWeightsEverywhereCLI: weights in subgraphs, sparse initializers and
// already-quantized weights are transformed (int8 weight-only QDQ of
// subgraph weights) or refused by name; a command
// that can rewrite none of them exits 1 with "nothing to transform";
// Constant-node weights are factorized by lowrank. Every written model
// passes onnx.checker's full check.
func TestWeightsEverywhereCLI(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		args  []string
		code  int
		wants []string
	}{
		{"int8 if", []string{"quantize", weightsFixture("if.onnx")}, 0,
			[]string{"weights: 2112 → 1072 bytes"}},
		{"dynamic if", []string{"quantize", weightsFixture("if.onnx"), "--activations", "dynamic"}, 0,
			[]string{"skipped Wo: read inside subgraph if0.else_branch; quantize does not rewrite it", "skipped Wt: held in subgraph if0.then_branch"}},
		{"lowrank constant weight", []string{"lowrank", weightsFixture("if.onnx"), "--rank", "2"}, 0,
			[]string{"1 factorized", "skipped Wt: held in subgraph if0.then_branch; lowrank does not rewrite it"}},
		{"sparsify if", []string{"sparsify", weightsFixture("if.onnx"), "--sparsity", "0.5"}, 0, []string{"total: 384 of 768 weights zero"}},
		{"int8 loop", []string{"quantize", weightsFixture("loop.onnx")}, 0, []string{"weights: 1032 → 344 bytes"}},
		{"int4 loop", []string{"quantize", weightsFixture("loop.onnx"), "--weights", "int4", "--block", "16"}, 1, []string{"nothing to transform", "Wl: read inside subgraph loop.body"}},
		{"dynamic loop", []string{"quantize", weightsFixture("loop.onnx"), "--activations", "dynamic"}, 1, []string{"nothing to transform"}},
		{"lowrank loop", []string{"lowrank", weightsFixture("loop.onnx"), "--rank", "2"}, 1, []string{"nothing to transform", "Wl: read inside subgraph loop.body"}},
		{"sparsify loop", []string{"sparsify", weightsFixture("loop.onnx"), "--sparsity", "0.5"}, 0, []string{"total: 128 of 256 weights zero"}},
		{"lowrank quantized", []string{"lowrank", weightsFixture("quantized.onnx"), "--rank", "2"}, 1,
			[]string{"nothing to transform", "Wq: already quantized (DequantizeLinear)", "Wk: already quantized (Cast→Mul)"}},
		{"sparsify quantized", []string{"sparsify", weightsFixture("quantized.onnx"), "--sparsity", "0.5"}, 1, []string{"Wk: already quantized (Cast→Mul)"}},
		{"int4 quantized", []string{"quantize", weightsFixture("quantized.onnx"), "--weights", "int4"}, 1, []string{"already quantized"}},
		{"int8 cast+mul", []string{"quantize", weightsFixture("castmul.onnx")}, 1, []string{"nothing to transform", "Wk: already quantized (Cast→Mul)"}},
		{"int4 cast+mul", []string{"quantize", weightsFixture("castmul.onnx"), "--weights", "int4"}, 1, []string{"nothing to transform", "Wk: already quantized (Cast→Mul)"}},
		{"dynamic cast+mul", []string{"quantize", weightsFixture("castmul.onnx"), "--activations", "dynamic"}, 1, []string{"Wk: already quantized (Cast→Mul)"}},
		{"int8 sparse", []string{"quantize", weightsFixture("sparse.onnx")}, 1, []string{"nothing to transform", "Ws: a sparse_initializer"}},
		{"lowrank sparse", []string{"lowrank", weightsFixture("sparse.onnx"), "--rank", "2"}, 1, []string{"Ws: a sparse_initializer"}},
		{"fp16 loop", []string{"quantize", weightsFixture("loop.onnx"), "--weights", "fp16"}, 0, []string{"float16 (stored; computed in float32 in loop.body)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".onnx")
			code, stderr := captureRun(t, append(tc.args, "-o", out)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.code, stderr)
			}
			for _, w := range tc.wants {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			_, err := os.Stat(out)
			if (err == nil) != (tc.code == 0) {
				t.Fatalf("written: %v, exit %d", err == nil, code)
			}
			if tc.code == 0 {
				checkModelFull(t, out)
			}
		})
	}
}

// TestInspectCountsEveryWeight: inspect counts weights in subgraphs,
// sparse initializers and already-quantized weights, and says where they
// live.
func TestInspectCountsEveryWeight(t *testing.T) {
	for _, tc := range []struct {
		file   string
		params int64
		where  map[string]string
	}{
		{"if.onnx", 784, map[string]string{"Wo": "read inside subgraph if0.else_branch", "Wt": "held in subgraph if0.then_branch", "Wc": ""}},
		{"loop.onnx", 256, map[string]string{"Wl": "read inside subgraph loop.body"}},
		{"quantized.onnx", 514, map[string]string{"Wq": "already quantized (DequantizeLinear)", "Wk": "already quantized (Cast→Mul)"}},
		{"sparse.onnx", 256, map[string]string{"Ws": "a sparse_initializer"}},
	} {
		m := loadFixtureModel(t, weightsFixture(tc.file))
		r, err := buildInspect(m)
		if err != nil {
			t.Fatal(err)
		}
		if r.Params != tc.params {
			t.Errorf("%s: %d parameters, want %d", tc.file, r.Params, tc.params)
		}
		for _, w := range r.Weights {
			if want, ok := tc.where[w.Name]; ok && w.Where != want {
				t.Errorf("%s: %s where %q, want %q", tc.file, w.Name, w.Where, want)
			}
			if w.Op == "(unused)" {
				t.Errorf("%s: %s unused", tc.file, w.Name)
			}
		}
	}
}

func loadFixtureModel(t *testing.T, path string) *onnxio.Model {
	t.Helper()
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestWeightInputDropped: a weight that is also a graph input is removed
// from the inputs when a transform rewrites it (the output must not
// require an input "W"); a transform that keeps it (same name and dtype)
// keeps the input.
func TestWeightInputDropped(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		args    []string
		dropped bool
	}{
		{"int8", []string{"quantize"}, true},
		{"int4", []string{"quantize", "--weights", "int4"}, true},
		{"fp16", []string{"quantize", "--weights", "fp16"}, true},
		{"lowrank", []string{"lowrank", "--rank", "8"}, true},
		{"sparsify", []string{"sparsify", "--sparsity", "0.5"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.name+".onnx")
			code, stderr := captureRun(t, append(append(tc.args, weightsFixture("weight_input.onnx")), "-o", out)...)
			if code != 0 {
				t.Fatalf("exit %d:\n%s", code, stderr)
			}
			if got := strings.Contains(stderr, "removed graph input W"); got != tc.dropped {
				t.Errorf("removal reported %v, want %v:\n%s", got, tc.dropped, stderr)
			}
			s, err := evalharness.NewSessionFromFile(out, evalharness.SessionOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var names []string
			for _, in := range s.Inputs() {
				names = append(names, in.Name)
			}
			// a W left as an input without its initializer would be required
			if strings.Join(names, ",") != "x" {
				t.Errorf("required inputs %v, want x", names)
			}
			checkModelFull(t, out)
		})
	}
}

// TestInt8PerChannelOldOpset: per-channel int8 on an opset-12 model
// upgrades it to opset 13 (attribute axes become inputs) and keeps its
// accuracy; a Softmax whose meaning changed in opset 13 is refused by name
// with advice that is not "use per-tensor".
func TestInt8PerChannelOldOpset(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "q.onnx")
	code, stderr := captureRun(t, "quantize", weightsFixture("opset12.onnx"), "-o", out)
	if code != 0 || !strings.Contains(stderr, "note: ai.onnx opset 12 → 13 for per-channel DequantizeLinear (attribute → input: ReduceSum×1, Split×1, Squeeze×1, Unsqueeze×1)") {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	m, err := onnxio.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if v := m.Opsets()[""]; v != 13 {
		t.Fatalf("opset %d", v)
	}
	x := make([]float32, 3*16)
	for i := range x {
		x[i] = float32(i%9)*0.3 - 1
	}
	in := map[string]*evalharness.Array{"x": f32Array([]int64{3, 16}, x)}
	for k := 0; k < 2; k++ {
		ref, got := runOutput(t, weightsFixture("opset12.onnx"), in, k), runOutput(t, out, in, k)
		if c := cosine(ref, got); !(c > 0.99) {
			t.Errorf("output %d: cosine %v", k, c)
		}
	}
	checkModelFull(t, out)

	// bf16 needs opset 13 too (Cast from bfloat16)
	outB := filepath.Join(dir, "b.onnx")
	code, stderr = captureRun(t, "quantize", "--weights", "bf16", weightsFixture("opset12.onnx"), "-o", outB)
	if code != 0 || !strings.Contains(stderr, "note: ai.onnx opset 12 → 13 for bfloat16 weights") {
		t.Fatalf("bf16: exit %d:\n%s", code, stderr)
	}
	checkModelFull(t, outB)

	out2 := filepath.Join(dir, "q2.onnx")
	code, stderr = captureRun(t, "quantize", weightsFixture("opset12_softmax3d.onnx"), "-o", out2)
	if code != 1 || !strings.Contains(stderr, `Softmax "softmax" has axis 1`) || !strings.Contains(stderr, "convert the model to opset 13") {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	if _, err := os.Stat(out2); err == nil {
		t.Fatal("written")
	}
}

// TestInt8SubgraphWeights: int8 weight-only QDQ quantizes the weights If
// and Loop subgraphs read (held there or in the main graph) and the result
// tracks the float model.
func TestInt8SubgraphWeights(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	h := make([]float32, 32)
	for i := range h {
		h[i] = float32(i%5)*0.1 - 0.2
	}
	for _, tc := range []struct {
		file   string
		inputs map[string]*evalharness.Array
	}{
		{"if.onnx", map[string]*evalharness.Array{"x": f32Array([]int64{2, 16}, h), "c": {DType: onnxio.Bool, Shape: []int64{1}, Data: []byte{1}}}},
		{"if.onnx", map[string]*evalharness.Array{"x": f32Array([]int64{2, 16}, h), "c": {DType: onnxio.Bool, Shape: []int64{1}, Data: []byte{0}}}},
		{"loop.onnx", map[string]*evalharness.Array{"x": f32Array([]int64{2, 16}, h)}},
	} {
		out := filepath.Join(dir, tc.file)
		if code, stderr := captureRun(t, "quantize", weightsFixture(tc.file), "-o", out); code != 0 {
			t.Fatalf("%s: exit %d\n%s", tc.file, code, stderr)
		}
		m, err := onnxio.Load(out)
		if err != nil {
			t.Fatal(err)
		}
		ws, err := m.AllWeights()
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range ws {
			if w.Role == onnxio.RoleMatMulB && !w.Quantized {
				t.Errorf("%s: %s not quantized (%s)", tc.file, w.Name, w.Special())
			}
		}
		if c := cosine(runFirst(t, weightsFixture(tc.file), tc.inputs), runFirst(t, out, tc.inputs)); !(c > 0.999) {
			t.Errorf("%s: cosine %v", tc.file, c)
		}
	}
}

// TestConvertExternalConstantWeights: convert --external-data moves
// weights held in Constant nodes to the data file.
func TestConvertExternalConstantWeights(t *testing.T) {
	dir := t.TempDir()
	v := make([]float32, 64*64)
	for i := range v {
		v[i] = float32(i%11) - 5
	}
	in := oneOpModel(t, filepath.Join(dir, "c.onnx"), "MatMul", onnxio.Float, []int64{1, 64}, []int64{64, 64}, []int64{1, 64}, v, true)
	out := filepath.Join(dir, "ext.onnx")
	if code, stderr := captureRun(t, "convert", in, "--external-data", "-o", out); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	files, err := onnxio.DataFiles(out)
	if err != nil || len(files) != 1 {
		t.Fatalf("data files %v, %v; want one", files, err)
	}
	ds, err := os.Stat(filepath.Join(dir, files[0]))
	if err != nil {
		t.Fatalf("no data file: %v", err)
	}
	if st.Size() > 2048 || ds.Size() < 64*64*4 {
		t.Fatalf("model %d bytes, data %d bytes", st.Size(), ds.Size())
	}
	m, err := onnxio.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	w, err := m.ConstantOrInitializer("W")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := w.Float32()
	for i := range v {
		if got[i] != v[i] {
			t.Fatalf("W[%d] = %v, want %v", i, got[i], v[i])
		}
	}
}

// TestInt4QDQOldOpset: int4 QDQ raises an opset-12 model to 21 through the
// opset-13 conversion (attribute axes become inputs); the result loads.
func TestInt4QDQOldOpset(t *testing.T) {
	requireORT(t)
	out := filepath.Join(t.TempDir(), "q4.onnx")
	code, stderr := captureRun(t, "quantize", weightsFixture("opset12.onnx"), "--weights", "int4", "--format", "qdq", "--block", "16", "-o", out)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	m, err := onnxio.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if v := m.Opsets()[""]; v != 21 {
		t.Fatalf("opset %d", v)
	}
	checkModelFull(t, out)
}

// TestInspectCountsIntegerOpWeights: int8 weights consumed directly by
// MatMulInteger (a dynamically quantized model) are counted with their
// float parameter count and marked already quantized.
func TestInspectCountsIntegerOpWeights(t *testing.T) {
	requireORT(t)
	out := filepath.Join(t.TempDir(), "dyn.onnx")
	if code, stderr := captureRun(t, "quantize", "--activations", "dynamic", weightsFixture("weight_input.onnx"), "-o", out); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	r, err := buildInspect(loadFixtureModel(t, out))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, w := range r.Weights {
		if w.Op == "MatMulInteger" && w.Role == onnxio.RoleMatMulB {
			found = true
			if w.Params != 64*64 || w.Where != "already quantized (MatMulInteger)" || !w.Quantized {
				t.Errorf("%+v", w)
			}
		}
	}
	if !found {
		t.Fatalf("no MatMulInteger weight listed: %+v", r.Weights)
	}
}

// TestFloat16ConstantWeights: fp16 converts weights held in Constant nodes
// (every paddle2onnx export) instead of reporting nothing to transform.
func TestFloat16ConstantWeights(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	v := make([]float32, 16*16)
	for i := range v {
		v[i] = float32(i%7) - 3
	}
	in := oneOpModel(t, filepath.Join(dir, "c.onnx"), "MatMul", onnxio.Float, []int64{1, 16}, []int64{16, 16}, []int64{1, 16}, v, true)
	out := filepath.Join(dir, "c16.onnx")
	if code, stderr := captureRun(t, "quantize", in, "--weights", "fp16", "-o", out); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	m := loadFixtureModel(t, out)
	w, err := m.ConstantOrInitializer("W")
	if err != nil {
		t.Fatal(err)
	}
	if w.DType != onnxio.Float16 {
		t.Fatalf("W is %v, want float16", w.DType)
	}
	checkModelFull(t, out)
}
