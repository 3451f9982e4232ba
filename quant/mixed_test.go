package quant

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/internal/pyoracle"
	"github.com/onnxpost/onnxpost/onnxio"
)

// requireORT skips the test when the ONNX Runtime library cannot be loaded.
func requireORT(t *testing.T) {
	t.Helper()
	if err := evalharness.Init(""); err != nil {
		t.Skipf("ONNX Runtime not available: %v", err)
	}
}

// ortRun runs m in ONNX Runtime (CPU, graph optimizations off, so that no
// fusion changes what is compared) and returns its outputs as float64.
func ortRun(t *testing.T, m *onnxio.Model, feeds map[string]*evalharness.Array) [][]float64 {
	t.Helper()
	s, err := evalharness.SessionFromModel(m, evalharness.SessionOptions{Threads: 1, DisableOptimizations: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	outs, err := s.Run(feeds)
	if err != nil {
		t.Fatal(err)
	}
	res := make([][]float64, len(outs))
	for i, o := range outs {
		if res[i], err = o.Float64(); err != nil {
			t.Fatal(err)
		}
	}
	return res
}

// maxRelDiff returns max|a − b| / max|b| over all outputs.
func maxRelDiff(a, b [][]float64) float64 {
	var d, s float64
	for i := range b {
		for j := range b[i] {
			d = math.Max(d, math.Abs(a[i][j]-b[i][j]))
			s = math.Max(s, math.Abs(b[i][j]))
		}
	}
	return d / s
}

// unpackNBits decodes MatMulNBits inputs from the layout of ONNX Runtime's
// contrib op spec (written from the spec, not from MatMulNBits()): B
// uint8 [N, nb, bs·bits/8] with codes low bits first along K; scales
// [N, nb]; zero points uint8 [N, ceil(nb·bits/8)] packed likewise, or the
// default 2^(bits−1) when zp is nil. It returns the float weight [K, N].
func unpackNBits(B []uint8, scales []float32, zp []uint8, k, n, bits, bs int) []float32 {
	nb := (k + bs - 1) / bs
	blob := bs * bits / 8
	zpRow := (nb*bits + 7) / 8
	get := func(buf []uint8, i int) int { // i-th code of a packed buffer
		return int(buf[i*bits/8]>>(uint(i*bits)%8)) & (1<<bits - 1)
	}
	w := make([]float32, k*n)
	for c := 0; c < n; c++ {
		for kk := 0; kk < k; kk++ {
			j := kk / bs
			code := get(B[(c*nb+j)*blob:(c*nb+j+1)*blob], kk%bs)
			z := 1 << (bits - 1)
			if zp != nil {
				z = get(zp[c*zpRow:(c+1)*zpRow], j)
			}
			w[kk*n+c] = float32(code-z) * scales[c*nb+j]
		}
	}
	return w
}

// decodeNBitsNode returns the float weight [K, N] a MatMulNBits node of m
// stands for, and its bits attribute.
func decodeNBitsNode(t *testing.T, m *onnxio.Model, node onnxio.Node) ([]float32, int) {
	t.Helper()
	k, n := int(node.Int("K", 0)), int(node.Int("N", 0))
	bits, bs := int(node.Int("bits", 4)), int(node.Int("block_size", 0))
	bt, err := m.Initializer(node.Inputs[1])
	if err != nil {
		t.Fatal(err)
	}
	nb := (k + bs - 1) / bs
	if want := []int64{int64(n), int64(nb), int64(bs * bits / 8)}; fmt.Sprint(bt.Shape) != fmt.Sprint(want) {
		t.Fatalf("%s: B shape %v, want %v for %d bits", node.Name, bt.Shape, want, bits)
	}
	scales, err := readFloat(m, node.Inputs[2])
	if err != nil {
		t.Fatal(err)
	}
	var zp []uint8
	if node.Input(3) != "" {
		zt, err := m.Initializer(node.Inputs[3])
		if err != nil {
			t.Fatal(err)
		}
		zp = zt.Bytes()
	}
	return unpackNBits(bt.Bytes(), scales, zp, k, n, bits, bs), bits
}

// dequantizedReference returns orig with every weight that q holds as a
// MatMulNBits replaced by the float weight the packed data stands for, and
// checks each node's bits attribute against want (4 when absent).
func dequantizedReference(t *testing.T, orig, q *onnxio.Model, rep *Report, want map[string]int) *onnxio.Model {
	t.Helper()
	ws, err := orig.Weights()
	if err != nil {
		t.Fatal(err)
	}
	transB := map[string]bool{}
	for _, w := range ws {
		transB[w.Name] = w.TransB
	}
	byB := map[string]LayerReport{} // packed initializer → layer
	for _, l := range rep.Layers {
		byB[fmt.Sprintf("%s_Q%d", l.Weight, l.Bits)] = l
	}
	deq := map[string][]float32{}
	for _, node := range q.Nodes() {
		if node.OpType != "MatMulNBits" {
			continue
		}
		l, ok := byB[node.Inputs[1]]
		if !ok {
			t.Fatalf("MatMulNBits %s reads %s, no reported layer", node.Name, node.Inputs[1])
		}
		w, bits := decodeNBitsNode(t, q, node)
		wb, ok := want[l.Weight]
		if !ok {
			wb = 4
		}
		if bits != wb || l.Bits != wb || !strings.HasPrefix(l.Scheme, fmt.Sprintf("int%d ", wb)) {
			t.Errorf("%s: node bits %d, reported %d (%s), want %d", l.Weight, bits, l.Bits, l.Scheme, wb)
		}
		if transB[l.Weight] {
			w = transpose(w, int(node.Int("K", 0)), int(node.Int("N", 0)))
		}
		deq[l.Weight] = w
	}
	if len(deq) != len(rep.Layers) {
		t.Fatalf("%d MatMulNBits nodes for %d reported layers", len(deq), len(rep.Layers))
	}
	return withWeights(t, orig, deq)
}

// One MatMul X [5, 80] · W [80, 24] per width, symmetry and format: ONNX
// Runtime's output equals the float64 product with the dequantized
// weights, and the packed data decodes (by the spec) to those weights.
func TestMixedBitsEachWidthInORT(t *testing.T) {
	requireORT(t)
	const k, n = 80, 24
	rng := rand.New(rand.NewSource(21))
	w := randWeights(rng, k*n, 0.3)
	x := randWeights(rng, 5*k, 1)
	m := onnxio.New("one", 17)
	m.AddInput(onnxio.ValueInfo{Name: "X", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "batch"}, {Value: k}}})
	mustInit(t, m, "W", []int64{k, n}, w)
	if err := m.InsertNodes(onnxio.Node{Name: "mm", OpType: "MatMul", Inputs: []string{"X", "W"}, Outputs: []string{"Y"}}); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "Y", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "batch"}, {Value: n}}})
	feeds := map[string]*evalharness.Array{"X": evalharness.FromFloat32([]int64{5, k}, x)}
	for _, tc := range []struct {
		format string
		bits   int
		sym    bool
		bs     int
	}{
		{"matmulnbits", 2, false, 32}, {"matmulnbits", 2, true, 16},
		{"matmulnbits", 4, false, 16}, {"matmulnbits", 4, true, 32},
		{"matmulnbits", 8, false, 32}, {"matmulnbits", 8, true, 16},
		{"qdq", 4, false, 32}, {"qdq", 8, false, 16}, {"qdq", 8, true, 32},
	} {
		name := fmt.Sprintf("%s-%dbit-sym=%v-bs%d", tc.format, tc.bits, tc.sym, tc.bs)
		t.Run(name, func(t *testing.T) {
			q, rep, err := QuantizeMixed(context.Background(), m, map[string]int{"W": tc.bits}, Options{Format: tc.format, Symmetry: SymmetryOf(tc.sym), BlockSize: tc.bs})
			if err != nil {
				t.Fatal(err)
			}
			b, err := QuantizeRTN(w, k, n, BlockOptions{Bits: tc.bits, BlockSize: tc.bs, Symmetric: tc.sym})
			if err != nil {
				t.Fatal(err)
			}
			deq := b.Dequantize()
			if len(rep.Layers) != 1 || rep.Layers[0].Bits != tc.bits || !strings.Contains(rep.Mode, fmt.Sprintf("%d-bit×1", tc.bits)) {
				t.Fatalf("report %s %+v", rep.Mode, rep.Layers)
			}
			if tc.format == "matmulnbits" {
				nodes := q.Nodes()
				if len(nodes) != 1 || nodes[0].OpType != "MatMulNBits" {
					t.Fatalf("nodes %v", q.OpCounts())
				}
				got, bits := decodeNBitsNode(t, q, nodes[0])
				if bits != tc.bits || RelError(deq, got) != 0 {
					t.Fatalf("packed data decodes to bits %d, rel. difference %g from Dequantize()", bits, RelError(deq, got))
				}
			} else if q.OpCounts()["DequantizeLinear"] != 1 || q.Opsets()[""] != 21 {
				t.Fatalf("ops %v opset %d", q.OpCounts(), q.Opsets()[""])
			}
			ref := make([]float64, 5*n)
			for r := 0; r < 5; r++ {
				for c := 0; c < n; c++ {
					for kk := 0; kk < k; kk++ {
						ref[r*n+c] += float64(x[r*k+kk]) * float64(deq[kk*n+c])
					}
				}
			}
			got := ortRun(t, q, feeds)
			if d := maxRelDiff(got, [][]float64{ref}); d > 1e-5 {
				t.Fatalf("ORT output differs from the float product with the dequantized weights: relative %g", d)
			}
		})
	}
}

