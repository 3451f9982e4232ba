package llmgen

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness/npz"
	"github.com/onnxpost/onnxpost/onnxio"
)

// TestGenerate checks the written decoder: its parameter count is Params,
// its MatMul weights are discovered with the roles the transforms use, its
// large tensors are in external data, and a seed gives the same weights
// again while another seed gives others.
func TestGenerate(t *testing.T) {
	dir := t.TempDir()
	c := Config{Layers: 2, Hidden: 16, Heads: 2, FF: 24, Vocab: 30}
	p, err := Generate(dir, "a.onnx", c, 1)
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnxio.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := m.Weights()
	if err != nil {
		t.Fatal(err)
	}
	var params int64
	matmuls := 0
	for _, w := range ws {
		if strings.HasPrefix(w.Name, "const.") {
			continue
		}
		params += w.Params()
		if w.Role == onnxio.RoleMatMulB {
			matmuls++
		}
	}
	if params != c.Params() {
		t.Fatalf("model holds %d parameters, Params says %d", params, c.Params())
	}
	if matmuls != 7*c.Layers+1 {
		t.Fatalf("%d MatMul weights, want %d", matmuls, 7*c.Layers+1)
	}
	if !m.IsExternal("lm_head.weight") {
		t.Fatal("lm_head is not in external data")
	}
	again, err := Generate(dir, "b.onnx", c, 1)
	if err != nil {
		t.Fatal(err)
	}
	other, err := Generate(dir, "c.onnx", c, 2)
	if err != nil {
		t.Fatal(err)
	}
	w := func(path string) []byte {
		m, err := onnxio.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		x, err := m.Initializer("model.layers.1.mlp.down_proj.weight")
		if err != nil {
			t.Fatal(err)
		}
		return x.Bytes()
	}
	if !bytes.Equal(w(p), w(again)) || bytes.Equal(w(p), w(other)) {
		t.Fatal("the same seed must give the same weights and another seed others")
	}
	calib := filepath.Join(dir, "calib.npz")
	if err := WriteTokens(calib, c.Vocab, 3, 5, 1); err != nil {
		t.Fatal(err)
	}
	arrs, err := npz.ReadFile(calib)
	if err != nil {
		t.Fatal(err)
	}
	ids := arrs["input_ids"]
	if ids == nil || len(ids.Shape) != 2 || ids.Shape[0] != 3 || ids.Shape[1] != 5 || arrs["attention_mask"] == nil {
		t.Fatalf("calibration arrays: %v", arrs)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{Layers: 0, Hidden: 16, Heads: 2, FF: 8, Vocab: 10},
		{Layers: 1, Hidden: 15, Heads: 2, FF: 8, Vocab: 10},
		{Layers: 1, Hidden: 16, Heads: 2, FF: 8, Vocab: 1},
	} {
		if _, err := Generate(t.TempDir(), "x.onnx", c, 1); err == nil || !strings.Contains(err.Error(), "llmgen:") {
			t.Errorf("%+v: error %v, want an llmgen error", c, err)
		}
	}
	if OneB.Params() < 1e9 {
		t.Fatalf("OneB has %d parameters, under 1 B", OneB.Params())
	}
}
