package transform_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/transform"
)

// loadZoo loads a zoo model, or skips the test when the zoo is missing.
func loadZoo(t *testing.T, parts ...string) *onnxio.Model {
	t.Helper()
	p := filepath.Join(append([]string{"..", "models", "zoo"}, parts...)...)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("zoo missing (make zoo): %v", err)
	}
	m, err := onnxio.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// doubleWeights is a transform that doubles every float weight of two or
// more dimensions; it records the models it ran on and the calibration
// it was given.
type doubleWeights struct {
	mu    sync.Mutex
	runs  []transform.Input
	calls []*onnxio.Model
}

func (d *doubleWeights) transform() *transform.Transform {
	return &transform.Transform{Name: "scale/double", Doc: "Doubles the weights.", Run: func(ctx context.Context, in transform.Input) (*onnxio.Model, any, error) {
		d.mu.Lock()
		d.runs = append(d.runs, in)
		d.mu.Unlock()
		m := in.Models[0]
		var ts []*onnxio.Tensor
		for _, name := range m.Initializers() {
			w, err := m.Initializer(name)
			if err != nil {
				return nil, nil, err
			}
			if !w.DType.IsFloat() || len(w.Shape) < 2 {
				continue
			}
			v, err := w.Float32()
			if err != nil {
				return nil, nil, err
			}
			for i := range v {
				v[i] *= 2
			}
			nw, err := onnxio.FromFloat32(name, w.DType, w.Shape, v)
			if err != nil {
				return nil, nil, err
			}
			ts = append(ts, nw)
		}
		out, err := m.WithInitializers(ts...)
		if err != nil {
			return nil, nil, err
		}
		return out.WithMetadata(map[string]string{"test.double": fmt.Sprintf("%d weights", len(ts))}), len(ts), nil
	}}
}

func (d *doubleWeights) calibrate(ctx context.Context, m *onnxio.Model) (any, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, m)
	return len(m.Inputs()), nil
}

// Apply on an If-merged decoder runs the transform once per branch, on the
// branch lifted into a plain model and calibrated on that branch, and
// joins the results: the shared weights are transformed once in the
// output, which is still a merged decoder; the input is left as it was.
func TestApplyMergedDecoder(t *testing.T) {
	m := loadZoo(t, "lm", "base_merged.onnx")
	before, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	d := &doubleWeights{}
	out, rep, err := transform.Apply(context.Background(), d.transform(), transform.Input{Models: []*onnxio.Model{m}}, d.calibrate)
	if err != nil {
		t.Fatal(err)
	}
	br, ok := rep.(*transform.BranchReport)
	if !ok || len(br.Branches) != 2 || br.Branches["then_branch"] == nil || br.Branches["else_branch"] == nil {
		t.Fatalf("report %#v, want a BranchReport of then_branch and else_branch", rep)
	}
	if len(d.runs) != 2 || len(d.calls) != 2 {
		t.Fatalf("%d runs, %d calibrations; want 2 each", len(d.runs), len(d.calls))
	}
	for i, in := range d.runs {
		if _, merged := in.Models[0].IfMerged(); merged || in.Models[0].OpCounts()["If"] != 0 {
			t.Errorf("run %d got a model with an If (ops %v)", i, in.Models[0].OpCounts())
		}
		if in.Models[0] != d.calls[i] || in.Calibration != len(d.calls[i].Inputs()) {
			t.Errorf("run %d: not calibrated on its own branch (calibration %v)", i, in.Calibration)
		}
	}
	past := func(m *onnxio.Model) bool {
		return slices.ContainsFunc(m.Inputs(), func(v onnxio.ValueInfo) bool { return strings.HasPrefix(v.Name, "past_key_values.") })
	}
	if past(d.runs[0].Models[0]) == past(d.runs[1].Models[0]) {
		t.Errorf("both branches read past key/values alike (%v): not the cache and the no-cache branch", past(d.runs[0].Models[0]))
	}
	if _, ok := out.IfMerged(); !ok {
		t.Fatalf("the output is not a merged decoder (ops %v)", out.OpCounts())
	}
	if got, want := out.Metadata()["test.double"], fmt.Sprintf("%d weights", br.Branches["else_branch"]); got != want {
		t.Errorf("metadata test.double = %q, want the branches' %q", got, want)
	}
	n := 0
	for _, name := range m.Initializers() {
		w, _ := m.Initializer(name)
		if !w.DType.IsFloat() || len(w.Shape) < 2 {
			continue
		}
		o, err := out.Initializer(name)
		if err != nil {
			t.Fatalf("output lacks %s: %v", name, err)
		}
		a, _ := w.Float32()
		b, _ := o.Float32()
		for i := range a {
			if b[i] != 2*a[i] {
				t.Fatalf("%s[%d] = %g, want 2×%g (once, not per branch)", name, i, b[i], a[i])
			}
		}
		n++
	}
	if n == 0 {
		t.Fatal("no weight compared")
	}
	after, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(before, after) {
		t.Error("Apply modified its input")
	}
}

// Apply on a plain model calibrates and runs once, with no branch report.
func TestApplyPlainModel(t *testing.T) {
	m := loadZoo(t, "lm", "base.onnx")
	d := &doubleWeights{}
	_, rep, err := transform.Apply(context.Background(), d.transform(), transform.Input{Models: []*onnxio.Model{m}}, d.calibrate)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.runs) != 1 || len(d.calls) != 1 || d.runs[0].Models[0] != m || d.calls[0] != m {
		t.Errorf("%d runs, %d calibrations; want 1 each on the model itself", len(d.runs), len(d.calls))
	}
	if _, ok := rep.(int); !ok {
		t.Errorf("report %#v, want the transform's own", rep)
	}
}

// A merged decoder beside a plain model (as a second model or as the
// base) is refused by name; nothing runs.
func TestApplyMixedModels(t *testing.T) {
	merged := loadZoo(t, "lm", "base_merged.onnx")
	plain := loadZoo(t, "lm", "base.onnx")
	for name, in := range map[string]transform.Input{
		"models": {Models: []*onnxio.Model{merged, plain}},
		"base":   {Models: []*onnxio.Model{merged, merged}, Base: plain},
	} {
		d := &doubleWeights{}
		_, _, err := transform.Apply(context.Background(), d.transform(), in, nil)
		if !errors.Is(err, transform.ErrMixedModels) || !strings.Contains(err.Error(), "(1 of 2 models are merged decoders)") {
			t.Errorf("%s: error %v, want ErrMixedModels counting 1 of 2", name, err)
		}
		if len(d.runs) != 0 {
			t.Errorf("%s: the transform ran %d times", name, len(d.runs))
		}
	}
}

// Branches that come out with different values for a shared weight are
// refused, naming the tensor.
func TestRunBranchesDisagree(t *testing.T) {
	m := loadZoo(t, "lm", "base_merged.onnx")
	d := &doubleWeights{}
	_, _, err := transform.RunBranches(context.Background(), transform.Input{Models: []*onnxio.Model{m}}, func(ctx context.Context, branch string, in transform.Input) (*onnxio.Model, any, error) {
		if branch == "else_branch" {
			return in.Models[0], nil, nil
		}
		return d.transform().Run(ctx, in)
	})
	if !errors.Is(err, onnxio.ErrBranches) || !strings.Contains(err.Error(), "the transformed branches hold different values for") {
		t.Errorf("error %v, want ErrBranches naming the tensor", err)
	}
}
