package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

// captureRun runs the CLI with args and returns its exit code and what it
// wrote on stderr.
func captureRun(t *testing.T, args ...string) (int, string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	code := run(append([]string{"onnxpost"}, args...))
	os.Stderr = old
	w.Close()
	return code, <-done
}

// matmulModel is x[N,k] · W[k,n] (W from an identity-like pattern), saved
// in dir.
func matmulModel(t *testing.T, dir string, k, n int64) string {
	t.Helper()
	m := onnxio.New("g", 17)
	v := make([]float32, k*n)
	for i := range v {
		v[i] = float32(i%7) - 3
	}
	w, err := onnxio.FromFloat32("W", onnxio.Float, []int64{k, n}, v)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetInitializer(w); err != nil {
		t.Fatal(err)
	}
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "N"}, {Value: k}}})
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "N"}, {Value: n}}})
	if err := m.InsertNodes(onnxio.Node{OpType: "MatMul", Inputs: []string{"x", "W"}, Outputs: []string{"y"}}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "mm.onnx")
	if err := m.Save(p, nil); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestNothingToTransform: a transforming command that changes no weight
// exits 1 with "nothing to transform" and the reason per layer, writing
// nothing; --allow-noop writes the copy.
func TestNothingToTransform(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	in := matmulModel(t, dir, 2, 2)
	cases := []struct {
		name   string
		args   []string
		reason string
	}{
		{"quantize excluded", []string{"quantize", in, "--exclude", "W"}, "W: "},
		{"lowrank saves nothing", []string{"lowrank", in, "--rank", "1"}, "W: rank 1 saves nothing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".onnx")
			code, stderr := captureRun(t, append(tc.args, "-o", out)...)
			if code != 1 || !strings.Contains(stderr, "nothing to transform") || !strings.Contains(stderr, tc.reason) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit 1, nothing to transform and %q", code, stderr, tc.reason)
			}
			if _, err := os.Stat(out); err == nil {
				t.Fatal("output written")
			}
			code, stderr = captureRun(t, append(tc.args, "-o", out, "--allow-noop")...)
			if code != 0 {
				t.Fatalf("--allow-noop: exit %d\n%s", code, stderr)
			}
			if _, err := os.Stat(out); err != nil {
				t.Fatalf("--allow-noop wrote nothing: %v", err)
			}
		})
	}
}

// TestLoadCheckRefuses: a candidate ONNX Runtime cannot load is refused
// before anything is written.
func TestLoadCheckRefuses(t *testing.T) {
	requireORT(t)
	m := onnxio.New("g", 17)
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 2}}})
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 2}}})
	if err := m.InsertNodes(onnxio.Node{Name: "n", OpType: "NoSuchOp", Inputs: []string{"x"}, Outputs: []string{"y"}}); err != nil {
		t.Fatal(err)
	}
	err := loadCheck(io.Discard, "quantize", m, evalharness.SessionOptions{}, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "does not load in ONNX Runtime") {
		t.Fatalf("got %v", err)
	}
}
