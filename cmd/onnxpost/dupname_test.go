package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/onnxpost/onnxpost/onnxio"
)

// runStderr runs the CLI and returns its exit code and what it wrote on
// stderr.
func runStderr(t *testing.T, args []string) (int, string) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	old := os.Stderr
	os.Stderr = f
	code := run(args)
	os.Stderr = old
	f.Seek(0, io.SeekStart)
	b, _ := io.ReadAll(f)
	return code, string(b)
}

// dupModel writes a MatMul model whose graph holds two initializers named
// W with different shapes: a valid model's bytes followed by a second
// ModelProto.graph field holding one more initializer (protobuf merges the
// two, appending to graph.initializer).
func dupModel(t *testing.T, dir string) string {
	t.Helper()
	m := onnxio.New("dup", 17)
	w, _ := onnxio.FromFloat32("W", onnxio.Float, []int64{4, 4}, make([]float32, 16))
	if err := m.SetInitializer(w); err != nil {
		t.Fatal(err)
	}
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 1}, {Value: 4}}})
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 1}, {Value: 4}}})
	if err := m.InsertNodes(onnxio.Node{Name: "mm", OpType: "MatMul", Inputs: []string{"x", "W"}, Outputs: []string{"y"}}); err != nil {
		t.Fatal(err)
	}
	b, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	w2, _ := onnxio.FromFloat32("W", onnxio.Float, []int64{3}, []float32{1, 2, 3})
	tb, err := onnxio.MarshalTensor(w2)
	if err != nil {
		t.Fatal(err)
	}
	g := protowire.AppendBytes(protowire.AppendTag(nil, 5, protowire.BytesType), tb) // GraphProto.initializer
	b = protowire.AppendBytes(protowire.AppendTag(b, 7, protowire.BytesType), g)     // ModelProto.graph
	p := filepath.Join(dir, "dup.onnx")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDuplicateInitializerNamesCLI: quantize, lowrank and merge on a model
// with two initializers named W exit 1 with an error naming W, not a panic,
// and write nothing.
func TestDuplicateInitializerNamesCLI(t *testing.T) {
	dir := t.TempDir()
	in := dupModel(t, dir)
	out := filepath.Join(dir, "out.onnx")
	for name, args := range map[string][]string{
		"quantize": {"onnxpost", "quantize", in, "--weights", "int8", "-o", out},
		"lowrank":  {"onnxpost", "lowrank", in, "--rank", "1", "-o", out},
		"merge":    {"onnxpost", "merge", "--method", "linear", "-o", out, in, in},
	} {
		code, stderr := runStderr(t, args)
		if code != 1 || !strings.Contains(stderr, `two initializers are named "W"`) || strings.Contains(stderr, "internal error") {
			t.Errorf("%s: exit %d, stderr %q; want 1 and the duplicate name", name, code, stderr)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%s wrote %s", name, out)
		}
	}
}

// TestOutputPathRefusedCLI: -o naming a folder or nothing exits 1 and
// writes nothing, neither DIR.data nor a "..data" file.
func TestOutputPathRefusedCLI(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.onnx")
	m := onnxio.New("mm", 17)
	w, _ := onnxio.FromFloat32("W", onnxio.Float, []int64{64, 64}, make([]float32, 64*64))
	if err := m.SetInitializer(w); err != nil {
		t.Fatal(err)
	}
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 1}, {Value: 64}}})
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 1}, {Value: 64}}})
	if err := m.InsertNodes(onnxio.Node{Name: "mm", OpType: "MatMul", Inputs: []string{"x", "W"}, Outputs: []string{"y"}}); err != nil {
		t.Fatal(err)
	}
	if err := m.Save(in, nil); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	for _, out := range []string{sub, ""} {
		code, stderr := runStderr(t, []string{"onnxpost", "quantize", in, "--weights", "fp16", "--external-data", "-o", out})
		if code == 0 {
			t.Errorf("-o %q: exit 0 (stderr %q)", out, stderr)
		}
		es, _ := os.ReadDir(dir)
		for _, e := range es {
			if e.Name() != "in.onnx" && e.Name() != "sub" {
				t.Errorf("-o %q left %s", out, e.Name())
			}
		}
	}
	code, stderr := runStderr(t, []string{"onnxpost", "quantize", in, "--weights", "fp16", "-o", sub})
	if code != 1 || !strings.Contains(stderr, "is a folder") {
		t.Errorf("-o DIR: exit %d, stderr %q; want 1 and \"is a folder\"", code, stderr)
	}
}
