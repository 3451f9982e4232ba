// Package pyoracle finds the Python interpreter that the oracle tests use to
// check onnxpost against independent implementations (numpy, onnx,
// onnxruntime). Tests call Python(t); when no suitable interpreter exists the
// test is skipped with a message, so `go test ./...` passes without Python.
// `make test` installs the virtualenv (make pyenv) so that the oracles run.
package pyoracle

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var (
	once   sync.Once
	found  string
	reason string
)

// RepoRoot returns the repository root (the folder holding go.mod).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func locate() {
	candidates := []string{}
	if p := os.Getenv("ONNXPOST_PYTHON"); p != "" {
		candidates = append(candidates, p)
	}
	candidates = append(candidates, filepath.Join(RepoRoot(), ".venv", "bin", "python"))
	for _, c := range candidates {
		if _, err := os.Stat(c); err != nil {
			continue
		}
		cmd := exec.Command(c, "-c", "import numpy, onnx, onnxruntime")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			reason = c + ": " + strings.TrimSpace(stderr.String())
			continue
		}
		found = c
		return
	}
	if reason == "" {
		reason = "no Python with numpy, onnx and onnxruntime (run `make pyenv` or set ONNXPOST_PYTHON)"
	}
}

// Python returns the path of a Python interpreter that imports numpy, onnx
// and onnxruntime, or skips the test with the reason none was found.
func Python(t testing.TB) string {
	t.Helper()
	once.Do(locate)
	if found == "" {
		t.Skipf("oracle skipped: %s", reason)
	}
	return found
}

// Run runs a Python script with args using the oracle interpreter and
// returns its standard output; it fails the test on a non-zero exit.
func Run(t testing.TB, script string, args ...string) []byte {
	t.Helper()
	py := Python(t)
	cmd := exec.Command(py, append([]string{"-c", script}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("python oracle failed: %v\n%s", err, stderr.String())
	}
	return stdout.Bytes()
}
