package onnxio

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"
)

// mappedModel saves a model with two external tensors (A: 3000 floats, B:
// 5000 floats) and one inline tensor (C) to dir and loads it back.
func mappedModel(t *testing.T, dir string) *Model {
	t.Helper()
	m := New("mapped", 17)
	for _, c := range []struct {
		name string
		n    int
	}{{"A", 3000}, {"B", 5000}, {"C", 4}} {
		vals := make([]float32, c.n)
		for i := range vals {
			vals[i] = float32(i) + float32(len(c.name))/8
		}
		w, err := FromFloat32(c.name, Float, []int64{int64(c.n)}, vals)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetInitializer(w); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "m.onnx")
	if err := m.Save(path, &SaveOptions{External: ExternalAlways, Threshold: 64}); err != nil {
		t.Fatal(err)
	}
	back, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !back.IsExternal("A") || !back.IsExternal("B") || back.IsExternal("C") {
		t.Fatal("fixture: want A and B external, C inline")
	}
	return back
}

// TestMappedMatchesInitializer checks that the mapped view returns the same
// tensors as Initializer (external and inline), that Release leaves them
// readable, that an unknown name is ErrNotFound and that the view refuses
// reads after Close.
func TestMappedMatchesInitializer(t *testing.T) {
	m := mappedModel(t, t.TempDir())
	v := m.Mapped()
	for _, n := range []string{"A", "B", "C"} {
		want, err := m.Initializer(n)
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.Initializer(n)
		if err != nil {
			t.Fatal(err)
		}
		if got.DType != want.DType || len(got.Shape) != 1 || got.Shape[0] != want.Shape[0] || !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("%s: mapped tensor differs from Initializer's", n)
		}
		v.Release(got)
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("%s: bytes changed after Release", n)
		}
		if runtime.GOOS == "linux" && m.IsExternal(n) && cap(got.Bytes()) != len(got.Bytes()) {
			t.Fatalf("%s: a mapped window must not be appendable into the next tensor", n)
		}
	}
	if _, err := v.Initializer("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown name: got %v, want ErrNotFound", err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Initializer("A"); runtime.GOOS == "linux" && !errors.Is(err, ErrMappedClosed) {
		t.Fatalf("after Close: got %v, want ErrMappedClosed", err)
	}
}

var mappedSink int

// TestMappedShrunkFile checks the two ways a data file that shrinks is
// reported: a tensor past the end of the file when it is mapped (ErrFormat,
// from the reference check), and a file truncated after it was mapped,
// whose lost pages fault: with SetPanicOnFault the fault is recovered and
// Fault turns it into an error wrapping ErrFormat naming the file.
func TestMappedShrunkFile(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("memory maps are used on Linux only")
	}
	dir := t.TempDir()
	m := mappedModel(t, dir)
	_, paths, err := m.ExternalFiles()
	if err != nil || len(paths) != 1 {
		t.Fatalf("fixture: %v %v", paths, err)
	}
	v := m.Mapped()
	defer v.Close()
	b, err := v.Initializer("B") // maps the file
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(paths[0], 0); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Initializer("A"); !errors.Is(err, ErrFormat) {
		t.Fatalf("tensor past the end of a shrunk file: got %v, want ErrFormat", err)
	}
	read := func() (err error) {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() {
			if r := recover(); r != nil {
				if err = v.Fault(r); err == nil {
					t.Fatalf("a fault outside the mappings: %v", r)
				}
			}
		}()
		for _, x := range b.Bytes() {
			mappedSink += int(x)
		}
		return nil
	}
	err = read()
	if !errors.Is(err, ErrFormat) || !bytes.Contains([]byte(err.Error()), []byte(filepath.Base(paths[0]))) {
		t.Fatalf("read of truncated pages: got %v, want ErrFormat naming the file", err)
	}
	if v.Fault("not a fault") != nil {
		t.Fatal("Fault must ignore other panic values")
	}
}

// TestSaveMapInputs saves a model with external data through a Transform
// that returns some tensors unchanged and replaces others, with MapInputs,
// to external data (tensors above and below the threshold) and inline: the
// saved model holds the same values as a save without maps (the inline
// case fails with a fault if a tensor kept inline still points into a map
// when the model is serialized, after the maps are closed).
func TestSaveMapInputs(t *testing.T) {
	dir := t.TempDir()
	m := mappedModel(t, dir)
	double := func(name string, in *Tensor) (*Tensor, error) {
		if name != "B" {
			return in, nil
		}
		v, err := in.Float32()
		if err != nil {
			return nil, err
		}
		for i := range v {
			v[i] *= 2
		}
		return FromFloat32(name, Float, in.Shape, v)
	}
	for _, c := range []struct {
		name string
		o    SaveOptions
	}{
		{"external", SaveOptions{External: ExternalAlways, Threshold: 64}},
		{"external, A under the threshold", SaveOptions{External: ExternalAlways, Threshold: 16000}},
		{"inline", SaveOptions{External: ExternalNever}},
	} {
		t.Run(c.name, func(t *testing.T) {
			want, got := c.o, c.o
			want.Transform, got.Transform = double, double
			got.MapInputs = true
			wp, gp := filepath.Join(dir, "want-"+c.name+".onnx"), filepath.Join(dir, "got-"+c.name+".onnx")
			if err := m.Save(wp, &want); err != nil {
				t.Fatal(err)
			}
			if err := m.Save(gp, &got); err != nil {
				t.Fatal(err)
			}
			wm, err := Load(wp)
			if err != nil {
				t.Fatal(err)
			}
			gm, err := Load(gp)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range []string{"A", "B", "C"} {
				a, err := wm.Initializer(n)
				if err != nil {
					t.Fatal(err)
				}
				b, err := gm.Initializer(n)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(a.Bytes(), b.Bytes()) {
					t.Fatalf("%s differs between the saves with and without maps", n)
				}
			}
		})
	}
}
