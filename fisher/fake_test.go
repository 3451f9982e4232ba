package fisher_test

import (
	"context"
	"math"
	"math/rand"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/evalharness/evaltest"
	"github.com/onnxpost/onnxpost/fisher"
	"github.com/onnxpost/onnxpost/onnxio"
)

// linearSoftmax returns logits = x·W + b (x [N, in], W [in, C]) with
// random parameters, and n random examples.
func linearSoftmax(t *testing.T, in, classes, n int) (*onnxio.Model, *evalharness.Dataset, []float64, []float64, []float64) {
	t.Helper()
	rng := rand.New(rand.NewSource(3))
	rnd := func(k int) ([]float32, []float64) {
		f, d := make([]float32, k), make([]float64, k)
		for i := range f {
			f[i] = float32(rng.NormFloat64())
			d[i] = float64(f[i])
		}
		return f, d
	}
	wf, w := rnd(in * classes)
	bf, b := rnd(classes)
	xf, x := rnd(n * in)
	m := onnxio.New("g", 17)
	wt, _ := onnxio.FromFloat32("W", onnxio.Float, []int64{int64(in), int64(classes)}, wf)
	bt, _ := onnxio.FromFloat32("b", onnxio.Float, []int64{int64(classes)}, bf)
	for _, tt := range []*onnxio.Tensor{wt, bt} {
		if err := m.SetInitializer(tt); err != nil {
			t.Fatal(err)
		}
	}
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "N"}, {Value: int64(in)}}})
	if err := m.InsertNodes(
		onnxio.Node{Name: "mm", OpType: "MatMul", Inputs: []string{"x", "W"}, Outputs: []string{"h"}},
		onnxio.Node{Name: "add", OpType: "Add", Inputs: []string{"h", "b"}, Outputs: []string{"logits"}},
	); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "logits", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "N"}, {Value: int64(classes)}}})
	ds, err := evalharness.NewDataset(map[string]*evalharness.Array{"x": evalharness.FromFloat32([]int64{int64(n), int64(in)}, xf)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m, ds, w, b, x
}

// TestComputeWithFakeRunner: Fisher computed through a fake runner (no
// ONNX Runtime), in every mode, equals the definition worked out in closed
// form for a linear softmax classifier: ∂ log p_y/∂W_ij = x_i (δ_yj − p_j),
// ∂ log p_y/∂b_j = δ_yj − p_j, F = (1/N) Σ_x Σ_y p_y (∂ log p_y/∂θ)². Every
// session goes through SessionOptions.Open and is closed.
func TestComputeWithFakeRunner(t *testing.T) {
	const in, classes, n = 3, 4, 5
	m, ds, w, b, x := linearSoftmax(t, in, classes, n)
	wantW, wantB := make([]float64, in*classes), make([]float64, classes)
	for s := 0; s < n; s++ {
		z := make([]float64, classes)
		mx := math.Inf(-1)
		for j := range z {
			z[j] = b[j]
			for i := 0; i < in; i++ {
				z[j] += x[s*in+i] * w[i*classes+j]
			}
			mx = math.Max(mx, z[j])
		}
		sum := 0.0
		for j := range z {
			z[j] = math.Exp(z[j] - mx)
			sum += z[j]
		}
		for j := range z {
			z[j] /= sum
		}
		for y := 0; y < classes; y++ {
			for j := 0; j < classes; j++ {
				d := -z[j]
				if y == j {
					d++
				}
				wantB[j] += z[y] * d * d / n
				for i := 0; i < in; i++ {
					g := x[s*in+i] * d
					wantW[i*classes+j] += z[y] * g * g / n
				}
			}
		}
	}
	for _, mode := range []string{fisher.ModeRows, fisher.ModeCopies, fisher.ModeLoop} {
		t.Run(mode, func(t *testing.T) {
			var rec evaltest.Recorder
			r, err := fisher.ComputeResult(context.Background(), m, ds, fisher.Options{
				Mode: mode, Batch: 2, Session: evalharness.SessionOptions{Open: rec.Open}})
			if err != nil {
				t.Fatal(err)
			}
			if r.Mode != mode {
				t.Fatalf("ran %s", r.Mode)
			}
			if len(rec.Requests()) == 0 || rec.OpenSessions() != 0 {
				t.Fatalf("%d sessions opened, %d left open", len(rec.Requests()), rec.OpenSessions())
			}
			for name, want := range map[string][]float64{"W": wantW, "b": wantB} {
				got := r.Fisher[name]
				if len(got) != len(want) {
					t.Fatalf("%s: %d entries, want %d", name, len(got), len(want))
				}
				for k := range want {
					if math.Abs(float64(got[k])-want[k]) > 1e-5*math.Max(1e-3, want[k]) {
						t.Fatalf("%s[%d] = %g, want %g", name, k, got[k], want[k])
					}
				}
			}
		})
	}
}
