package quant

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/internal/pyoracle"
	"github.com/onnxpost/onnxpost/onnxio"
)

func mustInit(t testing.TB, m *onnxio.Model, name string, shape []int64, v []float32) {
	t.Helper()
	tt, err := onnxio.FromFloat32(name, onnxio.Float, shape, v)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetInitializer(tt); err != nil {
		t.Fatal(err)
	}
}

// testModel builds X [batch, 64] → MatMul W1 [64, 32] → Relu →
// Gemm (transB) W2 [16, 32] + b2 → Relu → Gemm W3 [16, 10] (beta 0.5) + b3
// → Y, plus a Conv branch when conv is set (X reshaped to [batch, 4, 4, 4]).
func testModel(t testing.TB, seed int64, conv bool) *onnxio.Model {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	m := onnxio.New("test", 17)
	m.AddInput(onnxio.ValueInfo{Name: "X", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "batch"}, {Value: 64}}})
	mustInit(t, m, "W1", []int64{64, 32}, randWeights(rng, 64*32, 0.2))
	mustInit(t, m, "W2", []int64{16, 32}, randWeights(rng, 16*32, 0.2))
	mustInit(t, m, "b2", []int64{16}, randWeights(rng, 16, 0.1))
	mustInit(t, m, "W3", []int64{16, 10}, randWeights(rng, 160, 0.3))
	mustInit(t, m, "b3", []int64{10}, randWeights(rng, 10, 0.1))
	nodes := []onnxio.Node{
		{Name: "mm1", OpType: "MatMul", Inputs: []string{"X", "W1"}, Outputs: []string{"h1"}},
		{Name: "relu1", OpType: "Relu", Inputs: []string{"h1"}, Outputs: []string{"a1"}},
		{Name: "gemm2", OpType: "Gemm", Inputs: []string{"a1", "W2", "b2"}, Outputs: []string{"h2"}, Attrs: []onnxio.Attr{onnxio.AttrInt("transB", 1)}},
		{Name: "relu2", OpType: "Relu", Inputs: []string{"h2"}, Outputs: []string{"a2"}},
		{Name: "gemm3", OpType: "Gemm", Inputs: []string{"a2", "W3", "b3"}, Outputs: []string{"Y"}, Attrs: []onnxio.Attr{onnxio.AttrFloatVal("beta", 0.5)}},
	}
	if conv {
		st, _ := onnxio.FromInt64("shape", onnxio.Int64, []int64{4}, []int64{-1, 4, 4, 4})
		_ = m.SetInitializer(st)
		mustInit(t, m, "CW", []int64{8, 4, 3, 3}, randWeights(rng, 8*4*9, 0.2))
		mustInit(t, m, "CB", []int64{8}, randWeights(rng, 8, 0.1))
		nodes = append(nodes,
			onnxio.Node{Name: "reshape", OpType: "Reshape", Inputs: []string{"X", "shape"}, Outputs: []string{"img"}},
			onnxio.Node{Name: "conv", OpType: "Conv", Inputs: []string{"img", "CW", "CB"}, Outputs: []string{"C"},
				Attrs: []onnxio.Attr{onnxio.AttrIntList("pads", 1, 1, 1, 1)}},
		)
	}
	if err := m.InsertNodes(nodes...); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "Y", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "batch"}, {Value: 10}}})
	if conv {
		m.AddOutput(onnxio.ValueInfo{Name: "C", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "batch"}, {Value: 8}, {Value: 4}, {Value: 4}}})
	}
	return m
}

