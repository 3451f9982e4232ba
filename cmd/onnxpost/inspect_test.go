package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/internal/pyoracle"
	"github.com/onnxpost/onnxpost/onnxio"
)

// zooModel loads models/zoo/<arch>/base.onnx or skips when the zoo is absent.
func zooModel(t *testing.T, arch string) (*onnxio.Model, string) {
	t.Helper()
	path := filepath.Join(pyoracle.RepoRoot(), "models", "zoo", arch, "base.onnx")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("zoo model %s absent (make zoo)", path)
	}
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return m, path
}

// layerWant is what inspect and Weights must say about one zoo weight.
type layerWant struct {
	op, role    string
	transB      bool
	out, in     int
	group       int64
	outSize, k  int64 // units along the output axis, reduction size
	isParameter bool
}

func checkZoo(t *testing.T, m *onnxio.Model, want map[string]layerWant, chain []string) {
	t.Helper()
	r, err := buildInspect(m)
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]inspectWeight{}
	for _, w := range r.Weights {
		roles[w.Name] = w
	}
	ws, err := m.WeightMap()
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != len(want) || len(r.Weights) != len(want) {
		t.Errorf("%d weights (inspect %d), want %d", len(ws), len(r.Weights), len(want))
	}
	var params int64
	for name, w := range want {
		iw, ok := roles[name]
		if !ok {
			t.Errorf("inspect does not list %s", name)
			continue
		}
		if iw.Op != w.op || iw.Role != w.role {
			t.Errorf("inspect %s: op %s role %s, want %s %s", name, iw.Op, iw.Role, w.op, w.role)
		}
		g := ws[name]
		if g.TransB != w.transB || g.OutAxis != w.out || g.InAxis != w.in || g.Group != w.group {
			t.Errorf("%s: transB %v out %d in %d group %d, want %v %d %d %d", name, g.TransB, g.OutAxis, g.InAxis, g.Group, w.transB, w.out, w.in, w.group)
			continue
		}
		if g.OutAxis >= 0 && g.Shape[g.OutAxis] != w.outSize {
			t.Errorf("%s %v: %d output units, want %d", name, g.Shape, g.Shape[g.OutAxis], w.outSize)
		}
		if g.ReductionSize() != w.k {
			t.Errorf("%s %v: reduction size %d, want %d", name, g.Shape, g.ReductionSize(), w.k)
		}
		params += g.Params()
	}
	if r.Params != params {
		t.Errorf("inspect params %d, weights sum to %d", r.Params, params)
	}
	// layouts chain: each layer's output units feed the next one's reduction
	// (per input channel for convolutions).
	for i := 1; i < len(chain); i++ {
		a, b := ws[chain[i-1]], ws[chain[i]]
		outA := a.Shape[a.OutAxis]
		inB := b.Shape[b.InAxis]
		if outA != inB && b.ReductionSize()%outA != 0 {
			t.Errorf("%s has %d outputs but %s reduces over %d (%v)", a.Name, outA, b.Name, inB, b.Shape)
		}
	}
	// the JSON keys of docs/ARCHITECTURE.md §4
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	json.Unmarshal(b, &top)
	for _, k := range []string{"ir_version", "opsets", "inputs", "outputs", "ops", "weights", "params", "bytes"} {
		if _, ok := top[k]; !ok {
			t.Errorf("inspect JSON lacks %q", k)
		}
	}
	var wl []map[string]json.RawMessage
	json.Unmarshal(top["weights"], &wl)
	for _, w := range wl {
		var keys []string
		for k := range w {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range []string{"name", "op", "role", "shape", "dtype", "params", "zero_fraction"} {
			if _, ok := w[k]; !ok {
				t.Errorf("weight JSON lacks %q (has %s)", k, strings.Join(keys, ","))
			}
		}
	}
}

