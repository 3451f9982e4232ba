package evalharness

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness/npz"
	"github.com/onnxpost/onnxpost/onnxio"
)

// writeCompressedNPZ writes arrays (name → .npy bytes) as a deflate
// archive, like numpy.savez_compressed.
func writeCompressedNPZ(t *testing.T, path string, arrays map[string]*npz.Array, order []string) {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, n := range order {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: n + ".npy", Method: zip.Deflate})
		if err != nil {
			t.Fatal(err)
		}
		if err := npz.WriteNPY(w, arrays[n]); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func zerosF32(shape ...int64) *npz.Array {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return &npz.Array{Type: npz.Float32, Shape: shape, Data: make([]byte, 4*n)}
}

// TestDatasetBudgetsAndExtras: arrays the model does not read are skipped
// unread (an extra of another length no longer rejects the dataset), and
// what is read is bounded in total before it is inflated.
func TestDatasetBudgetsAndExtras(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "d.npz")
	labels := &npz.Array{Type: npz.Int64, Shape: []int64{4}, Data: make([]byte, 32)}
	// 16 MB of zeros compress to a few KB: an "unused" array that used to
	// be inflated (and rejected the dataset: 1000 samples, not 4)
	writeCompressedNPZ(t, p, map[string]*npz.Array{
		"x": zerosF32(4, 3), "labels": labels, "unused": zerosF32(1000, 4096),
	}, []string{"x", "labels", "unused"})
	if st, _ := os.Stat(p); st.Size() > 1<<20 {
		t.Fatalf("fixture is %d bytes", st.Size())
	}
	ds, err := LoadDatasetFor(p, DatasetOptions{Inputs: []string{"x"}, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if ds.N != 4 || ds.Labels == nil || ds.Inputs["unused"] != nil {
		t.Fatalf("N %d, labels %v, inputs %v", ds.N, ds.Labels, ds.Inputs)
	}
	if err := ds.Check([]TensorInfo{{Name: "x", DType: onnxio.Float, Shape: []int64{-1, 3}}}); err != nil {
		t.Fatal(err)
	}
	if len(ds.Extra) != 1 || ds.Extra[0] != "unused" {
		t.Errorf("Extra = %v, want [unused]", ds.Extra)
	}
	// reading everything within a 1 MB budget: refused before inflating
	_, err = LoadDatasetFor(p, DatasetOptions{MaxBytes: 1 << 20})
	if !errors.Is(err, ErrDataset) || !errors.Is(err, npz.ErrLimit) || !strings.Contains(err.Error(), `"unused"`) {
		t.Errorf("whole file within 1 MB: got %v, want ErrDataset and npz.ErrLimit naming \"unused\"", err)
	}
	// the model's own input over the budget
	_, err = LoadDatasetFor(p, DatasetOptions{Inputs: []string{"unused"}, MaxBytes: 1 << 20})
	if !errors.Is(err, npz.ErrLimit) {
		t.Errorf("needed array over the budget: got %v, want npz.ErrLimit", err)
	}
	// none of the model's inputs
	_, err = LoadDatasetFor(p, DatasetOptions{Inputs: []string{"input_ids"}})
	if !errors.Is(err, ErrDataset) {
		t.Errorf("no input array: got %v, want ErrDataset", err)
	}
}

// TestNPZEntryLyingAboutItsSize: an archive entry whose directory claims
// 1 KB but whose data inflates to 4 MB is refused without reading past the
// claim.
func TestNPZEntryLyingAboutItsSize(t *testing.T) {
	for name, shape := range map[string][]int64{
		"header says 4 MB":    {1 << 20},
		"header fits the lie": {100},
	} {
		var npy bytes.Buffer
		if err := npz.WriteNPY(&npy, zerosF32(shape...)); err != nil {
			t.Fatal(err)
		}
		for npy.Len() < 4<<20 {
			npy.Write(make([]byte, 1<<20)) // the data goes on past what the header says
		}
		var comp bytes.Buffer
		fw, _ := flate.NewWriter(&comp, flate.BestCompression)
		fw.Write(npy.Bytes())
		fw.Close()
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		w, err := zw.CreateRaw(&zip.FileHeader{Name: "x.npy", Method: zip.Deflate,
			CompressedSize64: uint64(comp.Len()), UncompressedSize64: 1024})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(comp.Bytes())
		zw.Close()
		p := filepath.Join(t.TempDir(), "lie.npz")
		os.WriteFile(p, buf.Bytes(), 0o644)
		_, err = LoadDatasetFor(p, DatasetOptions{Inputs: []string{"x"}})
		if !errors.Is(err, ErrDataset) || !errors.Is(err, npz.ErrFormat) {
			t.Errorf("%s: got %v, want ErrDataset and npz.ErrFormat", name, err)
		}
	}
}

// TestDatasetSpecialFiles: a FIFO or a link to /dev/zero as the dataset or
// as a test-data tensor is refused before it is opened (a FIFO nobody
// writes would block the open forever; /dev/zero never ends).
func TestDatasetSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.npz")
	if err := mkfifo(fifo); err != nil {
		t.Skip("no FIFOs here:", err)
	}
	zero := filepath.Join(dir, "zero.npz")
	os.Symlink("/dev/zero", zero)
	tdFifo := filepath.Join(dir, "td_fifo", "test_data_set_0")
	tdZero := filepath.Join(dir, "td_zero", "test_data_set_0")
	os.MkdirAll(tdFifo, 0o755)
	os.MkdirAll(tdZero, 0o755)
	mkfifo(filepath.Join(tdFifo, "input_0.pb"))
	os.Symlink("/dev/zero", filepath.Join(tdZero, "input_0.pb"))
	for _, p := range []string{fifo, zero, filepath.Dir(tdFifo), filepath.Dir(tdZero)} {
		if _, err := LoadDataset(p); !errors.Is(err, ErrDataset) || !strings.Contains(err.Error(), "not a regular file") && !strings.Contains(err.Error(), "is a ") {
			t.Errorf("%s: got %v, want ErrDataset refusing a special file", p, err)
		}
	}
}

