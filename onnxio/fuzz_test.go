package onnxio

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// isSentinel reports whether err wraps one of the package's sentinels.
func isSentinel(err error) bool {
	for _, s := range []error{ErrFormat, ErrLimit, ErrDType, ErrExternalPath, ErrNotFound, ErrMismatch} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

var fuzzLimits = Limits{MaxModelBytes: 1 << 20, MaxTensorElements: 1 << 16, MaxRank: 8, MaxNodes: 1 << 12}

// fuzzSeeds returns small serialized models: the committed testdata
// models and a few built here (every weight kind, unknown fields, external
// data into the fuzz folder's w.bin).
func fuzzSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	files, _ := filepath.Glob(filepath.Join("testdata", "*.onnx"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	b, err := kitchenSink(tb, fixtureOpts{}).Bytes()
	if err != nil {
		tb.Fatal(err)
	}
	seeds = append(seeds, b, withUnknownFields(tb))
	seeds = append(seeds, marshal(tb, pbModel(extTensor("W", Float16, []int64{8, 4}, "location", "w.bin", "offset", "64", "length", "64"))))
	return seeds
}

func FuzzLoad(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "w.bin"), bytes.Repeat([]byte{0x3c, 0x00, 0x80, 0x3f}, 64), 0o644); err != nil {
		f.Fatal(err)
	}
	// Save's output goes to a tmpfs when there is one (Save fsyncs)
	out := f.TempDir()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "onnxio-fuzz-"); err == nil {
			f.Cleanup(func() { os.RemoveAll(d) })
			out = d
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := LoadBytes(b, dir, WithLimits(fuzzLimits))
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		exerciseModel(t, m, dir, out)
	})
}

// exerciseModel calls every read-only accessor and a few edits on a model
// that loaded, checking the properties that must hold for any such model.
func exerciseModel(t *testing.T, m *Model, dir, out string) {
	ws, err := m.Weights()
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		if w.OutAxis >= len(w.Shape) || w.InAxis >= len(w.Shape) {
			t.Fatalf("%s: axes %d/%d outside shape %v", w.Name, w.OutAxis, w.InAxis, w.Shape)
		}
		w.ReductionSize()
		w.Params()
	}
	for _, n := range m.Nodes() {
		for _, a := range n.Attrs {
			if a.Type == KindTensor {
				if tt, err := m.NodeTensor(n, a.Name); err == nil {
					exerciseTensor(t, tt)
				}
			}
		}
		n.Int("axis", 0)
		n.Ints("perm")
	}
	m.Inputs()
	m.Outputs()
	m.Opsets()
	m.Metadata()
	m.OpCounts()
	for _, name := range m.Initializers() {
		m.InitializerInfo(name)
		tt, err := m.Initializer(name)
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("initializer %q: error without a sentinel: %v", name, err)
			}
			continue
		}
		exerciseTensor(t, tt)
	}
	// what Bytes writes loads again; without external data it is equal
	b, err := m.Bytes()
	if err == nil {
		back, err := LoadBytes(b, dir, WithLimits(fuzzLimits))
		if err != nil {
			t.Fatalf("Bytes of a loaded model does not load: %v", err)
		}
		hasExternal := false
		for _, name := range m.Initializers() {
			hasExternal = hasExternal || m.IsExternal(name)
		}
		if !hasExternal && !back.Equal(m) {
			t.Fatal("LoadBytes(Bytes()) differs from the model")
		}
	} else if !isSentinel(err) {
		t.Fatalf("Bytes: %v", err)
	}
	if _, err := Match(m, m.Clone()); err != nil {
		t.Fatalf("a model does not match its clone: %v", err)
	}
	// Save with external data and Load give back the same tensors
	if out != "" {
		path := filepath.Join(out, "m.onnx")
		if err := m.Save(path, &SaveOptions{External: ExternalAlways, Threshold: 1, Align: 16}); err == nil {
			back, err := Load(path, WithLimits(fuzzLimits))
			if err != nil {
				t.Fatalf("a saved model does not load: %v", err)
			}
			for _, name := range m.Initializers() {
				a, err1 := m.Initializer(name)
				b, err2 := back.Initializer(name)
				if err1 == nil && (err2 != nil || !bytes.Equal(a.Bytes(), b.Bytes()) || !equalStrings(a.Strings, b.Strings)) {
					t.Fatalf("initializer %q changed through Save/Load (%v)", name, err2)
				}
			}
		} else if !isSentinel(err) {
			t.Fatalf("Save: %v", err)
		}
	}
	c := m.Clone()
	c.EnsureNodeNames()
	c.TopoSort()
	c.FoldConstantWeights()
	c.Weights()
}

func exerciseTensor(t *testing.T, tt *Tensor) {
	if tt.DType.IsNumeric() {
		v, err := tt.Float64()
		if err != nil {
			t.Fatalf("%s: Float64 of a valid tensor: %v", tt.Name, err)
		}
		if int64(len(v)) != tt.NumElements() {
			t.Fatalf("%s: %d values for %v", tt.Name, len(v), tt.Shape)
		}
		tt.Float32()
		tt.ZeroFraction()
		if tt.DType.IsInteger() || tt.DType == Bool {
			tt.Int64()
		}
	}
	enc, err := MarshalTensor(tt)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseTensor(enc)
	if err != nil {
		t.Fatalf("%s: MarshalTensor output does not parse: %v", tt.Name, err)
	}
	if !bytes.Equal(back.Bytes(), tt.Bytes()) || back.DType != tt.DType || !slices.Equal(back.Shape, tt.Shape) || !equalStrings(back.Strings, tt.Strings) {
		t.Fatalf("%s: MarshalTensor → ParseTensor changed the tensor", tt.Name)
	}
}

func FuzzParseTensor(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "golden", "tensors", "*.pb"))
	for _, fn := range files {
		b, err := os.ReadFile(fn)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tt, err := ParseTensor(b)
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		exerciseTensor(t, tt)
	})
}
