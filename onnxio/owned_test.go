package onnxio

import (
	"encoding/binary"
	"math"
	"slices"
	"testing"
	"unsafe"
)

// TestOwnedInitializer: the bytes of an owned initializer (external A and
// B, inline C) are the caller's: writing them leaves the model's tensor
// unchanged; Float32View aliases them and holds Float32's values.
func TestOwnedInitializer(t *testing.T) {
	m := mappedModel(t, t.TempDir())
	for _, n := range []string{"A", "B", "C"} {
		want, err := m.Initializer(n)
		if err != nil {
			t.Fatal(err)
		}
		wantVals, err := want.Float32()
		if err != nil {
			t.Fatal(err)
		}
		o, err := m.OwnedInitializer(n)
		if err != nil {
			t.Fatal(err)
		}
		v, ok := o.Float32View()
		if !ok {
			t.Fatalf("%s: no float32 view", n)
		}
		if !slices.Equal(v, wantVals) {
			t.Fatalf("%s: view differs from Float32", n)
		}
		v[0] = 42 // writes the owned bytes
		if got := math.Float32frombits(binary.LittleEndian.Uint32(o.Bytes())); got != 42 {
			t.Fatalf("%s: the view is not over the bytes (%v)", n, got)
		}
		again, err := m.Initializer(n)
		if err != nil {
			t.Fatal(err)
		}
		if vals, _ := again.Float32(); !slices.Equal(vals, wantVals) {
			t.Fatalf("%s: writing the owned bytes changed the model", n)
		}
	}
	if _, err := m.OwnedInitializer("nope"); err == nil {
		t.Fatal("unknown name: no error")
	}
}

// TestFloat32ViewRefuses: other dtypes and misaligned bytes get no view.
func TestFloat32ViewRefuses(t *testing.T) {
	d, err := FromFloat64("d", Double, []int64{2}, []float64{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Float32View(); ok {
		t.Error("float64 tensor: got a float32 view")
	}
	// an offset that is not a multiple of 4 (a small allocation may itself
	// start at any byte: the tiny allocator packs them)
	raw := make([]byte, 64)
	off := 1
	for uintptr(unsafe.Pointer(&raw[off]))%4 == 0 {
		off++
	}
	odd, err := NewTensor("f", Float, []int64{2}, raw[off:off+8])
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := odd.Float32View(); ok {
		t.Error("misaligned bytes: got a view")
	}
}
