package merge

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/onnxpost/onnxpost/internal/safe"
	"github.com/onnxpost/onnxpost/merge/internal/synth"
	"github.com/onnxpost/onnxpost/onnxio"
)

// TestTruncatedDataDuringMerge truncates a fine-tune's external data file
// after New has read it (the trim pass) and before Save merges it: the
// mapped pages are gone, the kernels' reads fault, and the merge must fail
// with an error wrapping onnxio.ErrFormat that names the file — not crash,
// not report an internal error — and write nothing.
func TestTruncatedDataDuringMerge(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("inputs are memory-mapped on Linux only")
	}
	dir := t.TempDir()
	c := synth.Config{Layers: 2, Hidden: 64, FFN: 128, Vocab: 100, Classes: 3}
	paths := []string{filepath.Join(dir, "base.onnx"), filepath.Join(dir, "ft1.onnx"), filepath.Join(dir, "ft2.onnx")}
	for i, p := range paths {
		d := 0.0
		if i > 0 {
			d = 0.01
		}
		if err := synth.Write(p, c, 1, uint64(10+i), d, true); err != nil {
			t.Fatal(err)
		}
	}
	var ms []*onnxio.Model
	for _, p := range paths {
		m, err := onnxio.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	for _, method := range []Method{TIES, DARE, Linear} {
		t.Run(string(method), func(t *testing.T) {
			in := Inputs{Base: ms[0], Models: ms[1:]}
			if method == Linear {
				in = Inputs{Models: ms}
			}
			mg, err := New(context.Background(), in, Options{Method: method}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer mg.Close()
			// read everything once through the views (maps every file)
			if _, err := mg.Model(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
			_, files, err := ms[2].ExternalFiles()
			if err != nil || len(files) != 1 {
				t.Fatalf("fixture: %v %v", files, err)
			}
			keep, err := os.ReadFile(files[0])
			if err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(files[0], keep, 0o644)
			if err := os.Truncate(files[0], 0); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "merged-"+string(method)+".onnx")
			err = mg.Save(context.Background(), mg.Output(), out, &onnxio.SaveOptions{External: onnxio.ExternalAlways})
			t.Log(err)
			var pe *safe.PanicError
			if !errors.Is(err, onnxio.ErrFormat) || errors.As(err, &pe) {
				t.Fatalf("got %v, want an ErrFormat error (not an internal error)", err)
			}
			if _, serr := os.Stat(out); !os.IsNotExist(serr) {
				t.Fatalf("output written after the failure: %v", serr)
			}
			if err := os.WriteFile(files[0], keep, 0o644); err != nil {
				t.Fatal(err)
			}
		})
	}
}
