package onnxio

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"
)

// lyingFS serves fsys's files with the sizes of sizes instead of their
// own, and hides their Seek and ReadAt methods.
type lyingFS struct {
	fsys  fs.FS
	sizes map[string]int64
}

type lyingFile struct {
	f    fs.File
	size int64
	ok   bool
}

type lyingInfo struct {
	fs.FileInfo
	size int64
}

func (i lyingInfo) Size() int64 { return i.size }

func (l lyingFS) Open(name string) (fs.File, error) {
	f, err := l.fsys.Open(name)
	if err != nil {
		return nil, err
	}
	s, ok := l.sizes[name]
	return &lyingFile{f: f, size: s, ok: ok}, nil
}

func (f *lyingFile) Read(b []byte) (int, error) { return f.f.Read(b) }
func (f *lyingFile) Close() error               { return f.f.Close() }
func (f *lyingFile) Stat() (fs.FileInfo, error) {
	st, err := f.f.Stat()
	if err != nil || !f.ok {
		return st, err
	}
	return lyingInfo{st, f.size}, nil
}

// fsModel returns a MapFS with m/model.onnx reading W from external data
// at loc (with the given offset and length), m/w.bin (64 bytes, 0..63),
// secret (64 bytes, outside the model's folder) and m/sub (a folder).
func fsModel(t *testing.T, loc, offset, length string) fstest.MapFS {
	t.Helper()
	kv := []string{"location", loc, "offset", offset}
	if length != "" {
		kv = append(kv, "length", length)
	}
	w := make([]byte, 64)
	for i := range w {
		w[i] = byte(i)
	}
	return fstest.MapFS{
		"m/model.onnx": {Data: marshal(t, pbModel(extTensor("W", Float, []int64{4, 4}, kv...)))},
		"m/w.bin":      {Data: w},
		"m/sub":        {Mode: fs.ModeDir | 0o755, ModTime: time.Time{}},
		"secret":       {Data: make([]byte, 64)},
	}
}

// TestLoadFS: a model and its external data load from an fs.FS, its
// tensors read through it, and it saves to disk with its data.
func TestLoadFS(t *testing.T) {
	fsys := fsModel(t, "w.bin", "0", "64")
	m, err := LoadFS(fsys, "m/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	if m.Dir() != "m" || !m.IsExternal("W") {
		t.Fatalf("Dir %q, external %v", m.Dir(), m.IsExternal("W"))
	}
	w, err := m.Initializer("W")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(w.Bytes(), fsys["m/w.bin"].Data) {
		t.Fatalf("W = %v", w.Bytes())
	}
	// through a file that cannot seek, and from the root folder
	root := fstest.MapFS{"model.onnx": fsys["m/model.onnx"], "w.bin": fsys["m/w.bin"]}
	m2, err := LoadFS(lyingFS{fsys: root}, "model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	if w2, err := m2.Initializer("W"); err != nil || !bytes.Equal(w2.Bytes(), w.Bytes()) {
		t.Fatalf("without Seek: %v", err)
	}
	out := filepath.Join(t.TempDir(), "out.onnx")
	if err := m.Save(out, &SaveOptions{External: ExternalAlways, Threshold: 1}); err != nil {
		t.Fatal(err)
	}
	back, err := Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if wb, err := back.Initializer("W"); err != nil || !bytes.Equal(wb.Bytes(), w.Bytes()) {
		t.Fatalf("saved W: %v", err)
	}
	if b, err := m.Derive().Bytes(); err != nil || len(b) < 64 {
		t.Fatalf("a derived model reads through the FS too: %v", err)
	}
}

