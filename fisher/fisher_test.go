package fisher_test

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/fisher"
	"github.com/onnxpost/onnxpost/internal/pyoracle"
	"github.com/onnxpost/onnxpost/onnxio"
)

func requireORT(t testing.TB) {
	t.Helper()
	if err := evalharness.Init(""); err != nil {
		if errors.Is(err, evalharness.ErrNoLibrary) {
			t.Skipf("ONNX Runtime not available: %v", err)
		}
		t.Fatalf("ONNX Runtime failed to initialize: %v", err)
	}
}

func zoo(parts ...string) string {
	return filepath.Join(append([]string{pyoracle.RepoRoot(), "models"}, parts...)...)
}

func load(t testing.TB, fam string) (*onnxio.Model, *evalharness.Dataset) {
	t.Helper()
	m, err := onnxio.Load(zoo("zoo", fam, "base.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	ds, err := evalharness.LoadDataset(zoo("data", "digits_clean_val.npz"))
	if err != nil {
		t.Fatal(err)
	}
	return m, ds
}

func maxRelDiff(a, b map[string][]float32) float64 {
	worst := 0.0
	for k, x := range a {
		y := b[k]
		mx := 1e-12
		for _, v := range y {
			mx = math.Max(mx, math.Abs(float64(v)))
		}
		for i := range x {
			worst = math.Max(worst, math.Abs(float64(x[i]-y[i]))/mx)
		}
	}
	return worst
}

// The two graph formulations compute the same Fisher, exact and sampled
// (the same seed draws the same labels in both).
func TestModesAgree(t *testing.T) {
	requireORT(t)
	for _, c := range []struct {
		fam     string
		samples int
	}{{"mlp", 0}, {"mlp", 3}, {"cnn", 0}} {
		m, ds := load(t, c.fam)
		opt := fisher.Options{MaxExamples: 6, Samples: c.samples, Seed: 4, Batch: 4}
		opt.Mode = fisher.ModeRows
		rows, err := fisher.ComputeResult(context.Background(), m, ds, opt)
		if err != nil {
			t.Fatal(err)
		}
		for _, mode := range []string{fisher.ModeCopies, fisher.ModeLoop} {
			opt.Mode = mode
			other, err := fisher.ComputeResult(context.Background(), m, ds, opt)
			if err != nil {
				t.Fatal(err)
			}
			if rows.Mode != fisher.ModeRows || other.Mode != mode {
				t.Fatalf("modes %s, %s", rows.Mode, other.Mode)
			}
			if d := maxRelDiff(rows.Fisher, other.Fisher); d > 1e-5 {
				t.Errorf("%s samples=%d: rows and %s differ by %.3g (relative to the largest entry)", c.fam, c.samples, mode, d)
			}
		}
		zero := true
		for _, v := range rows.Fisher {
			for _, x := range v {
				if x < 0 || math.IsNaN(float64(x)) {
					t.Fatalf("negative or NaN Fisher entry %v", x)
				}
				if x != 0 {
					zero = false
				}
			}
		}
		if zero {
			t.Fatal("Fisher is identically zero")
		}
	}
}

// Sampled Fisher is deterministic for a seed and changes with it.
func TestSamplingSeeded(t *testing.T) {
	requireORT(t)
	m, _ := load(t, "mlp")
	// flipped digits: the base model is unsure, so labels vary
	ds, err := evalharness.LoadDataset(zoo("data", "digits_flip_val.npz"))
	if err != nil {
		t.Fatal(err)
	}
	checkSeeded(t, m, ds, fisher.Options{MaxExamples: 20, Samples: 2})
}

// checkSeeded checks that the sampled Fisher of m with opt is the same for
// one seed and differs for another.
func checkSeeded(t *testing.T, m *onnxio.Model, ds *evalharness.Dataset, opt fisher.Options) {
	t.Helper()
	run := func(seed int64) map[string][]float32 {
		o := opt
		o.Seed = seed
		f, err := fisher.Compute(context.Background(), m, ds, o)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	a, b, c := run(1), run(1), run(2)
	if d := maxRelDiff(a, b); d != 0 {
		t.Errorf("same seed, different Fisher (%.3g)", d)
	}
	if d := maxRelDiff(a, c); d == 0 {
		t.Error("different seeds drew the same labels everywhere")
	}
}

func TestFileRoundTrip(t *testing.T) {
	requireORT(t)
	m, ds := load(t, "mlp")
	fm, r, err := fisher.FromData(context.Background(), m, "mlp/base.onnx", ds, fisher.Options{MaxExamples: 3})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "f.onnx")
	if err := fm.Save(p, nil); err != nil {
		t.Fatal(err)
	}
	f, shapes, err := fisher.Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(f) != len(r.Params) {
		t.Fatalf("%d tensors read, %d written", len(f), len(r.Params))
	}
	for _, name := range r.Params {
		_, want, _ := m.InitializerInfo(name)
		if len(shapes[name]) != len(want) {
			t.Fatalf("%s: shape %v, model has %v", name, shapes[name], want)
		}
		if maxRelDiff(map[string][]float32{name: f[name]}, map[string][]float32{name: r.Fisher[name]}) != 0 {
			t.Fatalf("%s changed in the round trip", name)
		}
	}
	back, _ := onnxio.Load(p)
	if back.Metadata()[fisher.MetaKind] != fisher.KindFisher || back.Metadata()[fisher.MetaExamples] != "3" {
		t.Errorf("metadata %v", back.Metadata())
	}
}

func TestBadInput(t *testing.T) {
	requireORT(t)
	m, ds := load(t, "cnn")
	cases := []struct {
		name string
		ds   *evalharness.Dataset
		opt  fisher.Options
	}{
		{"empty dataset", &evalharness.Dataset{}, fisher.Options{}},
		{"negative samples", ds, fisher.Options{Samples: -1}},
		{"unknown mode", ds, fisher.Options{Mode: "fast"}},
		{"output not logits", ds, fisher.Options{Output: "/conv1/Conv_output_0"}},
		{"missing input", &evalharness.Dataset{N: 1, Inputs: map[string]*evalharness.Array{"other": ds.Inputs["image"].Slice(0, 1)}}, fisher.Options{}},
	}
	for _, c := range cases {
		if _, err := fisher.Compute(context.Background(), m, c.ds, c.opt); err == nil {
			t.Errorf("%s: no error", c.name)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
}

// A model whose values leave axis 0 (examples moved to the last axis)
// cannot use per-example rows: Compute falls back and still matches the
// definition, computed here by hand for logits z = W·x:
// ∂ log p_y/∂W_ij = (δ_iy − p_i)·x_j.
func TestFallbackMatchesDefinition(t *testing.T) {
	requireORT(t)
	const n, f, c = 5, 4, 3
	m := onnxio.New("moved", 17)
	wv := []float32{0.3, -0.2, 0.5, 0.1, -0.4, 0.2, 0.3, -0.1, 0.2, 0.6, -0.3, 0.4}
	w, _ := onnxio.FromFloat32("W", onnxio.Float, []int64{c, f}, wv)
	_ = m.SetInitializer(w)
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "batch"}, {Value: f}}})
	if err := m.InsertNodes(
		onnxio.Node{Name: "t1", OpType: "Transpose", Inputs: []string{"x"}, Outputs: []string{"xt"}, Attrs: []onnxio.Attr{onnxio.AttrIntList("perm", 1, 0)}},
		onnxio.Node{Name: "mm", OpType: "MatMul", Inputs: []string{"W", "xt"}, Outputs: []string{"zt"}},
		onnxio.Node{Name: "t2", OpType: "Transpose", Inputs: []string{"zt"}, Outputs: []string{"z"}, Attrs: []onnxio.Attr{onnxio.AttrIntList("perm", 1, 0)}},
	); err != nil {
		t.Fatal(err)
	}
	m.SetOutputs([]onnxio.ValueInfo{{Name: "z", DType: onnxio.Float}})
	xv := make([]float32, n*f)
	for i := range xv {
		xv[i] = float32(math.Sin(float64(i)*1.7)) * 2
	}
	ds, err := evalharness.NewDataset(map[string]*evalharness.Array{"x": evalharness.FromFloat32([]int64{n, f}, xv)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float64, c*f)
	for e := 0; e < n; e++ {
		z := make([]float64, c)
		for i := 0; i < c; i++ {
			for j := 0; j < f; j++ {
				z[i] += float64(wv[i*f+j]) * float64(xv[e*f+j])
			}
		}
		lp := evalharness.LogSoftmax(z)
		for y := 0; y < c; y++ {
			py := math.Exp(lp[y])
			for i := 0; i < c; i++ {
				d := -math.Exp(lp[i])
				if i == y {
					d++
				}
				for j := 0; j < f; j++ {
					g := d * float64(xv[e*f+j])
					want[i*f+j] += py * g * g / n
				}
			}
		}
	}
	for _, mode := range []string{"", fisher.ModeLoop} {
		r, err := fisher.ComputeResult(context.Background(), m, ds, fisher.Options{Mode: mode})
		if err != nil {
			t.Fatal(err)
		}
		if mode == "" && (r.Mode == fisher.ModeRows || r.Fallback == "") {
			t.Fatalf("mode %s, fallback %q: expected a fallback", r.Mode, r.Fallback)
		}
		for i, v := range r.Fisher["W"] {
			if math.Abs(float64(v)-want[i]) > 1e-6*math.Max(1, want[i]) {
				t.Fatalf("mode %s: F[%d] = %v, want %v", r.Mode, i, v, want[i])
			}
		}
		t.Logf("mode %s (fallback: %s)", r.Mode, r.Fallback)
	}
}