// writeTestData writes one test_data_set_0 with the given tensors.
func writeTestData(t *testing.T, files map[string]*onnxio.Tensor) string {
	t.Helper()
	dir := t.TempDir()
	sd := filepath.Join(dir, "test_data_set_0")
	os.MkdirAll(sd, 0o755)
	for name, tensor := range files {
		b, err := onnxio.MarshalTensor(tensor)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(sd, name), b, 0o644)
	}
	return dir
}

// TestTestDataDirChecks: expected outputs with fewer rows than the inputs,
// and a folder over the byte budget, are clear errors.
func TestTestDataDirChecks(t *testing.T) {
	x, _ := onnxio.FromFloat32("", onnxio.Float, []int64{2, 3}, make([]float32, 6))
	y, _ := onnxio.FromFloat32("", onnxio.Float, []int64{1, 4}, make([]float32, 4))
	dir := writeTestData(t, map[string]*onnxio.Tensor{"input_0.pb": x, "output_0.pb": y})
	if _, err := LoadDataset(dir); !errors.Is(err, ErrDataset) || !strings.Contains(err.Error(), "has 1 rows but the inputs have 2 samples") {
		t.Errorf("short expected output: got %v", err)
	}
	big, _ := onnxio.FromFloat32("", onnxio.Float, []int64{2, 1000}, make([]float32, 2000))
	dir = writeTestData(t, map[string]*onnxio.Tensor{"input_0.pb": big})
	if _, err := LoadDatasetFor(dir, DatasetOptions{MaxBytes: 4000}); !errors.Is(err, ErrDataset) || !strings.Contains(err.Error(), "ONNXPOST_MAX_DATASET_BYTES") {
		t.Errorf("folder over the budget: got %v", err)
	}
	if _, err := LoadDatasetFor(dir, DatasetOptions{MaxBytes: 9000}); err != nil {
		t.Errorf("folder within the budget: %v", err)
	}
}
