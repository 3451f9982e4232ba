package calib_test

import (
	"math"
	"slices"
	"testing"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/calib/calibtest"
	"github.com/onnxpost/onnxpost/onnxio"
)

// TestStatisticsIgnoreBatching: the suite's layers (MatMul, Gemm, grouped
// strided Conv2D, dilated Conv1D, norms, ranges, histograms) fed value by
// value in batches of 1, 2 and 3 samples give, bit for bit, the statistics
// of one batch of every sample.
func TestStatisticsIgnoreBatching(t *testing.T) {
	f := calibtest.Layers(t)
	ref, err := calib.FromActivations(f.Model, f.Activations, f.Request, nil)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, a := range f.Activations {
		n = a.Shape[0]
	}
	for _, batch := range []int64{1, 2, 3} {
		a, err := calib.NewAccumulator(f.Model, f.Request)
		if err != nil {
			t.Fatal(err)
		}
		for again := true; again; again = a.EndPass() {
			for i := int64(0); i < n; i += batch {
				j := min(i+batch, n)
				for _, name := range a.Values() {
					x, shape := rows(f.Activations[name], i, j)
					if err := a.AddValue(name, x, shape, nil); err != nil {
						t.Fatal(err)
					}
				}
				if err := a.AddSamples(j - i); err != nil {
					t.Fatal(err)
				}
			}
		}
		st := a.Stats()
		if st.Samples != ref.Samples {
			t.Fatalf("batch %d: %d samples, want %d", batch, st.Samples, ref.Samples)
		}
		for _, w := range f.Request.Grams {
			g, _, gn, _ := st.InputGram(w)
			want, _, wn, _ := ref.InputGram(w)
			if gn != wn || !slices.Equal(g, want) {
				t.Fatalf("batch %d: Gram of %s differs", batch, w)
			}
		}
		for _, w := range append(slices.Clone(f.Request.Grams), f.Request.Norms...) {
			c, _, _ := st.SquaredColumnNorms(w)
			want, _, _ := ref.SquaredColumnNorms(w)
			if !slices.Equal(c, want) {
				t.Fatalf("batch %d: column norms of %s differ: %v, want %v", batch, w, c, want)
			}
		}
		for _, name := range f.Request.Tensors {
			a, _ := st.Tensor(name)
			b, _ := ref.Tensor(name)
			if a.Count != b.Count || a.Min != b.Min || a.Max != b.Max || a.Mean != b.Mean || a.Std != b.Std || !slices.Equal(a.Hist.Counts, b.Hist.Counts) {
				t.Fatalf("batch %d: statistics of %s differ: %+v, want %+v", batch, name, a, b)
			}
		}
	}
}

// rows returns samples [i, j) of a (axis 0) as float64.
func rows(a calib.Activation, i, j int64) ([]float64, []int64) {
	per := int64(1)
	for _, d := range a.Shape[1:] {
		per *= d
	}
	out := make([]float64, (j-i)*per)
	for k, v := range a.Data[i*per : j*per] {
		out[k] = float64(v)
	}
	return out, append([]int64{j - i}, a.Shape[1:]...)
}

// TestAddColumnsIgnoresSplits: the Gram of a transposed input (Gemm with
// transA) accumulated in column batches of any size equals, bit for bit,
// the one of all columns at once, and so do its norms.
func TestAddColumnsIgnoresSplits(t *testing.T) {
	const d, m = 5, 301
	a := make([]float64, d*m)
	for i := range a {
		a[i] = math.Sin(float64(i)*0.61) * math.Exp(float64(i%13))
	}
	cols := func(c0, c1 int) []float64 { // columns [c0, c1) as a d×(c1-c0) matrix
		out := make([]float64, 0, d*(c1-c0))
		for r := 0; r < d; r++ {
			out = append(out, a[r*m+c0:r*m+c1]...)
		}
		return out
	}
	whole, wholeNorms := calib.NewGram(d), calib.NewNorms(d)
	whole.AddColumns(a, m)
	wholeNorms.AddColumns(a, m)
	for _, step := range []int{1, 7, 64, 300} {
		g, nd := calib.NewGram(d), calib.NewNorms(d)
		for c := 0; c < m; c += step {
			part := cols(c, min(c+step, m))
			g.AddColumns(part, min(step, m-c))
			nd.AddColumns(part, min(step, m-c))
		}
		if !slices.Equal(g.Matrix(), whole.Matrix()) || g.N() != whole.N() {
			t.Fatalf("columns %d at a time: Gram differs from all at once", step)
		}
		if !slices.Equal(nd.Diagonal(), wholeNorms.Diagonal()) || !slices.Equal(nd.Diagonal(), whole.Diagonal()) {
			t.Fatalf("columns %d at a time: norms differ", step)
		}
	}
}

// TestDivisible: values read by rows, patches or elements may be added a
// piece of the first axis at a time; a Gemm transA input (read by
// columns) may not, but its histogram pass may.
func TestDivisible(t *testing.T) {
	f := calibtest.Layers(t)
	a, err := calib.NewAccumulator(f.Model, f.Request)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range a.Values() {
		if !a.Divisible(name) {
			t.Errorf("%s: not divisible", name)
		}
	}
	m := onnxio.New("g", 17)
	m.AddInput(onnxio.ValueInfo{Name: "a", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 3}, {Param: "n"}}})
	w, _ := onnxio.FromFloat32("w", onnxio.Float, []int64{3, 2}, make([]float32, 6))
	if err := m.SetInitializer(w); err != nil {
		t.Fatal(err)
	}
	if err := m.InsertNodes(onnxio.Node{Name: "gemm", OpType: "Gemm", Inputs: []string{"a", "w"}, Outputs: []string{"y"}, Attrs: []onnxio.Attr{onnxio.AttrInt("transA", 1)}}); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float})
	a, err = calib.NewAccumulator(m, calib.Request{Norms: []string{"w"}, Tensors: []string{"a"}, Bins: 4})
	if err != nil {
		t.Fatal(err)
	}
	if a.Divisible("a") {
		t.Error("a Gemm transA input is divisible")
	}
	if err := a.Add(map[string][]float64{"a": {1, 2, 3, 4, 5, 6}}, map[string][]int64{"a": {3, 2}}, nil, 2); err != nil {
		t.Fatal(err)
	}
	if !a.EndPass() || !a.Divisible("a") {
		t.Error("the histogram pass of a Gemm transA input is not divisible")
	}
}