// TestLoadFSHostile: external data outside the model's folder, missing,
// not a regular file or shorter than the model says, and model names that
// are not plain names of the FS, are refused with the same errors as Load
// gives.
func TestLoadFSHostile(t *testing.T) {
	cases := []struct {
		name, loc, offset, length string
		want                      error
	}{
		{"parent", "../secret", "0", "64", ErrExternalPath},
		{"parent after a folder", "sub/../../secret", "0", "64", ErrExternalPath},
		{"absolute", "/secret", "0", "64", ErrExternalPath},
		{"absolute in the FS", "/m/w.bin", "0", "64", ErrExternalPath},
		{"NUL", "w.bin\x00", "0", "64", ErrExternalPath},
		{"missing", "nope.bin", "0", "64", ErrFormat},
		{"folder", "sub", "0", "64", ErrNotRegular},
		{"past the end", "w.bin", "8", "64", ErrFormat},
		{"length differs from the type", "w.bin", "0", "60", ErrFormat},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadFS(fsModel(t, c.loc, c.offset, c.length), "m/model.onnx")
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	names := []struct {
		name string
		want error
	}{
		{"../m/model.onnx", ErrFormat},
		{"/m/model.onnx", ErrFormat},
		{"m/./model.onnx", ErrFormat},
		{"m/nope.onnx", fs.ErrNotExist},
		{"m/sub", ErrNotRegular},
	}
	for _, c := range names {
		t.Run("name "+c.name, func(t *testing.T) {
			_, err := LoadFS(fsModel(t, "w.bin", "0", "64"), c.name)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

// TestLoadFSLyingSizes: an FS whose sizes are false cannot make LoadFS
// read past its limit or return a tensor it could not read in full.
func TestLoadFSLyingSizes(t *testing.T) {
	fsys := fsModel(t, "w.bin", "0", "")
	fsys["m/w.bin"] = &fstest.MapFile{Data: make([]byte, 16)}
	m, err := LoadFS(lyingFS{fsys: fsys, sizes: map[string]int64{"m/w.bin": 64}}, "m/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Initializer("W"); !errors.Is(err, ErrFormat) {
		t.Fatalf("data shorter than its size: %v, want ErrFormat", err)
	}
	model := fsys["m/model.onnx"].Data
	lim := Limits{MaxModelBytes: int64(len(model)) - 1, MaxTensorElements: 1 << 20, MaxRank: 8, MaxNodes: 10}
	_, err = LoadFS(lyingFS{fsys: fsys, sizes: map[string]int64{"m/model.onnx": 10}}, "m/model.onnx", WithLimits(lim))
	if !errors.Is(err, ErrLimit) {
		t.Fatalf("model larger than its size and the limit: %v, want ErrLimit", err)
	}
	if _, err := LoadFS(fsys, "m/model.onnx", WithLimits(lim)); !errors.Is(err, ErrLimit) {
		t.Fatalf("model over the limit: %v, want ErrLimit", err)
	}
}

// TestLoadFSSymlinks: in an FS that tells symbolic links (fstest.MapFS,
// os.DirFS, an os.Root's FS), external data reached through links must
// stay inside the model's folder, as with Load.
func TestLoadFSSymlinks(t *testing.T) {
	link := func(target string) *fstest.MapFile {
		return &fstest.MapFile{Data: []byte(target), Mode: fs.ModeSymlink}
	}
	cases := []struct {
		loc  string
		want error // nil: loads and reads w.bin
	}{
		{"link-in", nil},
		{"chain", nil},
		{"sub/up", nil},
		{"link-out", ErrExternalPath},
		{"link-abs", ErrExternalPath},
		{"dirlink/secret", ErrExternalPath},
		{"loop", ErrExternalPath},
	}
	for _, c := range cases {
		t.Run(c.loc, func(t *testing.T) {
			fsys := fsModel(t, c.loc, "0", "64")
			fsys["m/link-in"] = link("w.bin")
			fsys["m/chain"] = link("link-in")
			fsys["m/sub/up"] = link("../w.bin")
			fsys["m/link-out"] = link("../secret")
			fsys["m/link-abs"] = link("/secret")
			fsys["m/dirlink"] = link("..")
			fsys["m/loop"] = link("loop")
			m, err := LoadFS(fsys, "m/model.onnx")
			if c.want != nil {
				if !errors.Is(err, c.want) {
					t.Fatalf("got %v, want %v", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			w, err := m.Initializer("W")
			if err != nil || !bytes.Equal(w.Bytes(), fsys["m/w.bin"].Data) {
				t.Fatalf("W through %s: %v", c.loc, err)
			}
		})
	}
}

// TestLoadFSDirFS: with os.DirFS, which would follow a link out of its
// folder, external data through such a link is refused all the same.
func TestLoadFSDirFS(t *testing.T) {
	dir := hostileDir(t)
	for loc, want := range map[string]error{"w.bin": nil, "link-in": nil, "link-out": ErrExternalPath, "link-dir/secret": ErrExternalPath} {
		b := marshal(t, pbModel(extTensor("W", Float, []int64{4, 4}, "location", loc, "offset", "0", "length", "64")))
		if err := os.WriteFile(filepath.Join(dir, "model.onnx"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadFS(os.DirFS(dir), "model.onnx")
		if !errors.Is(err, want) || (want == nil && err != nil) {
			t.Errorf("%s: got %v, want %v", loc, err, want)
		}
	}
}
