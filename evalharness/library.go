package evalharness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
)

// LibraryEnv is the environment variable naming the ONNX Runtime shared
// library.
const LibraryEnv = "ONNXPOST_ORT_LIB"

// LibraryName is the file name of the ONNX Runtime shared library that
// `make ort` installs under .cache/onnxruntime.
const LibraryName = "libonnxruntime.so.1"

// ErrNoLibrary reports that the ONNX Runtime shared library was not found.
// The message speaks of the library's own inputs (the explicit path and
// the environment variable); a command-line tool phrases the remedy in its
// flags.
var ErrNoLibrary = errors.New("evalharness: ONNX Runtime shared library not found (set " + LibraryEnv + " or pass the library's path)")

// systemLibDirs are searched last.
var systemLibDirs = []string{"/usr/local/lib", "/usr/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib/aarch64-linux-gnu"}

// executable returns the resolved path of the running executable; a
// variable so tests can pretend to be an installed binary.
var executable = func() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(exe)
}

// FindLibrary returns the path of the ONNX Runtime shared library. It is
// the only place that decides which native library the process loads, and
// it searches, in this order:
//
//  1. explicit, when not empty;
//  2. $ONNXPOST_ORT_LIB;
//  3. the folder of the executable (symlinks resolved):
//     lib/libonnxruntime.so.1 beside it (an installed layout), then
//     ../.cache/onnxruntime/libonnxruntime.so.1 (a `make` build, whose
//     binary is bin/onnxpost and whose `make ort` cache is beside bin/);
//  4. the system library folders (/usr/local/lib, /usr/lib, ...).
//
// The working directory and its parents are never searched: a model or
// dataset folder is not trusted, and a library planted there would run
// its code in this process. An explicit path or environment variable that
// names a missing file is an error rather than a fall-through, so a typo
// is not silently replaced by another library. The error wraps
// ErrNoLibrary.
func FindLibrary(explicit string) (string, error) {
	if explicit != "" {
		if !isFile(explicit) {
			return "", fmt.Errorf("%w: %s: no such file", ErrNoLibrary, explicit)
		}
		return explicit, nil
	}
	if env := os.Getenv(LibraryEnv); env != "" {
		if !isFile(env) {
			return "", fmt.Errorf("%w: %s=%s: no such file", ErrNoLibrary, LibraryEnv, env)
		}
		return env, nil
	}
	for _, p := range executableCandidates() {
		if isFile(p) {
			if err := ownedSafely(p); err != nil {
				return "", fmt.Errorf("%w: refusing %s: %v", ErrNoLibrary, p, err)
			}
			return p, nil
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

// executableCandidates lists the library paths beside the executable, in
// search order.
func executableCandidates() []string {
	exe, err := executable()
	if err != nil || exe == "" {
		return nil
	}
	dir := filepath.Dir(exe)
	return []string{
		filepath.Join(dir, "lib", LibraryName),
		filepath.Join(filepath.Dir(dir), ".cache", "onnxruntime", LibraryName),
	}
}

// ownedSafely checks that the library file found beside the executable,
// and its folder, belong to the user or root and are not writable by group
// or others: a binary copied into a shared folder (/tmp) must not pick up
// a library someone else put beside it.
func ownedSafely(p string) error {
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return err
	}
	for _, q := range []string{real, filepath.Dir(real)} {
		st, err := os.Stat(q)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o022 != 0 {
			return fmt.Errorf("%s is writable by others (mode %v)", q, st.Mode().Perm())
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Getuid() && sys.Uid != 0 {
			return fmt.Errorf("%s belongs to another user (uid %d)", q, sys.Uid)
		}
	}
	return nil
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// MinMaxThreads is the floor of MaxThreads.
const MinMaxThreads = 64

// MaxThreads returns the largest ONNX Runtime thread count a caller should
// accept: 4 × runtime.NumCPU(), and at least MinMaxThreads. Each intra-op
// thread reserves its stack and scratch memory up front, so an unchecked
// count (100000) exhausts memory before any work; more threads than four
// per core never help. A caller that needs more can raise it with the
// environment variable ONNXPOST_MAX_THREADS (a positive integer).
func MaxThreads() int {
	if s := os.Getenv(MaxThreadsEnv); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	return max(4*runtime.NumCPU(), MinMaxThreads)
}

// MaxThreadsEnv is the environment variable that overrides MaxThreads.
const MaxThreadsEnv = "ONNXPOST_MAX_THREADS"

// CheckThreads returns an error when n is negative or above MaxThreads.
func CheckThreads(n int) error {
	if n < 0 {
		return fmt.Errorf("threads must be >= 0, got %d", n)
	}
	if lim := MaxThreads(); n > lim {
		return fmt.Errorf("threads %d is above the limit of %d (4 × %d CPUs, at least %d; raise it with %s)", n, lim, runtime.NumCPU(), MinMaxThreads, MaxThreadsEnv)
	}
	return nil
}
