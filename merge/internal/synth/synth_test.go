package synth

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

func TestWriteEqualsBuild(t *testing.T) {
	c := Config{Layers: 2, Hidden: 16, FFN: 32, Vocab: 40, Classes: 4}
	mem, err := Build(c, 1, 2, 0.01)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "m.onnx")
	if err := Write(p, c, 1, 2, 0.01, true); err != nil {
		t.Fatal(err)
	}
	disk, err := onnxio.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	var params int64
	for _, n := range mem.Initializers() {
		a, _ := mem.Initializer(n)
		b, err := disk.Initializer(n)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Bytes(), b.Bytes()) || a.DType != b.DType {
			t.Fatalf("tensor %q differs", n)
		}
		if a.DType.IsFloat() {
			params += a.NumElements()
		}
	}
	if params != c.Params() {
		t.Fatalf("%d parameters, Params() says %d", params, c.Params())
	}
	if !disk.IsExternal("l0.fc1.w") {
		t.Fatal("not written with external data")
	}
	base, _ := Build(c, 1, 0, 0)
	x, _ := base.Initializer("l0.q.w")
	y, _ := mem.Initializer("l0.q.w")
	if bytes.Equal(x.Bytes(), y.Bytes()) {
		t.Fatal("fine-tune equals the base")
	}
}

func TestForBytes(t *testing.T) {
	c := ForBytes(1e9)
	if b := 4 * c.Params(); b < 1e9 || b > 1.1e9 {
		t.Fatalf("ForBytes(1e9) gives %d bytes", b)
	}
}
