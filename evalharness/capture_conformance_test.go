package evalharness

import (
	"context"
	"testing"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/calib/calibtest"
)

// TestCaptureConforms runs the streaming capture through calib's
// conformance suite in batches of 3 (7 samples: a partial last batch) with
// a small im2col chunk. Fixtures whose statistics read only graph inputs
// need no ONNX Runtime; the one reading a value computed by the model
// runs it (and skips without ONNX Runtime).
func TestCaptureConforms(t *testing.T) {
	defer func(n int) { im2colChunkElems = n }(im2colChunkElems)
	im2colChunkElems = 50
	calibtest.Run(t, func(t *testing.T, f calibtest.Fixture) (calib.Stats, error) {
		if f.Intermediate {
			requireORT(t)
		}
		inputs := map[string]*Array{}
		for name, a := range f.Inputs {
			inputs[name] = FromFloat32(a.Shape, a.Data)
		}
		ds, err := NewDataset(inputs, nil)
		if err != nil {
			t.Fatal(err)
		}
		r := f.Request
		return Capture(context.Background(), f.Model, ds, CaptureOptions{Grams: r.Grams, Norms: r.Norms, Tensors: r.Tensors, Bins: r.Bins, Batch: 3, Session: SessionOptions{Threads: 1}})
	})
}
