package evalharness

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindLibrary(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, ".cache", "onnxruntime", LibraryName)
	if err := os.MkdirAll(filepath.Dir(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fake, []byte("not really"), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "a", "b")
	os.MkdirAll(sub, 0o755)
	explicit := filepath.Join(dir, "explicit.so")
	os.WriteFile(explicit, nil, 0o644)

	t.Run("explicit wins", func(t *testing.T) {
		t.Setenv(LibraryEnv, fake)
		if p, err := FindLibrary(explicit); err != nil || p != explicit {
			t.Errorf("got %q, %v", p, err)
		}
	})
	t.Run("explicit missing", func(t *testing.T) {
		_, err := FindLibrary(filepath.Join(dir, "nope.so"))
		if !errors.Is(err, ErrNoLibrary) || !strings.Contains(err.Error(), "make ort") || !strings.Contains(err.Error(), "--ort-lib") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("environment", func(t *testing.T) {
		t.Setenv(LibraryEnv, explicit)
		if p, err := FindLibrary(""); err != nil || p != explicit {
			t.Errorf("got %q, %v", p, err)
		}
	})
	t.Run("environment missing", func(t *testing.T) {
		t.Setenv(LibraryEnv, filepath.Join(dir, "gone.so"))
		if _, err := FindLibrary(""); !errors.Is(err, ErrNoLibrary) || !strings.Contains(err.Error(), LibraryEnv) {
			t.Errorf("error %v", err)
		}
	})
	t.Run("cache folder above the working directory", func(t *testing.T) {
		t.Setenv(LibraryEnv, "")
		t.Chdir(sub)
		if p, err := FindLibrary(""); err != nil || p != fake {
			t.Errorf("got %q, %v; want %q", p, err, fake)
		}
	})
}