func TestQuantizeRefusals(t *testing.T) {
	m := testModel(t, 1, false)
	tests := []struct {
		name string
		opt  Options
		want error
	}{
		{"static without calibration", Options{Weights: "int8", Activations: "int8"}, ErrCalibration},
		{"gptq without calibration", Options{Weights: "int4", Method: "gptq"}, ErrCalibration},
		{"block 24", Options{Weights: "int4", BlockSize: 24}, ErrBlockSize},
		{"block 8", Options{Weights: "int4", BlockSize: 8}, ErrBlockSize},
		{"unknown weights", Options{Weights: "int3"}, ErrOptions},
		{"int8 matmulnbits", Options{Weights: "int8", Format: "matmulnbits"}, ErrOptions},
		{"int4 dynamic", Options{Weights: "int4", Activations: "dynamic"}, ErrOptions},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := Quantize(context.Background(), m, tc.opt); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// An already quantized model is refused, naming the ops.
	q, _, err := Quantize(context.Background(), m, Options{Weights: "int4"})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = Quantize(context.Background(), q, Options{Weights: "int8"})
	if !errors.Is(err, ErrAlreadyQuantized) || !strings.Contains(err.Error(), "MatMulNBits") {
		t.Fatalf("re-quantizing: %v", err)
	}
}

func TestQuantizeRewrites(t *testing.T) {
	tests := []struct {
		name      string
		opt       Options
		conv      bool
		wantOps   map[string]int
		absentOps []string
		layers    int
		maxErr    float64
	}{
		{"int8 qdq per-channel", Options{Weights: "int8"}, true,
			map[string]int{"DequantizeLinear": 4, "MatMul": 1, "Gemm": 2, "Conv": 1}, nil, 4, 0.01},
		{"int8 qdq per-tensor asym", Options{Weights: "int8", PerTensor: true, Symmetry: Asymmetric}, false,
			map[string]int{"DequantizeLinear": 3}, nil, 3, 0.02},
		{"int8 dynamic", Options{Weights: "int8", Activations: "dynamic"}, true,
			map[string]int{"DynamicQuantizeLinear": 3, "MatMulInteger": 3, "DequantizeLinear": 1, "Conv": 1}, []string{"MatMul", "Gemm"}, 4, 0.01},
		{"int4 matmulnbits", Options{Weights: "int4", BlockSize: 16}, true,
			map[string]int{"com.microsoft.MatMulNBits": 3, "Add": 2, "Conv": 1}, []string{"MatMul", "Gemm"}, 3, 0.15},
		{"int4 qdq", Options{Weights: "int4", Format: "qdq", Symmetry: Symmetric}, false,
			map[string]int{"DequantizeLinear": 3, "MatMul": 1, "Gemm": 2}, nil, 3, 0.2},
		{"exclude by name and op", Options{Weights: "int8", Symmetry: Asymmetric, Exclude: regexp.MustCompile("^W1$"), ExcludeOps: []string{"Conv"}}, true,
			map[string]int{"DequantizeLinear": 2}, nil, 2, 0.01},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := testModel(t, 2, tc.conv)
			before := m.Clone()
			q, rep, err := Quantize(context.Background(), m, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			if !m.Equal(before) {
				t.Fatal("input model modified")
			}
			ops := q.OpCounts()
			for op, n := range tc.wantOps {
				if ops[op] != n {
					t.Errorf("%s: %d, want %d (ops %v)", op, ops[op], n, ops)
				}
			}
			for _, op := range tc.absentOps {
				if ops[op] != 0 {
					t.Errorf("%s still present: %v", op, ops)
				}
			}
			if len(rep.Layers) != tc.layers {
				t.Fatalf("%d layers reported, want %d: %+v", len(rep.Layers), tc.layers, rep.Skipped)
			}
			for _, l := range rep.Layers {
				if !(l.RelError > 0 && l.RelError < tc.maxErr) || l.ScaleMax < l.ScaleMin || l.Scales == 0 {
					t.Errorf("layer %+v", l)
				}
			}
			if !(rep.WeightBytesAfter < rep.WeightBytesBefore) {
				t.Errorf("bytes %d → %d", rep.WeightBytesBefore, rep.WeightBytesAfter)
			}
			if _, err := q.Bytes(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestFloat16Conversion(t *testing.T) {
	m := testModel(t, 3, true)
	// A weight value beyond the float16 range keeps its tensor (and its
	// consumer) in float32 with fp16, reported; bf16 holds it.
	w, _ := readFloat(m, "W3")
	w[0] = 1e6
	mustInit(t, m, "W3", []int64{16, 10}, w)
	for _, h := range []string{"fp16", "bf16"} {
		q, rep, err := Quantize(context.Background(), m, Options{Weights: h})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Clamped != 0 {
			t.Fatalf("%s: clamped %d, want 0", h, rep.Clamped)
		}
		kept := h == "fp16" && len(rep.Skipped) == 1 && rep.Skipped[0].Name == "W3" && strings.Contains(rep.Skipped[0].Reason, "kept float32")
		if (h == "fp16") != kept {
			t.Fatalf("%s: skipped %+v", h, rep.Skipped)
		}
		for _, name := range []string{"W1", "W2", "W3", "CW"} {
			dt, _, err := q.InitializerInfo(name)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"fp16": "float16", "bf16": "bfloat16"}[h]
			if h == "fp16" && name == "W3" {
				want = "float32"
			}
			if dt.String() != want {
				t.Fatalf("%s: %s is %s", h, name, dt)
			}
		}
		for _, o := range q.Outputs() {
			if o.DType != onnxio.Float {
				t.Fatalf("output %s is %s", o.Name, o.DType)
			}
		}
		wantCasts := 3 // X in, C out, into W3's consumer kept in float32 (it writes Y)
		if h == "bf16" {
			wantCasts = 7 // one per float initializer, compute stays float32
		}
		if q.OpCounts()["Cast"] != wantCasts {
			t.Fatalf("%s: casts %v", h, q.OpCounts())
		}
		slack := int64(64)
		if h == "fp16" {
			slack += 2 * 16 * 10 * 4 // W3 stays float32
		}
		if rep.WeightBytesAfter*2 > rep.WeightBytesBefore+slack {
			t.Fatalf("%s: bytes %d → %d", h, rep.WeightBytesBefore, rep.WeightBytesAfter)
		}
	}
}

// gramFromRows is a calibration over fixed activation rows per weight
// (Gram matrices only).
type gramFromRows struct {
	calib.Missing
	rows map[string][]float64
}

func (g gramFromRows) InputGram(weight string) ([]float64, int, int64, error) {
	x, ok := g.rows[weight]
	if !ok {
		return nil, 0, 0, errors.New("no activations for " + weight)
	}
	d := map[string]int{"W1": 64, "W2": 32, "W3": 16}[weight]
	rows := len(x) / d
	xtx := make([]float64, d*d)
	for r := 0; r < rows; r++ {
		for i := 0; i < d; i++ {
			for j := 0; j < d; j++ {
				xtx[i*d+j] += x[r*d+i] * x[r*d+j]
			}
		}
	}
	return xtx, d, int64(rows), nil
}

func TestQuantizeGPTQUsesCalibration(t *testing.T) {
	m := testModel(t, 4, false)
	rng := rand.New(rand.NewSource(5))
	cal := gramFromRows{rows: map[string][]float64{}}
	for w, d := range map[string]int{"W1": 64, "W2": 32, "W3": 16} {
		x, _ := correlatedInputs(rng, 128, d)
		cal.rows[w] = x
	}
	q, rep, err := Quantize(context.Background(), m, Options{Weights: "int4", Method: "gptq", BlockSize: 16, Calibration: cal})
	if err != nil {
		t.Fatal(err)
	}
	if q.OpCounts()["com.microsoft.MatMulNBits"] != 3 || len(rep.Layers) != 3 || !strings.Contains(rep.Layers[0].Scheme, "gptq") {
		t.Fatalf("report %+v ops %v", rep, q.OpCounts())
	}
	delete(cal.rows, "W2")
	if _, _, err := Quantize(context.Background(), m, Options{Weights: "int4", Method: "gptq", Calibration: cal}); !errors.Is(err, ErrCalibration) {
		t.Fatalf("missing Gram: %v", err)
	}
}

type fixedHist struct{ calib.Missing }

func (fixedHist) ActivationHistogram(string) ([]int64, []float64, error) {
	counts := make([]int64, 100)
	edges := make([]float64, 101)
	for i := range edges {
		edges[i] = -2 + 4*float64(i)/100
	}
	for i := range counts {
		counts[i] = int64(100 - 2*int(math.Abs(float64(i)-49.5)))
	}
	return counts, edges, nil
}

func TestQuantizeStatic(t *testing.T) {
	m := testModel(t, 6, true)
	opt := Options{Weights: "int8", Activations: "int8", Stats: fixedHist{}}
	acts, err := ActivationTensors(m, opt)
	if err != nil {
		t.Fatal(err)
	}
	// Inputs, then outputs that are not graph outputs; h1 and h2 feed
	// only Relus, so they take the ranges of a1 and a2.
	if strings.Join(acts, ",") != "X,a1,a2,img" {
		t.Fatalf("activations %v", acts)
	}
	q, rep, err := Quantize(context.Background(), m, opt)
	if err != nil {
		t.Fatal(err)
	}
	ops := q.OpCounts()
	if ops["QuantizeLinear"] != 6 || ops["DequantizeLinear"] != 10 || len(rep.Activations) != 6 {
		t.Fatalf("ops %v activations %v", ops, rep.Activations)
	}
}

// The oracle: every output passes onnx.checker, loads in ONNX Runtime, and
// weight-only modes equal the float model with the dequantized weights.
const modelOracle = `
import json, sys, numpy as np, onnx, onnxruntime as ort
d = json.load(open(sys.argv[1]))
out = {}
x = np.random.default_rng(0).standard_normal((7, 64)).astype(np.float32)
def run(path, opt=True):
    so = ort.SessionOptions()
    if not opt:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return [o.astype(np.float64) for o in s.run(None, {"X": x})]
for case in d["cases"]:
    m = onnx.load(case["q"])
    onnx.checker.check_model(m, full_check=True)
    q = run(case["q"], case["opt"])
    ref = run(case["ref"])
    flt = run(case["float"])
    out[case["name"]] = {
        "maxdiff": max(float(np.abs(a - b).max()) for a, b in zip(q, ref)),
        "scale": max(float(np.abs(b).max()) for b in ref),
        "cosine": min(float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in zip(q, flt)),
    }
print(json.dumps(out))
`

// withWeights returns a copy of m with the named initializers replaced.
func withWeights(t *testing.T, m *onnxio.Model, ws map[string][]float32) *onnxio.Model {
	c := m.Clone()
	for name, v := range ws {
		dt, shape, err := c.InitializerInfo(name)
		if err != nil || dt != onnxio.Float {
			t.Fatal(name, err)
		}
		mustInit(t, c, name, shape, v)
	}
	return c
}

func TestOracleQuantizedModelsInORT(t *testing.T) {
	pyoracle.Python(t)
	dir := t.TempDir()
	save := func(m *onnxio.Model, name string) string {
		p := filepath.Join(dir, name)
		if err := m.Save(p, nil); err != nil {
			t.Fatal(err)
		}
		return p
	}
	m := testModel(t, 7, true)
	fl := save(m, "float.onnx")
	type cs = map[string]any
	var cases []cs
	// Dequantized weights computed here with the pure functions.
	deq := func(opt Options) map[string][]float32 {
		out := map[string][]float32{}
		for _, name := range []string{"W1", "W2", "W3", "CW"} {
			w, _ := readFloat(m, name)
			dt, shape, _ := m.InitializerInfo(name)
			_ = dt
			switch opt.Weights {
			case "int8":
				axis := -1
				if !opt.PerTensor {
					axis = map[string]int{"W1": 1, "W2": 0, "W3": 1, "CW": 0}[name]
				}
				l, _ := QuantizeLinear(w, ints(shape), LinearOptions{Axis: axis, Symmetric: opt.symmetric()})
				out[name] = l.Dequantize()
			case "int4":
				if name == "CW" {
					continue
				}
				k, n := int(shape[0]), int(shape[1])
				if name == "W2" {
					w = transpose(w, k, n)
					k, n = n, k
				}
				b, _ := QuantizeRTN(w, k, n, BlockOptions{BlockSize: opt.BlockSize, Symmetric: opt.symmetric()})
				d := b.Dequantize()
				if name == "W2" {
					d = transpose(d, k, n)
				}
				out[name] = d
			}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		opt  Options
		// exact: weight-only, compare with the dequantized float model
		exact bool
		// minCos: cosine to the float model (random weights; the static
		// case uses a fixed [-2, 2] histogram for every activation)
		minCos float64
	}{
		{"int8-qdq-pc-sym", Options{Weights: "int8"}, true, 0.999},
		{"int8-qdq-pt-asym", Options{Weights: "int8", PerTensor: true, Symmetry: Asymmetric}, true, 0.999},
		{"int4-nbits-asym", Options{Weights: "int4", BlockSize: 16}, true, 0.95},
		{"int4-nbits-sym", Options{Weights: "int4", BlockSize: 32, Symmetry: Symmetric}, true, 0.95},
		{"int4-qdq-asym", Options{Weights: "int4", Format: "qdq", BlockSize: 16}, true, 0.95},
		{"int8-dynamic", Options{Weights: "int8", Activations: "dynamic"}, false, 0.999},
		{"int8-static", Options{Weights: "int8", Activations: "int8", Stats: fixedHist{}}, false, 0.9},
		{"fp16", Options{Weights: "fp16"}, false, 0.99999},
		{"bf16", Options{Weights: "bf16"}, false, 0.9999},
	} {
		q, _, err := Quantize(context.Background(), m, tc.opt)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		qp := save(q, tc.name+".onnx")
		ref := fl
		if tc.exact {
			ref = save(withWeights(t, m, deq(tc.opt)), tc.name+".ref.onnx")
		}
		// Without graph optimizations, so that ORT's own fusions (which
		// quantize activations, e.g. DQ+MatMul → MatMulNBits with
		// accuracy_level 4) do not change what is compared.
		cases = append(cases, cs{"name": tc.name, "q": qp, "ref": ref, "float": fl, "opt": !tc.exact, "mincos": tc.minCos})
	}
	// A model that declares value_info (float32) for its intermediate
	// values: fp16 conversion must not contradict it.
	inferred := filepath.Join(dir, "inferred.onnx")
	pyoracle.Run(t, "import onnx, sys; onnx.save(onnx.shape_inference.infer_shapes(onnx.load(sys.argv[1])), sys.argv[2])", fl, inferred)
	im, err := onnxio.Load(inferred)
	if err != nil {
		t.Fatal(err)
	}
	if vi, ok := im.ValueInfo("h1"); !ok || vi.DType != onnxio.Float {
		t.Fatalf("shape inference gave no value_info for h1: %+v", vi)
	}
	iq, _, err := Quantize(context.Background(), im, Options{Weights: "fp16"})
	if err != nil {
		t.Fatal(err)
	}
	cases = append(cases, cs{"name": "fp16-value-info", "q": save(iq, "inferred_fp16.onnx"), "ref": fl, "float": fl, "opt": true, "mincos": 0.99999})

	var got map[string]struct{ Maxdiff, Scale, Cosine float64 }
	runOracle(t, modelOracle, map[string]any{"cases": cases}, &got)
	for _, c := range cases {
		name := c["name"].(string)
		r := got[name]
		exact := c["ref"].(string) != fl
		if exact && r.Maxdiff > 1e-5*(1+r.Scale) {
			t.Errorf("%s: ORT output differs from the float model on dequantized weights by %g", name, r.Maxdiff)
		}
		if r.Cosine < c["mincos"].(float64) {
			t.Errorf("%s: cosine to the float model %g", name, r.Cosine)
		}
		t.Logf("%s: max |q − ref| %.3g, cosine to float %.6f", name, r.Maxdiff, r.Cosine)
	}
}

func TestQuantizeFoldsConstantWeights(t *testing.T) {
	m := onnxio.New("const", 17)
	m.AddInput(onnxio.ValueInfo{Name: "X", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "batch"}, {Value: 32}}})
	w, err := onnxio.FromFloat32("", onnxio.Float, []int64{32, 4}, randWeights(rand.New(rand.NewSource(9)), 128, 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.InsertNodes(
		onnxio.Node{Name: "c", OpType: "Constant", Outputs: []string{"W"}, Attrs: []onnxio.Attr{onnxio.AttrTensorVal("value", w)}},
		onnxio.Node{Name: "mm", OpType: "MatMul", Inputs: []string{"X", "W"}, Outputs: []string{"Y"}},
	); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "Y", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "batch"}, {Value: 4}}})
	q, rep, err := Quantize(context.Background(), m, Options{Weights: "int4", BlockSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	if q.OpCounts()["com.microsoft.MatMulNBits"] != 1 || q.OpCounts()["Constant"] != 0 || len(rep.Layers) != 1 {
		t.Fatalf("ops %v skipped %v", q.OpCounts(), rep.Skipped)
	}
	// what to calibrate is listed from the folded model Quantize
	// quantizes (static int8 on the PaddleOCR exports, whose weights are
	// all Constant nodes, failed with "no histogram collected for x"),
	// and m keeps its Constant node
	acts, err := ActivationTensors(m, Options{Weights: "int8", Activations: "int8", Stats: fixedHist{}})
	if err != nil || strings.Join(acts, ",") != "X" {
		t.Fatalf("activations %v, %v; want X", acts, err)
	}
	gw, err := GramWeights(m, Options{Weights: "int4", Method: "gptq"})
	if err != nil || strings.Join(gw, ",") != "W" {
		t.Fatalf("Gram weights %v, %v; want W", gw, err)
	}
	if m.OpCounts()["Constant"] != 1 {
		t.Fatal("listing the calibration targets folded the caller's Constant node")
	}
	if _, _, err := Quantize(context.Background(), m, Options{Weights: "int8", Activations: "int8", Stats: fixedHist{}}); err != nil {
		t.Fatalf("static int8 of a Constant weight: %v", err)
	}
}

func TestInt4BlockShrinksToK(t *testing.T) {
	m := testModel(t, 10, false) // K = 64, 32, 16
	q, rep, err := Quantize(context.Background(), m, Options{Weights: "int4", BlockSize: 128})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"W1": "block 64 ", "W2": "block 32 ", "W3": "block 16 "}
	for _, l := range rep.Layers {
		if !strings.Contains(l.Scheme, want[l.Weight]) {
			t.Errorf("%s: %s, want %s", l.Weight, l.Scheme, want[l.Weight])
		}
	}
	// Same numbers as the long block (one block over all of K).
	w, _ := readFloat(m, "W1")
	long, _ := QuantizeRTN(w, 64, 32, BlockOptions{BlockSize: 128})
	short, _ := QuantizeRTN(w, 64, 32, BlockOptions{BlockSize: 64})
	if RelError(long.Dequantize(), short.Dequantize()) != 0 {
		t.Fatal("block 64 and 128 differ on K = 64")
	}
	if !(rep.WeightBytesAfter < 64*32/2+32*16/2+16*10/2+1000) {
		t.Fatalf("weight bytes %d", rep.WeightBytesAfter)
	}
	_ = q
}

func TestUnnamedNodes(t *testing.T) {
	m := onnxio.New("unnamed", 17)
	m.AddInput(onnxio.ValueInfo{Name: "X", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "batch"}, {Value: 16}}})
	mustInit(t, m, "W", []int64{16, 4}, randWeights(rand.New(rand.NewSource(15)), 64, 1))
	if err := m.InsertNodes(onnxio.Node{OpType: "MatMul", Inputs: []string{"X", "W"}, Outputs: []string{"H"}},
		onnxio.Node{OpType: "Relu", Inputs: []string{"H"}, Outputs: []string{"Y"}}); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "Y", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "batch"}, {Value: 4}}})
	opt := Options{Weights: "int8", Activations: "int8", Stats: fixedHist{}}
	acts, err := ActivationTensors(m, opt)
	if err != nil || strings.Join(acts, ",") != "X,Y" {
		t.Fatalf("activations %v, %v", acts, err)
	}
	gw, err := GramWeights(m, Options{Weights: "int4"})
	if err != nil || len(gw) != 1 || gw[0] != "W" {
		t.Fatalf("Gram weights %v, %v", gw, err)
	}
	if _, _, err := Quantize(context.Background(), m, opt); err != nil {
		t.Fatal(err)
	}
}

