package evalharness

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// plant writes a fake library file at p.
func plant(t *testing.T, p string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("not really a library"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeExecutable makes FindLibrary believe the running binary is exe.
func fakeExecutable(t *testing.T, exe string) {
	t.Helper()
	old := executable
	executable = func() (string, error) { return exe, nil }
	t.Cleanup(func() { executable = old })
}

// noSystemLibs hides the system library folders.
func noSystemLibs(t *testing.T) {
	t.Helper()
	old := systemLibDirs
	systemLibDirs = nil
	t.Cleanup(func() { systemLibDirs = old })
}

func TestFindLibrary(t *testing.T) {
	dir := t.TempDir()
	explicit := plant(t, filepath.Join(dir, "explicit.so"))
	envLib := plant(t, filepath.Join(dir, "env.so"))

	t.Run("explicit wins", func(t *testing.T) {
		t.Setenv(LibraryEnv, envLib)
		if p, err := FindLibrary(explicit); err != nil || p != explicit {
			t.Errorf("got %q, %v", p, err)
		}
	})
	t.Run("explicit missing", func(t *testing.T) {
		t.Setenv(LibraryEnv, envLib)
		_, err := FindLibrary(filepath.Join(dir, "nope.so"))
		if !errors.Is(err, ErrNoLibrary) || !strings.Contains(err.Error(), "nope.so: no such file") || !strings.Contains(err.Error(), "set "+LibraryEnv+" or pass the library's path") {
			t.Errorf("error %v", err)
		}
		if strings.Contains(err.Error(), "--ort-lib") || strings.Contains(err.Error(), "make ort") {
			t.Errorf("the library's error speaks of CLI flags: %v", err)
		}
	})
	t.Run("explicit folder", func(t *testing.T) {
		if _, err := FindLibrary(dir); !errors.Is(err, ErrNoLibrary) {
			t.Errorf("a folder was accepted as the library: %v", err)
		}
	})
	t.Run("environment", func(t *testing.T) {
		t.Setenv(LibraryEnv, envLib)
		if p, err := FindLibrary(""); err != nil || p != envLib {
			t.Errorf("got %q, %v", p, err)
		}
	})
	t.Run("environment missing", func(t *testing.T) {
		t.Setenv(LibraryEnv, filepath.Join(dir, "gone.so"))
		if _, err := FindLibrary(""); !errors.Is(err, ErrNoLibrary) || !strings.Contains(err.Error(), LibraryEnv) {
			t.Errorf("error %v", err)
		}
	})
	t.Run("lib beside the executable", func(t *testing.T) {
		t.Setenv(LibraryEnv, "")
		inst := t.TempDir()
		want := plant(t, filepath.Join(inst, "lib", LibraryName))
		plant(t, filepath.Join(inst, ".cache", "onnxruntime", LibraryName)) // not for a binary at inst/
		fakeExecutable(t, filepath.Join(inst, "onnxpost"))
		if p, err := FindLibrary(""); err != nil || p != want {
			t.Errorf("got %q, %v; want %q", p, err, want)
		}
	})
	t.Run("make build cache", func(t *testing.T) {
		t.Setenv(LibraryEnv, "")
		repo := t.TempDir()
		want := plant(t, filepath.Join(repo, ".cache", "onnxruntime", LibraryName))
		fakeExecutable(t, filepath.Join(repo, "bin", "onnxpost"))
		if p, err := FindLibrary(""); err != nil || p != want {
			t.Errorf("got %q, %v; want %q", p, err, want)
		}
	})
}

// A library beside the executable that others can write is refused.
func TestFindLibraryRefusesSharedFolder(t *testing.T) {
	t.Setenv(LibraryEnv, "")
	inst := t.TempDir()
	lib := plant(t, filepath.Join(inst, "lib", LibraryName))
	if err := os.Chmod(filepath.Dir(lib), 0o777); err != nil {
		t.Fatal(err)
	}
	fakeExecutable(t, filepath.Join(inst, "onnxpost"))
	if p, err := FindLibrary(""); !errors.Is(err, ErrNoLibrary) || !strings.Contains(err.Error(), "writable by others") {
		t.Fatalf("got %q, %v", p, err)
	}
}

// TestFindLibraryIgnoresWorkingDirectory plants a library where an
// untrusted model folder could hold one: in the working directory and in
// a parent. Neither may be chosen.
func TestFindLibraryIgnoresWorkingDirectory(t *testing.T) {
	noSystemLibs(t)
	t.Setenv(LibraryEnv, "")
	fakeExecutable(t, filepath.Join(t.TempDir(), "bin", "onnxpost")) // nothing beside it
	for _, where := range []string{"working directory", "parent"} {
		t.Run(where, func(t *testing.T) {
			root := t.TempDir()
			wd := filepath.Join(root, "models", "untrusted")
			if err := os.MkdirAll(wd, 0o755); err != nil {
				t.Fatal(err)
			}
			at := wd
			if where == "parent" {
				at = root
			}
			planted := plant(t, filepath.Join(at, ".cache", "onnxruntime", LibraryName))
			t.Chdir(wd)
			p, err := FindLibrary("")
			if p == planted || err == nil {
				t.Fatalf("FindLibrary chose %q (err %v); the planted library in the %s must never be loaded", p, err, where)
			}
			if !errors.Is(err, ErrNoLibrary) {
				t.Errorf("error %v", err)
			}
		})
	}
}

func TestCheckThreads(t *testing.T) {
	lim := max(4*runtime.NumCPU(), MinMaxThreads)
	t.Setenv(MaxThreadsEnv, "")
	if MaxThreads() != lim {
		t.Fatalf("MaxThreads %d, want %d", MaxThreads(), lim)
	}
	for _, n := range []int{0, 1, lim} {
		if err := CheckThreads(n); err != nil {
			t.Errorf("CheckThreads(%d): %v", n, err)
		}
	}
	for _, n := range []int{-1, lim + 1, 100000} {
		err := CheckThreads(n)
		if err == nil {
			t.Errorf("CheckThreads(%d) accepted", n)
			continue
		}
		if n > 0 && !strings.Contains(err.Error(), "limit of "+strconv.Itoa(lim)) {
			t.Errorf("CheckThreads(%d): %v does not name the limit", n, err)
		}
	}
	t.Setenv(MaxThreadsEnv, "200000")
	if err := CheckThreads(100000); err != nil {
		t.Errorf("raised limit: %v", err)
	}
}

// A session refuses a thread count above the ceiling before ONNX Runtime
// reserves anything.
func TestSessionThreadsCeiling(t *testing.T) {
	requireORT(t)
	t.Setenv(MaxThreadsEnv, "")
	_, err := NewSessionFromFile(filepath.Join("testdata", "mlp.onnx"), SessionOptions{Threads: 100000})
	if err == nil || !strings.Contains(err.Error(), "above the limit of") {
		t.Fatalf("error %v", err)
	}
}
