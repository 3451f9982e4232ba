package safefs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestWritePath(t *testing.T) {
	root := t.TempDir()
	base := filepath.Join(root, "recipes")
	outside := filepath.Join(root, "elsewhere")
	for _, d := range []string{filepath.Join(base, "out"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(base, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "victim.onnx"), filepath.Join(base, "file-link.onnx")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(base, "out"), filepath.Join(base, "inner-link")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		p  string
		ok bool
	}{
		{"model.onnx", true},
		{"out/model.onnx", true},
		{"new/folder/model.onnx", true},
		{"out/../model.onnx", true},
		{"inner-link/model.onnx", true},
		{"", false},
		{"/tmp/model.onnx", false},
		{"../elsewhere/model.onnx", false},
		{"out/../../elsewhere/model.onnx", false},
		{"link/model.onnx", false},
		{"link/new/model.onnx", false},
		{"file-link.onnx", false},
	} {
		got, err := WritePath(base, tc.p)
		switch {
		case tc.ok && err != nil:
			t.Errorf("%q: %v", tc.p, err)
		case tc.ok && got != filepath.Join(base, tc.p):
			t.Errorf("%q resolved to %q", tc.p, got)
		case !tc.ok && !errors.Is(err, ErrOutside):
			t.Errorf("%q: got %q, %v; want ErrOutside", tc.p, got, err)
		}
	}
}

func TestReadPath(t *testing.T) {
	if got := ReadPath("/r", "a/b.onnx"); got != "/r/a/b.onnx" {
		t.Errorf("got %q", got)
	}
	if got := ReadPath("/r", "/abs/b.onnx"); got != "/abs/b.onnx" {
		t.Errorf("got %q", got)
	}
}

func TestPending(t *testing.T) {
	dir := t.TempDir()
	dst := filepath.Join(dir, "r.json")
	p, err := Prepare(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatal("Prepare created the destination")
	}
	if err := p.Commit([]byte("{}")); err != nil {
		t.Fatal(err)
	}
	p.Abort() // no-op after Commit
	if b, err := os.ReadFile(dst); err != nil || string(b) != "{}" {
		t.Fatalf("got %q, %v", b, err)
	}
	q, err := Prepare(dst)
	if err != nil {
		t.Fatal(err)
	}
	q.Abort()
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("Abort left files: %v", ents)
	}
	if _, err := Prepare(filepath.Join(dir, "missing", "r.json")); err == nil {
		t.Error("Prepare in a missing folder succeeded")
	}
	if _, err := Prepare(dir); err == nil {
		t.Error("Prepare of a folder succeeded")
	}
}

func TestReadConfig(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "r.yaml")
	os.WriteFile(small, []byte("steps: []\n"), 0o644)
	if b, err := ReadConfig(small); err != nil || string(b) != "steps: []\n" {
		t.Fatalf("got %q, %v", b, err)
	}
	big := filepath.Join(dir, "big.yaml")
	os.WriteFile(big, make([]byte, MaxConfigBytes+1), 0o644)
	if _, err := ReadConfig(big); err == nil {
		t.Error("an oversized config was read")
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip(err)
	}
	if _, err := ReadConfig(fifo); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("FIFO: %v", err)
	}
	if _, err := ReadConfig(dir); err == nil {
		t.Error("a folder was read")
	}
}