func TestInspectZooMLP(t *testing.T) {
	m, _ := zooModel(t, "mlp")
	checkZoo(t, m, map[string]layerWant{
		// torch.nn.Linear exports as Gemm(transB=1) with W [out, in]
		"fc1.weight": {op: "Gemm", role: onnxio.RoleGemmB, transB: true, out: 0, in: 1, outSize: 128, k: 64},
		"fc1.bias":   {op: "Gemm", role: onnxio.RoleBias, out: 0, in: -1, outSize: 128},
		"fc2.weight": {op: "Gemm", role: onnxio.RoleGemmB, transB: true, out: 0, in: 1, outSize: 64, k: 128},
		"fc2.bias":   {op: "Gemm", role: onnxio.RoleBias, out: 0, in: -1, outSize: 64},
		"fc3.weight": {op: "Gemm", role: onnxio.RoleGemmB, transB: true, out: 0, in: 1, outSize: 10, k: 64},
		"fc3.bias":   {op: "Gemm", role: onnxio.RoleBias, out: 0, in: -1, outSize: 10},
	}, []string{"fc1.weight", "fc2.weight", "fc3.weight"})
}

func TestInspectZooCNN(t *testing.T) {
	m, _ := zooModel(t, "cnn")
	checkZoo(t, m, map[string]layerWant{
		"conv1.weight": {op: "Conv", role: onnxio.RoleConvW, out: 0, in: 1, group: 1, outSize: 16, k: 1 * 3 * 3},
		"conv1.bias":   {op: "Conv", role: onnxio.RoleBias, out: 0, in: -1, group: 1, outSize: 16},
		"conv2.weight": {op: "Conv", role: onnxio.RoleConvW, out: 0, in: 1, group: 1, outSize: 32, k: 16 * 3 * 3},
		"conv2.bias":   {op: "Conv", role: onnxio.RoleBias, out: 0, in: -1, group: 1, outSize: 32},
		"conv3.weight": {op: "Conv", role: onnxio.RoleConvW, out: 0, in: 1, group: 1, outSize: 32, k: 32 * 3 * 3},
		"conv3.bias":   {op: "Conv", role: onnxio.RoleBias, out: 0, in: -1, group: 1, outSize: 32},
		"fc.weight":    {op: "Gemm", role: onnxio.RoleGemmB, transB: true, out: 0, in: 1, outSize: 10, k: 128},
		"fc.bias":      {op: "Gemm", role: onnxio.RoleBias, out: 0, in: -1, outSize: 10},
	}, []string{"conv1.weight", "conv2.weight", "conv3.weight"})
}

// TestInspectZooAll: every zoo model (fine-tunes and the transformer
// included) has a role for each weight, axes inside its shape, and pairs
// with its base by Match.
func TestInspectZooAll(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(pyoracle.RepoRoot(), "models", "zoo", "*", "*.onnx"))
	if len(files) == 0 {
		t.Skip("no zoo models (make zoo)")
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_kv.onnx") || strings.HasSuffix(f, "_merged.onnx") {
			continue // decoders with a KV cache do not pair with their base by structure
		}
		m, err := onnxio.Load(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		ws, err := m.Weights()
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range ws {
			// elementwise parameters (a learned positional embedding added
			// with Add) may stay "other"; weights of compute ops may not
			compute := map[string]bool{"MatMul": true, "Gemm": true, "Conv": true, "ConvTranspose": true, "Gather": true, "LayerNormalization": true, "BatchNormalization": true}
			if w.Op == "" || w.Role == onnxio.RoleOther && compute[w.Op] {
				t.Errorf("%s: %s %v has no role (op %q)", f, w.Name, w.Shape, w.Op)
			}
			if w.OutAxis >= len(w.Shape) || w.InAxis >= len(w.Shape) {
				t.Errorf("%s: %s axes outside %v", f, w.Name, w.Shape)
			}
			switch w.Role {
			case onnxio.RoleMatMulB, onnxio.RoleGemmB, onnxio.RoleConvW:
				if w.OutAxis < 0 || w.InAxis < 0 || w.ReductionSize() <= 0 {
					t.Errorf("%s: %s (%s) has no layout", f, w.Name, w.Role)
				}
			}
		}
		// fine-tunes pair with their base; other exports of the base
		// (a language model's base_kv, base_merged) are other graphs
		base := filepath.Join(filepath.Dir(f), "base.onnx")
		if f != base && !strings.HasPrefix(filepath.Base(f), "base_") {
			if bm, err := onnxio.Load(base); err == nil {
				if _, err := onnxio.Match(bm, m); err != nil {
					t.Errorf("%s does not match its base: %v", f, err)
				}
			}
		}
	}
}
