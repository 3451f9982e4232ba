package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
)

// The Go program and its recipe twin (run by the onnxpost CLI) write the
// same model and report bytes to the same paths.
func TestProgramAndRecipeAreTwins(t *testing.T) {
	if err := evalharness.Init(""); err != nil {
		t.Skipf("ONNX Runtime not available (run `make ort`): %v", err)
	}
	if testing.Short() {
		t.Skip("builds the CLI")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	zoo, data := filepath.Join(root, "models", "zoo", "mlp"), filepath.Join(root, "models", "data", "digits_union_test.npz")
	for _, p := range []string{filepath.Join(zoo, "ft_shift.onnx"), data} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("zoo missing (make zoo): %v", err)
		}
	}
	out := t.TempDir()
	files := []string{"release.onnx", "release.json", "release.md"}
	if _, err := run(context.Background(), zoo, data, out, "accuracy_drop<=0.05"); err != nil {
		t.Fatal(err)
	}
	program := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		program[f] = b
		if err := os.Remove(filepath.Join(out, f)); err != nil {
			t.Fatal(err)
		}
	}

	bin := filepath.Join(t.TempDir(), "onnxpost")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "./cmd/onnxpost")
	build.Dir = root
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the CLI: %v\n%s", err, b)
	}
	cmd := exec.Command(bin, "run", "--out-dir", out, filepath.Join(root, "examples", "release", "recipe.yaml"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("onnxpost run: %v\n%s", err, b)
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, program[f]) {
			t.Errorf("%s differs: program %d bytes, recipe %d bytes", f, len(program[f]), len(b))
		}
	}
}
