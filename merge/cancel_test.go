package merge

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/onnxpost/onnxpost/internal/safe"
	"github.com/onnxpost/onnxpost/onnxio"
)

// saveOver runs a streaming save over an existing output and checks that it
// fails, that the old output is byte for byte unchanged and that no
// temporary file is left in the folder.
func saveOver(t *testing.T, ctx context.Context, mg *Merger) error {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "out.onnx")
	old := []byte("previous output")
	if err := os.WriteFile(path, old, 0o644); err != nil {
		t.Fatal(err)
	}
	err := mg.Save(ctx, mg.Output(), path, &onnxio.SaveOptions{External: onnxio.ExternalAlways, Threshold: 64, Workers: 3})
	if err == nil {
		t.Fatal("the save succeeded")
	}
	got, rerr := os.ReadFile(path)
	if rerr != nil || !bytes.Equal(got, old) {
		t.Errorf("the existing output was changed (%v)", rerr)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != "out.onnx" {
			t.Errorf("left behind: %s", e.Name())
		}
	}
	return err
}

func TestWorkerPanicBecomesError(t *testing.T) {
	base, fts := zooLike(t, tiny)
	mg, err := New(context.Background(), Inputs{Base: base, Models: fts}, Options{Method: TIES, TrimScope: TrimTensor}, nil)
	if err != nil {
		t.Fatal(err)
	}
	testTransformHook = func(name string) {
		if name == "l0.fc1.w" {
			var s []float32
			_ = s[len(name)] // a bug: index out of range
		}
	}
	defer func() { testTransformHook = nil }()
	err = saveOver(t, context.Background(), mg)
	var pe *safe.PanicError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want a *safe.PanicError", err)
	}
	if !strings.Contains(err.Error(), `internal error: merging l0.fc1.w: runtime error: index out of range`) {
		t.Errorf("message %q", err)
	}
	if _, err := mg.Model(context.Background(), nil); !errors.As(err, &pe) {
		t.Errorf("in-memory merge: err = %v, want a *safe.PanicError", err)
	}
}

func TestSaveCancelled(t *testing.T) {
	base, fts := zooLike(t, tiny)
	mg, err := New(context.Background(), Inputs{Base: base, Models: fts}, Options{Method: TIES, TrimScope: TrimTensor}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// cancel once a few tensors are merged: the rest fail with the
	// context's error and the save cleans up
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var n atomic.Int32
	testTransformHook = func(string) {
		if n.Add(1) == 3 {
			cancel()
		}
	}
	defer func() { testTransformHook = nil }()
	if err := saveOver(t, ctx, mg); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if _, err := mg.Model(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("in-memory merge: err = %v, want context.Canceled", err)
	}
}

func TestNewCancelledDuringTrimPasses(t *testing.T) {
	base, fts := zooLike(t, tiny)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := New(ctx, Inputs{Base: base, Models: fts}, Options{Method: TIES, TrimScope: TrimGlobal}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}
