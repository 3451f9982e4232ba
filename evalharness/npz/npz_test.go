package npz

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestNPYRoundTrip(t *testing.T) {
	cases := []struct {
		name  string
		typ   Type
		shape []int64
	}{
		{"float32 matrix", Float32, []int64{3, 4}},
		{"float64 vector", Float64, []int64{5}},
		{"int64 3-D", Int64, []int64{2, 1, 3}},
		{"int32", Int32, []int64{2, 2}},
		{"uint8", Uint8, []int64{7}},
		{"int8", Int8, []int64{7}},
		{"bool", Bool, []int64{4}},
		{"float16", Float16, []int64{2, 3}},
		{"uint64", Uint64, []int64{2}},
		{"scalar", Float32, []int64{}},
		{"empty", Float32, []int64{0, 5}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, _ := numElements(c.shape, 1<<20)
			a := &Array{Type: c.typ, Shape: c.shape, Data: make([]byte, int(n)*elemSize(c.typ))}
			for i := range a.Data {
				a.Data[i] = byte(i*37 + 11)
			}
			if c.typ == Bool {
				for i := range a.Data {
					a.Data[i] &= 1
				}
			}
			var buf bytes.Buffer
			if err := WriteNPY(&buf, a); err != nil {
				t.Fatal(err)
			}
			if buf.Len()%64 != 0 && len(a.Data) == 0 {
				t.Errorf("header not padded to 64 bytes: %d", buf.Len())
			}
			b, err := ReadNPY(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if b.Type != a.Type || !slices.Equal(b.Shape, a.Shape) || !bytes.Equal(b.Data, a.Data) {
				t.Errorf("round trip: got %v%v, want %v%v", b.Type, b.Shape, a.Type, a.Shape)
			}
		})
	}
}

// npyBytes builds a .npy file with the given header dict and data.
func npyBytes(header string, data []byte) []byte {
	h := header + strings.Repeat(" ", (64-(10+len(header)+1)%64)%64) + "\n"
	b := append([]byte("\x93NUMPY\x01\x00"), 0, 0)
	binary.LittleEndian.PutUint16(b[8:], uint16(len(h)))
	return append(append(b, h...), data...)
}

func TestNPYErrors(t *testing.T) {
	f4 := make([]byte, 16)
	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"bad magic", []byte("NOTNUMPYxxxxxxxxxxxx"), "bad magic"},
		{"too short", []byte("\x93NUM"), "too short"},
		{"fortran order", npyBytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", f4), "Fortran-order"},
		{"big-endian", npyBytes("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }", f4), "big-endian"},
		{"object dtype", npyBytes("{'descr': '|O', 'fortran_order': False, 'shape': (2, 2), }", f4), "unsupported dtype"},
		{"unicode dtype", npyBytes("{'descr': '<U3', 'fortran_order': False, 'shape': (2,), }", f4), "unsupported dtype"},
		{"structured dtype", npyBytes("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", f4), "structured"},
		{"truncated data", npyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", f4), "truncated"},
		{"trailing bytes", npyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", f4), "trailing"},
		{"negative dim", npyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 2), }", f4), "invalid dimension"},
		{"huge shape", npyBytes("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", f4), "exceeds the limit"},
		{"unknown key", npyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), 'x': 1}", f4), "unknown key"},
		{"missing shape", npyBytes("{'descr': '<f4', 'fortran_order': False}", f4), "shape is missing"},
		{"not a dict", npyBytes("[1, 2]", f4), "not a dictionary"},
		{"garbage header", npyBytes("{'descr': '<f4', 'fortran_order': Fals", f4), "header"},
		{"version 9", append([]byte("\x93NUMPY\x09\x00"), 0, 0), "version 9"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadNPY(bytes.NewReader(c.file))
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want ErrFormat containing %q", err, c.want)
			}
		})
	}
}

func TestNPZErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := ReadFile(write("notzip.npz", []byte("hello"))); err == nil || !strings.Contains(err.Error(), "not a .npz") {
		t.Errorf("not a zip: %v", err)
	}
	var buf bytes.Buffer
	if err := Write(&buf, map[string]*Array{"a": f32([]int64{2}, []float32{1, 2})}); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	// Corrupt the stored data: the zip checksum must catch it.
	bad := append([]byte(nil), good...)
	i := bytes.Index(bad, []byte{0, 0, 0x80, 0x3f}) // float32 1.0
	bad[i+3] ^= 0x40
	if _, err := ReadFile(write("crc.npz", bad)); err == nil {
		t.Error("corrupted data read without error")
	}
}

// FuzzNPZ checks that no input makes the .npz reader panic or exceed its
// limits, and that whatever it accepts is consistent and re-encodes to the
// same arrays.
func FuzzNPZ(f *testing.F) {
	for _, name := range []string{"mlp_data.npz", "cnn_data.npz"} {
		if b, err := os.ReadFile(filepath.Join("..", "testdata", name)); err == nil {
			f.Add(b)
		}
	}
	var buf bytes.Buffer
	Write(&buf, map[string]*Array{
		"x":      f32([]int64{2, 2}, []float32{1, 2, 3, 4}),
		"labels": i64([]int64{2}, []int64{0, 1}),
	})
	f.Add(buf.Bytes())
	f.Add(npyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", []byte{0, 0, 0x80, 0x3f}))
	lim := Limits{MaxArrayBytes: 1 << 20, MaxArrays: 16, MaxHeaderBytes: 4096, MaxRank: 8}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := lim.Read(bytes.NewReader(b), int64(len(b)))
		if err == nil {
			for name, a := range m {
				if err := a.Validate(); err != nil {
					t.Fatalf("%s: accepted invalid array: %v", name, err)
				}
				if int64(len(a.Data)) > lim.MaxArrayBytes {
					t.Fatalf("%s: %d bytes past the limit", name, len(a.Data))
				}
			}
			var out bytes.Buffer
			if err := Write(&out, m); err != nil {
				t.Fatal(err)
			}
			m2, err := lim.Read(bytes.NewReader(out.Bytes()), int64(out.Len()))
			if err != nil {
				t.Fatalf("re-encoded archive rejected: %v", err)
			}
			for name, a := range m {
				if a2 := m2[name]; a2 == nil || a2.Type != a.Type || !slices.Equal(a2.Shape, a.Shape) || !bytes.Equal(a2.Data, a.Data) {
					t.Fatalf("%s changed in a round trip", name)
				}
			}
		}
		// The same bytes as a bare .npy.
		if a, err := lim.ReadNPY(bytes.NewReader(b)); err == nil {
			if err := a.Validate(); err != nil {
				t.Fatalf("accepted invalid .npy: %v", err)
			}
		}
	})
}

func f32(shape []int64, v []float32) *Array {
	a := &Array{Type: Float32, Shape: shape, Data: make([]byte, 4*len(v))}
	for i, x := range v {
		binary.LittleEndian.PutUint32(a.Data[4*i:], math.Float32bits(x))
	}
	return a
}

func i64(shape []int64, v []int64) *Array {
	a := &Array{Type: Int64, Shape: shape, Data: make([]byte, 8*len(v))}
	for i, x := range v {
		binary.LittleEndian.PutUint64(a.Data[8*i:], uint64(x))
	}
	return a
}
