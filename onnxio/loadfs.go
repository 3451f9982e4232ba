package onnxio

import (
	"fmt"
	"io"
	"io/fs"
	"math"
	"path"
)

// LoadFS reads and validates the model called name in fsys, like Load
// reads a path: the model must be a regular file within the size limit,
// and external data is read lazily from fsys by the same rule as Load's:
// a location must be a local path (not absolute, no ".." that leaves the
// folder) that names a regular file inside the model's folder of fsys.
//
// Where fsys tells symbolic links (Lstat and ReadLink, as fstest.MapFS,
// os.DirFS and an os.Root's FS do), every link on the way to external data
// is followed and must stay inside the model's folder, as Load requires;
// an FS that does not tell them is trusted with what its names refer to.
// The model file's own name is resolved by fsys. The model keeps fsys to
// read its tensors; it must stay readable and unchanged while the model is
// in use.
func LoadFS(fsys fs.FS, name string, opts ...Option) (*Model, error) {
	cfg := loadConfig{limits: DefaultLimits}
	for _, o := range opts {
		o(&cfg)
	}
	if !fs.ValidPath(name) {
		return nil, fmt.Errorf("%w: %q is not a valid name in the file system", ErrFormat, name)
	}
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s: %w", ErrFormat, name, ErrNotRegular)
	}
	max := cfg.limits.MaxModelBytes
	if st.Size() > max {
		return nil, fmt.Errorf("%w: %s is %d bytes, over the %d-byte limit", ErrLimit, name, st.Size(), max)
	}
	// the size is the file system's word: read at most one byte past the
	// limit whatever it said
	b, err := io.ReadAll(io.LimitReader(f, min(max, math.MaxInt64-1)+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: %s is over the %d-byte limit", ErrLimit, name, max)
	}
	m, err := loadBytes(b, path.Dir(name), fsys, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return m, nil
}
