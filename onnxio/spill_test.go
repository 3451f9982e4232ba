package onnxio

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSpill checks that tensors set on a model with Spill are kept in the
// spill file (not in memory), read back, clone, save (external and inline)
// and serialize with the bytes they were set with; that small tensors stay
// in memory; that the spill file is no file of the model and leaves nothing
// in its folder.
func TestSpill(t *testing.T) {
	dir := t.TempDir()
	m := New("spill", 17)
	small, _ := FromFloat32("small", Float, []int64{2}, []float32{1, 2})
	if err := m.SetInitializer(small); err != nil {
		t.Fatal(err)
	}
	if err := m.Spill(dir, 64); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("the spill file is visible in its folder: %v", ents)
	}
	vals := make([]float32, 100)
	for i := range vals {
		vals[i] = float32(i) - 40.5
	}
	big, _ := FromFloat32("big", Float, []int64{10, 10}, vals)
	if err := m.SetInitializer(big); err != nil {
		t.Fatal(err)
	}
	tiny, _ := FromFloat32("tiny", Float, []int64{3}, []float32{7, 8, 9})
	if err := m.SetInitializer(tiny); err != nil {
		t.Fatal(err)
	}
	if got := m.Spilled(); got != 400 {
		t.Fatalf("Spilled = %d, want 400 (the big tensor only)", got)
	}
	if !m.IsExternal("big") || m.IsExternal("tiny") {
		t.Fatalf("big external %v, tiny external %v; want true, false", m.IsExternal("big"), m.IsExternal("tiny"))
	}
	if locs, _, err := m.ExternalFiles(); err != nil || len(locs) != 0 {
		t.Fatalf("ExternalFiles = %v, %v; the spill file is no file of the model", locs, err)
	}
	check := func(where string, m *Model) {
		t.Helper()
		got, err := m.Initializer("big")
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		if !bytes.Equal(got.Bytes(), big.Bytes()) {
			t.Fatalf("%s: the spilled tensor reads back different bytes", where)
		}
	}
	check("model", m)
	c := m.Clone()
	check("clone", c)
	// replacing a spilled tensor spills the new value; the clone keeps the old
	vals2 := append([]float32(nil), vals...)
	vals2[0] = 1000
	big2, _ := FromFloat32("big", Float, []int64{10, 10}, vals2)
	if err := m.SetInitializer(big2); err != nil {
		t.Fatal(err)
	}
	check("clone after the original changed", c)
	if got, _ := m.Initializer("big"); !bytes.Equal(got.Bytes(), big2.Bytes()) {
		t.Fatal("the replaced tensor reads back the old bytes")
	}
	for _, mode := range []ExternalMode{ExternalAlways, ExternalNever} {
		out := filepath.Join(t.TempDir(), "out.onnx")
		if err := c.Save(out, &SaveOptions{External: mode, Threshold: 64}); err != nil {
			t.Fatalf("save (mode %d): %v", mode, err)
		}
		l, err := Load(out)
		if err != nil {
			t.Fatalf("load (mode %d): %v", mode, err)
		}
		check("saved", l)
		if mode == ExternalAlways != l.IsExternal("big") {
			t.Fatalf("mode %d: saved big external = %v", mode, l.IsExternal("big"))
		}
	}
	b, err := c.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	l, err := LoadBytes(b, "")
	if err != nil {
		t.Fatal(err)
	}
	check("serialized", l)
	if _, err := c.WriteReferencing(); !errors.Is(err, ErrNotReferencable) {
		t.Fatalf("WriteReferencing of a spilled model: %v, want ErrNotReferencable", err)
	}
	if err := c.RemoveInitializer("big"); err != nil {
		t.Fatal(err)
	}
	if len(c.spilled) != 0 {
		t.Fatalf("a removed tensor stays in the spill index: %d entries", len(c.spilled))
	}
}

// TestWriteReferencing checks that the written file refers to the model's
// own data file (nothing copied), loads with the same tensors, and that a
// model without a folder is refused.
func TestWriteReferencing(t *testing.T) {
	dir := t.TempDir()
	m := New("ref", 17)
	vals := make([]float32, 512)
	for i := range vals {
		vals[i] = float32(i)
	}
	w, _ := FromFloat32("w", Float, []int64{512}, vals)
	if err := m.SetInitializer(w); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "m.onnx")
	if err := m.Save(src, &SaveOptions{External: ExternalAlways}); err != nil {
		t.Fatal(err)
	}
	l, err := Load(src)
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.WriteReferencing()
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(p)
	if filepath.Dir(p) != dir || !strings.HasPrefix(filepath.Base(p), ".onnxpost-ref-") {
		t.Fatalf("written to %s, want a hidden file in %s", p, dir)
	}
	st, _ := os.Stat(p)
	if st.Size() >= 2048 {
		t.Fatalf("the referencing file holds %d bytes: the tensor was copied", st.Size())
	}
	r, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Initializer("w")
	if err != nil || !bytes.Equal(got.Bytes(), w.Bytes()) {
		t.Fatalf("tensor through the referencing file: %v", err)
	}
	if l.ExternalBytes() != 2048 {
		t.Fatalf("ExternalBytes = %d, want 2048", l.ExternalBytes())
	}
	if _, err := New("x", 17).WriteReferencing(); !errors.Is(err, ErrNotReferencable) {
		t.Fatalf("model without a folder: %v, want ErrNotReferencable", err)
	}
}

// TestSpillConcurrent reads spilled tensors from several goroutines and
// saves through a Transform with several workers (run with -race).
func TestSpillConcurrent(t *testing.T) {
	m := New("spill", 17)
	if err := m.Spill(t.TempDir(), 1); err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := 0; i < 8; i++ {
		v := make([]float32, 256)
		for j := range v {
			v[j] = float32(i*1000 + j)
		}
		name := "w" + string(rune('a'+i))
		x, _ := FromFloat32(name, Float, []int64{256}, v)
		if err := m.SetInitializer(x); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	done := make(chan error, len(names))
	for _, n := range names {
		go func(n string) {
			x, err := m.Initializer(n)
			if err == nil && len(x.Bytes()) != 1024 {
				err = errors.New("short read")
			}
			done <- err
		}(n)
	}
	for range names {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "o.onnx")
	id := func(_ string, x *Tensor) (*Tensor, error) { return x, nil }
	if err := m.Save(out, &SaveOptions{External: ExternalAlways, Transform: id, Workers: 4}); err != nil {
		t.Fatal(err)
	}
	l, err := Load(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		a, _ := m.Initializer(n)
		b, err := l.Initializer(n)
		if err != nil || !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Fatalf("%s differs after a concurrent save: %v", n, err)
		}
	}
}
