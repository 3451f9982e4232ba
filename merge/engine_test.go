package merge

import (
	"bytes"
	"context"
	"errors"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/merge/internal/synth"
	"github.com/onnxpost/onnxpost/onnxio"
)

var tiny = synth.Config{Layers: 2, Hidden: 8, FFN: 16, Vocab: 20, Classes: 3}

// zooLike returns a base and three fine-tunes of the tiny config.
func zooLike(t testing.TB, c synth.Config) (*onnxio.Model, []*onnxio.Model) {
	t.Helper()
	base, err := synth.Build(c, 1, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var fts []*onnxio.Model
	for i := range 3 {
		m, err := synth.Build(c, 1, uint64(10+i), 0.01)
		if err != nil {
			t.Fatal(err)
		}
		fts = append(fts, m)
	}
	return base, fts
}

func floats(t testing.TB, m *onnxio.Model, name string) []float64 {
	t.Helper()
	x, err := m.Initializer(name)
	if err != nil {
		t.Fatal(err)
	}
	v, err := x.Float64()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMergeFirstModelOnly(t *testing.T) {
	_, fts := zooLike(t, tiny)
	mg, err := New(context.Background(), Inputs{Models: fts}, Options{Method: Linear, Weights: []float64{1, 0, 0}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := mg.Model(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range fts[0].Initializers() {
		a, _ := fts[0].Initializer(n)
		b, _ := out.Initializer(n)
		if !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Fatalf("tensor %q differs from the first model's", n)
		}
	}
}

func TestMergeMatchesKernels(t *testing.T) {
	base, fts := zooLike(t, tiny)
	lam := 0.8
	half := 0.5
	tests := []struct {
		name string
		in   Inputs
		opt  Options
		want func(name string) []float64 // expected, from the slice kernels
	}{
		{"task arithmetic", Inputs{Base: base, Models: fts}, Options{Method: TaskArithmetic, Lambda: &lam, Weights: []float64{1, 2, 3}},
			func(n string) []float64 {
				dst := make([]float64, len(floats(t, base, n)))
				TaskArithmeticTo(dst, floats(t, base, n), [][]float64{floats(t, fts[0], n), floats(t, fts[1], n), floats(t, fts[2], n)}, []float64{1, 2, 3}, lam)
				return dst
			}},
		{"slerp with base", Inputs{Base: base, Models: fts[:1]}, Options{Method: SLERP, T: &half},
			func(n string) []float64 {
				dst := make([]float64, len(floats(t, base, n)))
				SLERPTo(dst, floats(t, base, n), floats(t, fts[0], n), half)
				return dst
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mg, err := New(context.Background(), tc.in, tc.opt, nil)
			if err != nil {
				t.Fatal(err)
			}
			out, err := mg.Model(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range mg.Plan() {
				want := tc.want(p.Out)
				got := floats(t, out, p.Out)
				for j := range want {
					if math.Abs(got[j]-want[j]) > 1e-6*(1+math.Abs(want[j])) {
						t.Fatalf("%s[%d] = %v, want %v", p.Out, j, got[j], want[j])
					}
				}
			}
		})
	}
}

func TestGlobalThresholdIsExact(t *testing.T) {
	base, fts := zooLike(t, tiny)
	for _, d := range []float64{0.2, 0.05, 1} {
		mg, err := New(context.Background(), Inputs{Base: base, Models: fts}, Options{Method: TIES, Density: d}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range fts {
			var all []float64
			for _, p := range mg.Plan() {
				b, x := floats(t, base, p.Base), floats(t, fts[i], p.Models[i])
				for j := range b {
					all = append(all, math.Abs(x[j]-b[j]))
				}
			}
			slices.Sort(all)
			k := TrimCount(d, int64(len(all)))
			if want := all[int64(len(all))-k]; mg.Thresholds()[i] != want {
				t.Fatalf("density %v model %d: threshold %v, want %v", d, i, mg.Thresholds()[i], want)
			}
		}
	}
}

func TestSaveStreamsSameAsInMemory(t *testing.T) {
	base, fts := zooLike(t, tiny)
	dir := t.TempDir()
	for _, m := range Methods {
		t.Run(string(m), func(t *testing.T) {
			in := Inputs{Base: base, Models: fts}
			opt := Options{Method: m, Seed: 3}
			switch m {
			case Linear:
				in.Base = nil
			case SLERP:
				in.Models = fts[:1]
				opt.T = ptr(0.3)
			case Fisher:
				in.Base = nil
				in.Fishers = fts // any positive-ish float tensors of the right shapes
				opt.FisherNormalize = true
			case NuSlerp:
				in.Models = fts[:2]
			case Karcher:
				in.Base = nil
			case NearSwap:
				in.Models = fts[:1]
				opt.T = ptr(0.01)
			case ArceeFusion:
				in.Models = fts[:1]
			}
			mg, err := New(context.Background(), in, opt, nil)
			if err != nil {
				t.Fatal(err)
			}
			mem, err := mg.Model(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, string(m)+".onnx")
			out := mg.Output()
			if err := mg.Save(context.Background(), out, path, &onnxio.SaveOptions{External: onnxio.ExternalAlways, Threshold: 64, Workers: 3}); err != nil {
				t.Fatal(err)
			}
			disk, err := onnxio.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range mem.Initializers() {
				a, _ := mem.Initializer(n)
				b, err := disk.Initializer(n)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(a.Bytes(), b.Bytes()) {
					t.Fatalf("tensor %q: streamed save differs from the in-memory merge", n)
				}
			}
			if !disk.IsExternal("l0.fc1.w") {
				t.Fatal("output not written with external data")
			}
		})
	}
}

func TestHalfPrecision(t *testing.T) {
	for _, dt := range []onnxio.DType{onnxio.Float16, onnxio.BFloat16} {
		t.Run(dt.String(), func(t *testing.T) {
			c := tiny
			c.DType = dt
			base, fts := zooLike(t, c)
			mg, err := New(context.Background(), Inputs{Base: base, Models: fts}, Options{Method: TIES, TrimScope: TrimTensor}, nil)
			if err != nil {
				t.Fatal(err)
			}
			out, err := mg.Model(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			round := func(x float64) float64 {
				if dt == onnxio.Float16 {
					return float64(onnxio.Float16ToFloat32(onnxio.Float32ToFloat16(float32(x))))
				}
				return float64(onnxio.BFloat16ToFloat32(onnxio.Float32ToBFloat16(float32(x))))
			}
			for _, p := range mg.Plan() {
				x, _ := out.Initializer(p.Out)
				if x.DType != dt {
					t.Fatalf("%s written as %v", p.Out, x.DType)
				}
				// recompute in float64 from the widened inputs, round back
				b := floats(t, base, p.Out)
				xs := [][]float64{floats(t, fts[0], p.Out), floats(t, fts[1], p.Out), floats(t, fts[2], p.Out)}
				thr := make([]float64, 3)
				for i := range thr {
					a := make([]float64, len(b))
					for j := range b {
						a[j] = math.Abs(xs[i][j] - b[j])
					}
					thr[i] = TopKThreshold(a, int(TrimCount(0.2, int64(len(a)))))
				}
				want := make([]float64, len(b))
				TIESTo(want, b, xs, []float64{1, 1, 1}, thr, 1)
				got := floats(t, out, p.Out)
				for j := range want {
					if w := round(want[j]); got[j] != w {
						t.Fatalf("%s[%d] = %v, want %v (%v of %v)", p.Out, j, got[j], w, dt, want[j])
					}
				}
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	base, fts := zooLike(t, tiny)
	other, err := synth.Build(synth.Config{Layers: 3, Hidden: 8, FFN: 16, Vocab: 20, Classes: 3}, 1, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	c16 := tiny
	c16.DType = onnxio.Float16
	half, err := synth.Build(c16, 1, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	wide, err := synth.Build(synth.Config{Layers: 2, Hidden: 8, FFN: 24, Vocab: 20, Classes: 3}, 1, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	badInt := fts[1].Clone()
	shp, _ := onnxio.FromInt64("out_shape", onnxio.Int64, []int64{2}, []int64{-1, 4})
	if err := badInt.SetInitializer(shp); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		in       Inputs
		opt      Options
		sentinel error
		want     string
	}{
		{"different architecture", Inputs{Base: base, Models: []*onnxio.Model{fts[0], other}}, Options{Method: TIES}, ErrIncompatible, "does not match the architecture"},
		{"different widths", Inputs{Models: []*onnxio.Model{fts[0], wide}}, Options{Method: Linear}, ErrIncompatible, "shape [8 16] vs [8 24]"},
		{"different dtypes", Inputs{Models: []*onnxio.Model{fts[0], half}}, Options{Method: Linear}, ErrIncompatible, "dtype float32 vs float16"},
		{"integer tensor differs", Inputs{Models: []*onnxio.Model{fts[0], badInt}}, Options{Method: Linear}, ErrIncompatible, `tensor "out_shape"`},
		{"density zero", Inputs{Base: base, Models: fts}, Options{Method: TIES, Density: -1}, ErrOptions, "outside (0, 1]"},
		{"density above one", Inputs{Base: base, Models: fts}, Options{Method: DARE, Densities: []float64{1, 1.2, 1}}, ErrOptions, "outside (0, 1]"},
		{"zero weight sum", Inputs{Models: fts[:2]}, Options{Method: Linear, Weights: []float64{1, -1}}, ErrOptions, "sum to zero"},
		{"fisher without files", Inputs{Models: fts}, Options{Method: Fisher}, ErrOptions, "one Fisher file per model"},
		{"fisher of another shape", Inputs{Models: []*onnxio.Model{fts[0], fts[1]}, Fishers: []*onnxio.Model{fts[0], wide}}, Options{Method: Fisher}, ErrIncompatible, "Fisher tensor"},
		{"nothing selected", Inputs{Models: fts}, Options{Method: Linear, Include: regexp.MustCompile("^nothing$")}, ErrOptions, "no floating-point tensor"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(context.Background(), tc.in, tc.opt, nil)
			t.Log(err)
			if err == nil || !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %v containing %q", err, tc.sentinel, tc.want)
			}
		})
	}
}

func TestIncludeExclude(t *testing.T) {
	_, fts := zooLike(t, tiny)
	opt := Options{Method: Linear, Include: regexp.MustCompile(`^l1\.`), Exclude: regexp.MustCompile(`\.b$`)}
	mg, err := New(context.Background(), Inputs{Models: fts}, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range mg.Plan() {
		if !strings.HasPrefix(p.Out, "l1.") || strings.HasSuffix(p.Out, ".b") {
			t.Fatalf("%s merged", p.Out)
		}
	}
	// l1.: ln1.g ln2.g q.w k.w v.w o.w fc1.w fc2.w
	if len(mg.Plan()) != 8 {
		t.Fatalf("%d tensors merged", len(mg.Plan()))
	}
	out, err := mg.Model(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// an unselected tensor keeps the template's (first model's) values
	if !slices.Equal(floats(t, out, "l0.q.w"), floats(t, fts[0], "l0.q.w")) {
		t.Fatal("unselected tensor changed")
	}
}

func TestDAREDeterministic(t *testing.T) {
	base, fts := zooLike(t, tiny)
	run := func(seed int64) *onnxio.Model {
		mg, err := New(context.Background(), Inputs{Base: base, Models: fts}, Options{Method: DARETIES, Seed: seed}, nil)
		if err != nil {
			t.Fatal(err)
		}
		out, err := mg.Model(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	a, b, c := run(1), run(1), run(2)
	if !slices.Equal(floats(t, a, "l0.fc1.w"), floats(t, b, "l0.fc1.w")) {
		t.Fatal("same seed, different result")
	}
	if slices.Equal(floats(t, a, "l0.fc1.w"), floats(t, c, "l0.fc1.w")) {
		t.Fatal("different seeds, same result")
	}
}

func TestNonFiniteInput(t *testing.T) {
	_, fts := zooLike(t, tiny)
	bad := fts[1].Clone()
	x, _ := bad.Initializer("l0.q.b")
	v, _ := x.Float32()
	v[3] = float32(math.NaN())
	nt, _ := onnxio.FromFloat32("l0.q.b", onnxio.Float, x.Shape, v)
	if err := bad.SetInitializer(nt); err != nil {
		t.Fatal(err)
	}
	mg, err := New(context.Background(), Inputs{Models: []*onnxio.Model{fts[0], bad}}, Options{Method: Linear}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = mg.Model(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), `"l0.q.b"`) || !strings.Contains(err.Error(), "NaN") {
		t.Fatalf("error %v, want one naming l0.q.b and NaN", err)
	}
}

// A float tensor that the Fisher files do not describe (a Constant value
// folded into an initializer, e.g. a decoder's RoPE frequencies) merges to
// itself when every model holds the same value; when the models differ
// there, the missing Fisher tensor is still an error naming it.
func TestFisherSkipsEqualTensorsWithoutFisher(t *testing.T) {
	_, fts := zooLike(t, tiny)
	fishers := []*onnxio.Model{fts[0].Clone(), fts[1].Clone()}
	a, b := fts[0].Clone(), fts[1].Clone()
	freq, _ := onnxio.FromFloat32("inv_freq", onnxio.Float, []int64{4}, []float32{1, 0.1, 0.01, 0.001})
	for _, m := range []*onnxio.Model{a, b} {
		if err := m.SetInitializer(freq); err != nil {
			t.Fatal(err)
		}
	}
	mg, err := New(context.Background(), Inputs{Models: []*onnxio.Model{a, b}, Fishers: fishers}, Options{Method: Fisher}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range mg.Plan() {
		if p.Out == "inv_freq" {
			t.Fatal("inv_freq is merged although no Fisher describes it")
		}
	}
	other, _ := onnxio.FromFloat32("inv_freq", onnxio.Float, []int64{4}, []float32{1, 0.1, 0.01, 0.002})
	if err := b.SetInitializer(other); err != nil {
		t.Fatal(err)
	}
	_, err = New(context.Background(), Inputs{Models: []*onnxio.Model{a, b}, Fishers: fishers}, Options{Method: Fisher}, nil)
	if !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), `has no tensor "inv_freq"`) {
		t.Fatalf("differing tensor without Fisher: %v", err)
	}
}
