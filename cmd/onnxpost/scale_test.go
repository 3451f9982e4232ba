package main

import (
	"bytes"
	"path/filepath"
	"slices"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/internal/llmgen"
	"github.com/onnxpost/onnxpost/onnxio"
)

// smallDecoder writes a decoder of the 1 B generator's shape, a few
// hundred KB with external data, and a calibration set beside it.
func smallDecoder(t *testing.T, dir string, seed uint64) (model, calib string) {
	t.Helper()
	cfg := llmgen.Config{Layers: 2, Hidden: 64, Heads: 4, FF: 160, Vocab: 96}
	p, err := llmgen.Generate(dir, "m"+string(rune('0'+seed))+".onnx", cfg, seed)
	if err != nil {
		t.Fatal(err)
	}
	calib = filepath.Join(dir, "calib.npz")
	if err := llmgen.WriteTokens(calib, cfg.Vocab, 4, 8, 7); err != nil {
		t.Fatal(err)
	}
	return p, calib
}

// largePaths makes the commands treat every model as large while the test
// runs: rewritten tensors spilled to disk, one Gram per calibration pass,
// calibration sessions opened from a file that maps the external data.
func largePaths(t *testing.T) {
	lm, sm, gb, ma := largeModel, spillMin, gramBudget, evalharness.MapAbove
	largeModel, spillMin, gramBudget, evalharness.MapAbove = 0, 1, 1, 0
	t.Cleanup(func() { largeModel, spillMin, gramBudget, evalharness.MapAbove = lm, sm, gb, ma })
}

// sameModel fails unless a and b hold the same initializers (names,
// dtypes, shapes and bytes) and the same nodes.
func sameModel(t *testing.T, a, b string) {
	t.Helper()
	ma, err := onnxio.Load(a)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := onnxio.Load(b)
	if err != nil {
		t.Fatal(err)
	}
	na, nb := ma.Initializers(), mb.Initializers()
	if len(na) != len(nb) {
		t.Fatalf("%d initializers, in memory %d", len(nb), len(na))
	}
	for i, name := range na {
		if nb[i] != name {
			t.Fatalf("initializer %d is %s, in memory %s", i, nb[i], name)
		}
		ta, err := ma.Initializer(name)
		if err != nil {
			t.Fatal(err)
		}
		tb, err := mb.Initializer(name)
		if err != nil {
			t.Fatal(err)
		}
		if ta.DType != tb.DType || !slices.Equal(ta.Shape, tb.Shape) || !bytes.Equal(ta.Bytes(), tb.Bytes()) {
			t.Fatalf("initializer %s differs from the in-memory path's", name)
		}
	}
	xa, xb := ma.Nodes(), mb.Nodes()
	if len(xa) != len(xb) {
		t.Fatalf("%d nodes, in memory %d", len(xb), len(xa))
	}
	for i := range xa {
		if xa[i].OpType != xb[i].OpType || !slices.Equal(xa[i].Inputs, xb[i].Inputs) {
			t.Fatalf("node %d: %s%v, in memory %s%v", i, xb[i].OpType, xb[i].Inputs, xa[i].OpType, xa[i].Inputs)
		}
	}
}

// TestLargeModelPathsMatchInMemory runs int4 RTN and GPTQ, 2:4 SparseGPT
// and a TIES merge on a small generated decoder with external data twice:
// as a small model (tensors in memory, every Gram accumulated in one pass,
// sessions from serialized bytes; the merge built in memory) and through
// the paths a large model takes (rewritten tensors spilled, Grams one at a
// time, sessions mapping the external data; the merge streamed tensor by
// tensor as it is written). The outputs must be the same, tensor for
// tensor.
func TestLargeModelPathsMatchInMemory(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	a, calib := smallDecoder(t, dir, 1)
	b, _ := smallDecoder(t, dir, 2)
	c, _ := smallDecoder(t, dir, 3)
	cases := []struct {
		name string
		args []string
		// mem is added to the in-memory run: merge builds the model in
		// memory when it evaluates it (--data), and streams otherwise
		mem []string
	}{
		{"int4-rtn", []string{"quantize", a, "--weights", "int4", "--block", "32"}, nil},
		{"int4-gptq", []string{"quantize", a, "--weights", "int4", "--block", "32", "--method", "gptq", "--calib", calib}, nil},
		{"sparsegpt-2of4", []string{"sparsify", a, "--pattern", "2:4", "--method", "sparsegpt", "--calib", calib, "--quiet"}, nil},
		{"ties", []string{"merge", "--method", "ties", "--base", a, b, c}, []string{"--data", calib}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mem := filepath.Join(t.TempDir(), "mem.onnx")
			args := append(append([]string{"onnxpost"}, tc.args...), tc.mem...)
			if code := run(append(args, "-o", mem)); code != 0 {
				t.Fatalf("in memory: exit code %d", code)
			}
			large := filepath.Join(t.TempDir(), "large.onnx")
			largePaths(t)
			if code := run(append([]string{"onnxpost"}, append(tc.args, "-o", large)...)); code != 0 {
				t.Fatalf("large-model paths: exit code %d", code)
			}
			sameModel(t, mem, large)
		})
	}
}