func TestOpsetRefusals(t *testing.T) {
	// Opset 17 with a ReduceMean (axes attribute): blocked int4 QDQ would
	// need opset 21, where ReduceMean takes axes as an input.
	m := testModel(t, 12, false)
	if err := m.InsertNodes(onnxio.Node{Name: "rm", OpType: "ReduceMean", Inputs: []string{"a1"}, Outputs: []string{"mean"},
		Attrs: []onnxio.Attr{onnxio.AttrIntList("axes", 1)}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Quantize(context.Background(), m, Options{Weights: "int4", Format: "qdq"}); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "ReduceMean") {
		t.Fatalf("int4 qdq on opset 17 with ReduceMean: %v", err)
	}
	if _, _, err := Quantize(context.Background(), m, Options{Weights: "int4"}); err != nil {
		t.Fatalf("MatMulNBits needs no opset change: %v", err)
	}
	// Without ReduceMean the opset is raised to 21 (IR ≥ 10).
	q, _, err := Quantize(context.Background(), testModel(t, 12, false), Options{Weights: "int4", Format: "qdq"})
	if err != nil || q.Opsets()[""] != 21 || q.IRVersion() < 10 {
		t.Fatalf("opset %v IR %d: %v", q.Opsets(), q.IRVersion(), err)
	}
	old := onnxio.New("old", 11)
	old.AddInput(onnxio.ValueInfo{Name: "X", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 1}, {Value: 4}}})
	mustInit(t, old, "W", []int64{4, 2}, []float32{1, 2, 3, 4, 5, 6, 7, 8})
	if err := old.InsertNodes(onnxio.Node{Name: "mm", OpType: "MatMul", Inputs: []string{"X", "W"}, Outputs: []string{"Y"}}); err != nil {
		t.Fatal(err)
	}
	old.AddOutput(onnxio.ValueInfo{Name: "Y", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 1}, {Value: 2}}})
	// Per channel upgrades opset 11 to 13 (nothing else to convert here);
	// below 11 it is refused with advice other than per-tensor.
	if q, rep, err := Quantize(context.Background(), old, Options{Weights: "int8", Symmetry: Asymmetric}); err != nil || q.Opsets()[""] != 13 || len(rep.Notes) != 1 {
		t.Fatalf("per-channel on opset 11: %v", err)
	}
	older := old.Clone()
	older.SetOpset("", 10)
	if _, _, err := Quantize(context.Background(), older, Options{Weights: "int8", Symmetry: Asymmetric}); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "convert the model to opset 13") {
		t.Fatalf("per-channel on opset 10: %v", err)
	}
	if _, _, err := Quantize(context.Background(), old, Options{Weights: "int8", PerTensor: true, Symmetry: Asymmetric}); err != nil {
		t.Fatalf("per-tensor on opset 11: %v", err)
	}
}
