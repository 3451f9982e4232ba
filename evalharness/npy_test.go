package evalharness

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness/npz"
	"github.com/onnxpost/onnxpost/internal/pyoracle"
	"github.com/onnxpost/onnxpost/onnxio"
)

func TestReadNumpyFixtures(t *testing.T) {
	for _, c := range []struct {
		file  string
		input string
		shape []int64
	}{
		{"mlp_data.npz", "x", []int64{50, 16}},        // numpy.savez (stored)
		{"cnn_data.npz", "img", []int64{40, 1, 8, 8}}, // numpy.savez_compressed (deflate)
	} {
		m, err := ReadNPZ(testdata(c.file))
		if err != nil {
			t.Fatal(err)
		}
		if a := m[c.input]; a == nil || a.DType != onnxio.Float || !slices.Equal(a.Shape, c.shape) {
			t.Errorf("%s: %s = %+v, want float32 %v", c.file, c.input, a, c.shape)
		}
		if l := m["labels"]; l == nil || l.DType != onnxio.Int64 || l.Shape[0] != c.shape[0] {
			t.Errorf("%s: labels = %+v", c.file, l)
		}
	}
}

// TestNumpyOracle has numpy write arrays of every supported dtype (and the
// layouts that must be rejected) and checks what the Go reader makes of
// them against values printed by numpy.
func TestNumpyOracle(t *testing.T) {
	dir := t.TempDir()
	out := pyoracle.Run(t, `
import json, sys, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(3)
arrays = {
  "f32": rng.standard_normal((3, 5)).astype(np.float32),
  "f64": rng.standard_normal((4,)),
  "f16": rng.standard_normal((2, 3)).astype(np.float16),
  "i64": rng.integers(-2**40, 2**40, (2, 2, 2)),
  "i32": rng.integers(-1000, 1000, (6,)).astype(np.int32),
  "i16": rng.integers(-1000, 1000, (6,)).astype(np.int16),
  "i8": rng.integers(-100, 100, (6,)).astype(np.int8),
  "u8": rng.integers(0, 255, (3, 2)).astype(np.uint8),
  "u16": rng.integers(0, 60000, (3,)).astype(np.uint16),
  "u32": rng.integers(0, 2**31, (3,)).astype(np.uint32),
  "b": rng.integers(0, 2, (5,)).astype(bool),
  "scalar": np.float32(2.5),
  "empty": np.zeros((0, 3), np.float32),
  "sliced": rng.standard_normal((4, 6)).astype(np.float32)[:, ::2],
}
np.savez(d + "/ok.npz", **arrays)
np.savez_compressed(d + "/okz.npz", **arrays)
with open(d + "/v3.npy", "wb") as f:
  np.lib.format.write_array(f, arrays["f32"], version=(3, 0))
np.save(d + "/fortran.npy", np.asfortranarray(rng.standard_normal((3, 4))))
np.save(d + "/big.npy", np.arange(6, dtype=">f4"))
json.dump({k: np.asarray(v, dtype=np.float64).ravel().tolist() for k, v in arrays.items()}, sys.stdout)
`, dir)
	var want map[string][]float64
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ok.npz", "okz.npz"} {
		m, err := ReadNPZ(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		for name, w := range want {
			a := m[name]
			if a == nil {
				t.Errorf("%s: %s missing", f, name)
				continue
			}
			got, err := a.Float64()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(w) {
				t.Errorf("%s: %s has %d values, numpy %d", f, name, len(got), len(w))
				continue
			}
			for i := range got {
				if got[i] != w[i] && !(math.IsNaN(got[i]) && math.IsNaN(w[i])) {
					t.Errorf("%s: %s[%d] = %v, numpy %v", f, name, i, got[i], w[i])
					break
				}
			}
		}
	}
	fv3, err := os.Open(filepath.Join(dir, "v3.npy"))
	if err != nil {
		t.Fatal(err)
	}
	defer fv3.Close()
	if a, err := npz.ReadNPY(fv3); err != nil || !slices.Equal(a.Shape, []int64{3, 5}) {
		t.Errorf("version 3.0 file: %v, %v", a, err)
	}
	for file, msg := range map[string]string{"fortran.npy": "Fortran-order", "big.npy": "big-endian"} {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := npz.ReadNPY(bytes.NewReader(b)); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: error %v, want one containing %q", file, err, msg)
		}
	}
}
