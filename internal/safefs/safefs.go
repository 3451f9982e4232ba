// Package safefs keeps the files a recipe or config names inside the
// folders they are allowed to touch, and writes files in two phases so a
// command can fail before it has committed anything.
//
// # Trust
//
// A recipe or merge config may come from someone else: its paths are
// data, not instructions to write anywhere. Paths it writes resolve
// against one base folder (the file's own folder, or a folder named on
// the command line) and must stay inside it: not absolute, no ".."
// component that leaves it, and no symbolic link on the way that points
// outside. The check is made on the file system as it is when the command
// starts; a folder that someone else can change while the command runs
// is not protected.
package safefs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// ErrOutside reports a path that would write outside its base folder.
var ErrOutside = errors.New("the path leaves its folder")

// WritePath resolves p, a path for writing as written in a file, against
// base. p must be a local path (filepath.IsLocal: not empty, not absolute,
// no ".." that leaves base) and, once the part of base/p that exists has
// its symbolic links resolved, it must still lie inside base (resolved as
// well). The error wraps ErrOutside and names p.
func WritePath(base, p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("%w: empty path", ErrOutside)
	}
	if filepath.IsAbs(p) {
		return "", fmt.Errorf("%w: %q is absolute (write paths are relative to %s)", ErrOutside, p, base)
	}
	if !filepath.IsLocal(p) {
		return "", fmt.Errorf("%w: %q is not a plain relative path inside %s (no \"..\")", ErrOutside, p, base)
	}
	realBase, err := filepath.EvalSymlinks(base)
	if err != nil {
		return "", fmt.Errorf("%w: the folder %s: %v", ErrOutside, base, err)
	}
	full := filepath.Join(base, p)
	if err := inside(realBase, full); err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrOutside, p, err)
	}
	return full, nil
}

// inside checks that the longest existing prefix of full, with symbolic
// links resolved, lies inside realBase.
func inside(realBase, full string) error {
	cur := full
	for {
		if _, err := os.Lstat(cur); err == nil {
			break
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			break
		}
		cur = parent
	}
	real, err := filepath.EvalSymlinks(cur)
	if err != nil {
		return fmt.Errorf("resolving %s: %v", cur, err)
	}
	rel, err := filepath.Rel(realBase, real)
	if err != nil || (rel != "." && !filepath.IsLocal(rel)) {
		return fmt.Errorf("%s resolves to %s, outside %s (a symbolic link)", cur, real, realBase)
	}
	return nil
}

// ReadPath resolves p, a path for reading as written in a file, against
// base: an absolute p stays as it is, a relative one is joined to base.
func ReadPath(base, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}

// Pending is a file prepared for writing: a temporary file beside its
// destination that Commit fills and renames into place, or Abort removes.
// Preparing first lets a command find an unwritable destination before it
// commits anything else.
type Pending struct {
	path string
	f    *os.File
}

// Prepare creates the temporary file for path in path's folder. It fails
// when the folder is missing or not writable, or when path is a folder.
func Prepare(path string) (*Pending, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return nil, fmt.Errorf("%s is a folder", path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &Pending{path: path, f: f}, nil
}

// Path returns the destination path.
func (p *Pending) Path() string { return p.path }

// Commit writes b to the temporary file, syncs it and renames it over the
// destination. On failure the temporary file is removed and the
// destination is untouched.
func (p *Pending) Commit(b []byte) error {
	if p.f == nil {
		return fmt.Errorf("%s: already committed or aborted", p.path)
	}
	f := p.f
	p.f = nil
	_, err := f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p.path)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	if d, err := os.Open(filepath.Dir(p.path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// Abort removes the temporary file; it does nothing after Commit, so it
// can be deferred.
func (p *Pending) Abort() {
	if p == nil || p.f == nil {
		return
	}
	p.f.Close()
	os.Remove(p.f.Name())
	p.f = nil
}

// MaxConfigBytes bounds the size of a recipe or config file.
const MaxConfigBytes = 1 << 20

// ReadConfig reads a small configuration file (a recipe, a merge config):
// it must be a regular file (a FIFO or device is refused without blocking
// on it) of at most MaxConfigBytes.
func ReadConfig(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%v)", path, st.Mode().Type())
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxConfigBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxConfigBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes; a recipe or config is a short text file", path, MaxConfigBytes)
	}
	return b, nil
}