// A mixed allocation on the zoo transformer: each MatMul weight gets its
// own width (node attributes), the model passes onnx.checker, and ONNX
// Runtime's outputs equal those of the float model whose weights are the
// decoded packed weights.
func TestMixedBitsZooTransformer(t *testing.T) {
	path := filepath.Join("..", "models", "zoo", "transformer", "base.onnx")
	data := filepath.Join("..", "models", "data", "digits_clean_val.npz")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("zoo model not generated: %v", err)
	}
	requireORT(t)
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := m.Weights()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, w := range ws {
		if w.Role == onnxio.RoleMatMulB && len(w.Shape) == 2 && w.Name != "head.weight" {
			names = append(names, w.Name)
		}
	}
	sort.Strings(names)
	if len(names) < 12 || sort.SearchStrings(names, "blocks.0.q.weight") == len(names) {
		t.Fatalf("zoo transformer weights %v", names)
	}
	bits := map[string]int{}
	for i, name := range names {
		bits[name] = []int{2, 4, 8}[i%3]
	}
	q, rep, err := QuantizeMixed(context.Background(), m, bits, Options{BlockSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	if got := q.OpCounts()["com.microsoft.MatMulNBits"]; got != len(names)+1 {
		t.Fatalf("%d MatMulNBits for %d weights + head: %v", got, len(names), q.OpCounts())
	}
	ref := dequantizedReference(t, m, q, rep, bits)
	ds, err := evalharness.LoadDataset(data)
	if err != nil {
		t.Skipf("zoo dataset: %v", err)
	}
	feeds := map[string]*evalharness.Array{}
	for name, a := range ds.Inputs {
		feeds[name] = a.Slice(0, min(64, ds.N))
	}
	got, want := ortRun(t, q, feeds), ortRun(t, ref, feeds)
	if d := maxRelDiff(got, want); d > 1e-5 {
		t.Errorf("ORT output of the packed model differs from the dequantized float model: relative %g", d)
	}
	// The comparison is not vacuous: 2-bit weights move the outputs away
	// from the original float model.
	flt := ortRun(t, m, feeds)
	if d := maxRelDiff(got, flt); !(d > 1e-3) {
		t.Errorf("mixed 2/4/8-bit model within %g of the float model: were the weights quantized?", d)
	}
	t.Logf("%s: weight bytes %d → %d, mean rel. weight error %.4f, max rel. output diff to dequantized float model %.2g, to original float model %.3g",
		rep.Mode, rep.WeightBytesBefore, rep.WeightBytesAfter, rep.MeanRelError, maxRelDiff(got, want), maxRelDiff(got, flt))
	t.Run("onnx.checker", func(t *testing.T) {
		pyoracle.Python(t)
		dir := t.TempDir()
		var paths []string
		for i, mm := range []*onnxio.Model{q} {
			p := filepath.Join(dir, fmt.Sprintf("mixed%d.onnx", i))
			if err := mm.Save(p, nil); err != nil {
				t.Fatal(err)
			}
			paths = append(paths, p)
		}
		pyoracle.Run(t, "import onnx, sys\nfor p in sys.argv[1:]: onnx.checker.check_model(onnx.load(p), full_check=True)", paths...)
	})
}

// GPTQ with per-weight bits takes each weight's Gram matrix from the
// calibration, quantizes with that weight's width (the packed codes equal
// a direct GPTQ call), and the result runs in ONNX Runtime.
func TestMixedBitsGPTQ(t *testing.T) {
	m := testModel(t, 4, false)
	rng := rand.New(rand.NewSource(5))
	cal := gramFromRows{rows: map[string][]float64{}}
	for _, w := range []string{"W1", "W2", "W3"} {
		x, _ := correlatedInputs(rng, 128, map[string]int{"W1": 64, "W2": 32, "W3": 16}[w])
		cal.rows[w] = x
	}
	bits := map[string]int{"W1": 2, "W3": 8} // W2 (Gemm, transB) keeps 4
	q, rep, err := QuantizeMixed(context.Background(), m, bits, Options{Method: "gptq", BlockSize: 16, Calibration: cal})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range rep.Layers {
		if !strings.Contains(l.Scheme, "gptq") {
			t.Errorf("%s: scheme %s", l.Weight, l.Scheme)
		}
	}
	w1, _ := readFloat(m, "W1")
	xtx, _, _, _ := cal.InputGram("W1")
	direct, _, err := GPTQ(context.Background(), w1, 64, 32, xtx, GPTQOptions{Block: BlockOptions{Bits: 2, BlockSize: 16}})
	if err != nil {
		t.Fatal(err)
	}
	B, _, _ := direct.MatMulNBits()
	packed, err := q.Initializer("W1_Q2")
	if err != nil {
		t.Fatal(err)
	}
	if string(packed.Bytes()) != string(B) {
		t.Fatal("W1's packed codes differ from a direct 2-bit GPTQ")
	}
	ref := dequantizedReference(t, m, q, rep, bits)
	// BitsOnly: W2, absent from the allocation, stays float and the
	// other codes do not change.
	only, orep, err := QuantizeMixed(context.Background(), m, bits, Options{Method: "gptq", BlockSize: 16, Calibration: cal, BitsOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if !only.HasInitializer("W2") || len(orep.Layers) != 2 || q.HasInitializer("W2") {
		t.Fatalf("BitsOnly: %d layers, W2 kept %v (without: %v)", len(orep.Layers), only.HasInitializer("W2"), q.HasInitializer("W2"))
	}
	if p, err := only.Initializer("W1_Q2"); err != nil || string(p.Bytes()) != string(B) {
		t.Fatalf("BitsOnly changed W1's codes: %v", err)
	}
	if got := only.OpCounts(); got["com.microsoft.MatMulNBits"] != 2 || got["Gemm"] != 1 {
		t.Fatalf("BitsOnly ops %v", got)
	}
	requireORT(t)
	x := randWeights(rng, 7*64, 1)
	feeds := map[string]*evalharness.Array{"X": evalharness.FromFloat32([]int64{7, 64}, x)}
	if d := maxRelDiff(ortRun(t, q, feeds), ortRun(t, ref, feeds)); d > 1e-5 {
		t.Errorf("ORT output differs from the dequantized float model: relative %g", d)
	}
}

func TestMixedBitsRefusals(t *testing.T) {
	m := testModel(t, 3, true)
	for _, tc := range []struct {
		name string
		bits map[string]int
		opt  Options
		err  error
		msg  string
	}{
		{"3 bits", map[string]int{"W1": 3}, Options{}, ErrBits, "want 2, 4 or 8"},
		{"16 bits", map[string]int{"W1": 16}, Options{}, ErrBits, "W1"},
		{"2-bit qdq", map[string]int{"W1": 2}, Options{Format: "qdq"}, ErrBits, "opset 25"},
		{"int8 mode", map[string]int{"W1": 4}, Options{Weights: "int8"}, ErrOptions, "int4"},
		{"empty", map[string]int{}, Options{}, ErrOptions, "empty"},
		{"unknown weight", map[string]int{"nope": 4}, Options{}, ErrOptions, "nope (not a MatMul or Gemm weight"},
		{"conv weight", map[string]int{"CW": 4}, Options{}, ErrOptions, "CW (left in float: Conv"},
		{"excluded weight", map[string]int{"W3": 8}, Options{Exclude: regexp.MustCompile("W3")}, ErrOptions, "W3 (left in float: name matches"},
		{"bias", map[string]int{"b2": 8}, Options{}, ErrOptions, "b2"},
		{"BitsOnly without bits", nil, Options{Weights: "int4", BitsOnly: true}, ErrOptions, "BitsOnly"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.bits == nil {
				_, _, err = Quantize(context.Background(), m, tc.opt)
			} else {
				_, _, err = QuantizeMixed(context.Background(), m, tc.bits, tc.opt)
			}
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %v containing %q", err, tc.err, tc.msg)
			}
		})
	}
	// Options.Bits on the other modes is refused by Validate as well.
	if err := (Options{Weights: "fp16", Bits: map[string]int{"W1": 4}}).Validate(); !errors.Is(err, ErrOptions) {
		t.Fatalf("fp16 with Bits: %v", err)
	}
}
