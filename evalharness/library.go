package evalharness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// LibraryEnv is the environment variable naming the ONNX Runtime shared
// library.
const LibraryEnv = "ONNXPOST_ORT_LIB"

// LibraryName is the file name of the ONNX Runtime shared library that
// `make ort` installs under .cache/onnxruntime.
const LibraryName = "libonnxruntime.so.1"

// ErrNoLibrary reports that the ONNX Runtime shared library was not found.
var ErrNoLibrary = errors.New("evalharness: ONNX Runtime shared library not found (run `make ort` to install it into .cache/onnxruntime, or pass --ort-lib / set " + LibraryEnv + ")")

// systemLibDirs are searched last.
var systemLibDirs = []string{"/usr/local/lib", "/usr/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib/aarch64-linux-gnu"}

// FindLibrary returns the path of the ONNX Runtime shared library, searching
// in this order: explicit (when not empty), $ONNXPOST_ORT_LIB,
// .cache/onnxruntime/libonnxruntime.so.1 in the working directory, the
// executable's folder or any of their parent folders (the repository root),
// then the system library folders. An explicit path or environment variable
// that names a missing file is an error rather than a fall-through, so a
// typo is not silently replaced by another library. The error wraps
// ErrNoLibrary.
func FindLibrary(explicit string) (string, error) {
	if explicit != "" {
		if !isFile(explicit) {
			return "", fmt.Errorf("%w: --ort-lib %s: no such file", ErrNoLibrary, explicit)
		}
		return explicit, nil
	}
	if env := os.Getenv(LibraryEnv); env != "" {
		if !isFile(env) {
			return "", fmt.Errorf("%w: %s=%s: no such file", ErrNoLibrary, LibraryEnv, env)
		}
		return env, nil
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		for {
			p := filepath.Join(dir, ".cache", "onnxruntime", LibraryName)
			if isFile(p) {
				return p, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	for _, dir := range systemLibDirs {
		for _, name := range []string{LibraryName, "libonnxruntime.so"} {
			if p := filepath.Join(dir, name); isFile(p) {
				return p, nil
			}
		}
	}
	return "", ErrNoLibrary
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
