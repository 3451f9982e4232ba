package onnxio

import (
	"bytes"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestDataWriter: whatever the pieces (aligned or not in memory, any
// lengths, larger than the staging block, empty), the file holds their
// concatenation, with direct writes on and off, and a refused direct
// write falls back to an ordinary one without losing or repeating bytes.
func TestDataWriter(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	piece := func(n int, align bool) []byte {
		var b []byte
		if align {
			b = alignedBlock(n + 1)[:n]
		} else {
			b = alignedBlock(n + 1)[1 : n+1]
		}
		rng.Read(b)
		return b
	}
	cases := []struct {
		name   string
		pieces [][]byte
	}{
		{"one aligned block", [][]byte{piece(directAlign, true)}},
		{"aligned, not a block multiple", [][]byte{piece(3*directAlign+17, true)}},
		{"unaligned memory", [][]byte{piece(5*directAlign, false)}},
		{"small pieces", [][]byte{piece(10, false), piece(4000, false), piece(200, true), piece(1, false)}},
		{"larger than the staging block", [][]byte{piece(directStage+directAlign+5, true), piece(directStage+3, false)}},
		{"exactly the staging block", [][]byte{piece(100, false), piece(directStage-100, false), piece(directAlign, true)}},
		{"empty pieces", [][]byte{{}, piece(9000, true), {}, piece(3, false)}},
		{"nothing", nil},
	}
	defer func(v bool) { directIO = v }(directIO)
	for _, direct := range []bool{true, false} {
		directIO = direct
		for _, tc := range cases {
			f, err := os.CreateTemp(t.TempDir(), "d")
			if err != nil {
				t.Fatal(err)
			}
			w := newDataWriter(f)
			if direct && !w.direct && runtime.GOOS == "linux" {
				t.Logf("%s: direct I/O refused by the temporary folder's filesystem: testing the fallback only", tc.name)
			}
			var want []byte
			for _, p := range tc.pieces {
				if n, err := w.Write(p); err != nil || n != len(p) {
					t.Fatalf("direct=%v %s: Write = %d, %v", direct, tc.name, n, err)
				}
				want = append(want, p...)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			f.Close()
			got, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("direct=%v %s: the file has %d bytes, want %d (or different bytes)", direct, tc.name, len(got), len(want))
			}
		}
	}
	// io.Copy from a file section (what an unchanged external tensor is
	// copied with) and from a plain reader, both modes
	for _, direct := range []bool{true, false} {
		directIO = direct
		src := piece(directStage+3*directAlign+11, false)
		sf, err := os.CreateTemp(t.TempDir(), "s")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sf.Write(src); err != nil {
			t.Fatal(err)
		}
		f, err := os.CreateTemp(t.TempDir(), "d")
		if err != nil {
			t.Fatal(err)
		}
		w := newDataWriter(f)
		head := piece(100, false)
		w.Write(head)
		if _, err := sf.Seek(7, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if n, err := io.Copy(w, &io.LimitedReader{R: sf, N: int64(len(src) - 7)}); err != nil || n != int64(len(src)-7) {
			t.Fatalf("direct=%v: io.Copy from a file = %d, %v", direct, n, err)
		}
		if n, err := io.Copy(w, bytes.NewReader(src[:5000])); err != nil || n != 5000 {
			t.Fatalf("direct=%v: io.Copy from a reader = %d, %v", direct, n, err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		sf.Close()
		f.Close()
		got, _ := os.ReadFile(f.Name())
		want := append(append(append([]byte(nil), head...), src[7:]...), src[:5000]...)
		if !bytes.Equal(got, want) {
			t.Errorf("direct=%v: after io.Copy the file has %d bytes, want %d (or different bytes)", direct, len(got), len(want))
		}
	}
	// a direct write the kernel refuses (memory not aligned) falls back
	directIO = true
	f, err := os.CreateTemp(t.TempDir(), "d")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := newDataWriter(f)
	if !w.direct {
		t.Skip("direct I/O unavailable here: no refusal to provoke")
	}
	a, b := piece(2*directAlign, true), piece(directAlign, false)
	if _, err := w.Write(a); err != nil {
		t.Fatal(err)
	}
	if err := w.writeDirect(b); err != nil {
		t.Fatalf("a refused direct write did not fall back: %v", err)
	}
	if w.direct {
		t.Error("still direct after a refused write")
	}
	c := piece(777, false)
	if _, err := w.Write(c); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(f.Name())
	if want := append(append(append([]byte(nil), a...), b...), c...); !bytes.Equal(got, want) {
		t.Errorf("after the fallback the file has %d bytes, want %d (or different bytes)", len(got), len(want))
	}
	// the refusal in the middle of a Write (a staging block the kernel
	// refuses): the rest of that Write and the staged bytes are not lost
	f2, err := os.CreateTemp(t.TempDir(), "d")
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	w = newDataWriter(f2)
	w.stage = alignedBlock(directStage + 1)[1 : directStage+1]
	d := piece(directStage+5000, false)
	if n, err := w.Write(d); err != nil || n != len(d) {
		t.Fatalf("Write across a refused flush = %d, %v", n, err)
	}
	if w.direct {
		t.Error("still direct after a refused flush")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(f2.Name()); !bytes.Equal(got, d) {
		t.Errorf("after a refused flush the file has %d bytes, want %d (or different bytes)", len(got), len(d))
	}
}

// TestSaveDirectEqualsBuffered: a save with direct writes gives the same
// model and data files as one through the page cache (tensors of sizes
// that are not block multiples, unchanged external tensors copied from
// the input, transformed ones), for external and inline outputs.
func TestSaveDirectEqualsBuffered(t *testing.T) {
	m := kitchenSink(t, fixtureOpts{hidden: 40001}) // W1: 8×40001 float32, not a block multiple; inline model > directMin
	dir := t.TempDir()
	in := filepath.Join(dir, "in.onnx")
	if err := m.Save(in, &SaveOptions{External: ExternalAlways, Align: 64}); err != nil {
		t.Fatal(err)
	}
	src, err := Load(in)
	if err != nil {
		t.Fatal(err)
	}
	double := func(name string, t *Tensor) (*Tensor, error) {
		if t.DType != Float || name == "W2" { // W2 stays: copied from the input's data
			return t, nil
		}
		v, err := t.Float32()
		if err != nil {
			return nil, err
		}
		for i := range v {
			v[i] *= 2
		}
		return FromFloat32(name, Float, t.Shape, v)
	}
	defer func(v bool) { directIO = v }(directIO)
	for _, tc := range []struct {
		name string
		opts SaveOptions
	}{
		{"external", SaveOptions{External: ExternalAlways}},
		{"external, transformed", SaveOptions{External: ExternalAlways, Transform: double, MapInputs: true}},
		{"external, byte alignment", SaveOptions{External: ExternalAlways, Align: 1, Threshold: 100}},
		{"inline", SaveOptions{External: ExternalNever}},
	} {
		var files [2]map[string][]byte
		for k, direct := range []bool{false, true} {
			directIO = direct
			out := filepath.Join(t.TempDir(), "out.onnx")
			o := tc.opts
			w, err := src.SaveFile(out, &o)
			if err != nil {
				t.Fatalf("%s, direct=%v: %v", tc.name, direct, err)
			}
			files[k] = map[string][]byte{}
			for role, p := range map[string]string{"model": w.Path, "data": w.DataPath()} {
				if p == "" {
					continue
				}
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if w.DataFile != "" { // its name is random
					b = bytes.ReplaceAll(b, []byte(w.DataFile), []byte("DATA"))
				}
				files[k][role] = b
			}
		}
		if !bytes.Equal(files[0]["data"], files[1]["data"]) {
			t.Errorf("%s: data files differ (%d vs %d bytes)", tc.name, len(files[0]["data"]), len(files[1]["data"]))
		}
		if !bytes.Equal(files[0]["model"], files[1]["model"]) {
			t.Errorf("%s: model files differ (%d vs %d bytes)", tc.name, len(files[0]["model"]), len(files[1]["model"]))
		}
		if tc.opts.External == ExternalNever && len(files[1]["model"]) < directMin {
			t.Errorf("%s: the model (%d bytes) is below directMin: the direct path is not tested", tc.name, len(files[1]["model"]))
		}
	}
}
