package evalharness

import (
	"context"
	"fmt"
	"slices"
	"sync"
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
		r := f.Request
		return Capture(context.Background(), f.Model, conformanceData(t, f), CaptureOptions{Grams: r.Grams, Norms: r.Norms, Tensors: r.Tensors, Bins: r.Bins, Batch: 3, Session: SessionOptions{Threads: 1}})
	})
}

// TestCalibratorConforms runs the shared lazy Calibrator through the
// suite: the request is declared, the first read captures.
func TestCalibratorConforms(t *testing.T) {
	calibtest.Run(t, func(t *testing.T, f calibtest.Fixture) (calib.Stats, error) {
		if f.Intermediate {
			requireORT(t)
		}
		c := NewCalibrator(context.Background(), f.Model, conformanceData(t, f), CaptureOptions{Batch: 3})
		c.Need(f.Request)
		return c, nil
	})
}

// TestCalibratorCapturesOnce: two transforms' needs on one model state are
// captured together, once; an undeclared read captures again, with both.
func TestCalibratorCapturesOnce(t *testing.T) {
	f := calibtest.Layers(t)
	c := NewCalibrator(context.Background(), f.Model, conformanceData(t, f), CaptureOptions{Batch: 3})
	c.Need(calib.Request{Grams: []string{"W1"}})                         // e.g. GPTQ
	c.Need(calib.Request{Norms: []string{"W4"}, Tensors: []string{"x"}}) // e.g. Wanda and static int8
	if c.Captures() != 0 {
		t.Fatal("captured before any read")
	}
	if _, _, _, err := c.InputGram("W1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.SquaredColumnNorms("W4"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ActivationRange("x"); err != nil {
		t.Fatal(err)
	}
	if n := c.Captures(); n != 1 {
		t.Fatalf("%d captures for declared needs, want 1", n)
	}
	// undeclared: a second capture, with everything declared so far
	if _, _, _, err := c.InputGram("W3"); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := c.InputGram("W1"); err != nil {
		t.Fatal(err)
	}
	if n := c.Captures(); n != 2 {
		t.Fatalf("%d captures, want 2", n)
	}
	// a histogram nobody sized gets DefaultBins
	counts, _, err := c.ActivationHistogram("img")
	if err != nil || len(counts) != DefaultBins {
		t.Fatalf("histogram of %d bins (err %v), want %d", len(counts), err, DefaultBins)
	}
}

func conformanceData(t *testing.T, f calibtest.Fixture) *Dataset {
	t.Helper()
	inputs := map[string]*Array{}
	for name, a := range f.Inputs {
		inputs[name] = FromFloat32(a.Shape, a.Data)
	}
	ds, err := NewDataset(inputs, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// TestCalibratorConcurrent: reads from several goroutines (the search's
// level builders run in parallel) capture once and agree.
func TestCalibratorConcurrent(t *testing.T) {
	f := calibtest.Layers(t)
	c := NewCalibrator(context.Background(), f.Model, conformanceData(t, f), CaptureOptions{Batch: 3})
	c.Need(f.Request)
	mem, err := calib.FromActivations(f.Model, f.Activations, f.Request, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, _, _, err := mem.InputGram("W3")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			switch i % 3 {
			case 0:
				g, _, _, err := c.InputGram("W3")
				if err == nil && !slices.Equal(g, want) {
					err = fmt.Errorf("goroutine %d: Gram differs", i)
				}
				errs <- err
			case 1:
				_, _, err := c.SquaredColumnNorms("W4")
				errs <- err
			default:
				_, _, err := c.ActivationHistogram("x")
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := c.Captures(); n != 1 {
		t.Errorf("%d captures, want 1", n)
	}
}
