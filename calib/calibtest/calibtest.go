// Package calibtest is the conformance suite every implementation of
// calib.Stats passes (the streaming capture, the in-memory calibration,
// any fake a test writes): Run builds small models with MatMul, Gemm,
// grouped and strided 2-D Conv, dilated 1-D Conv and an intermediate
// activation, and checks the implementation's statistics against values
// computed here, apart from the code under test, exactly: the activations
// are small dyadic numbers, so every sum is exact in float64 whatever the
// order of accumulation.
package calibtest

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand"
	"slices"
	"testing"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/onnxio"
)

// Fixture is a model, the data of its graph inputs and every activation
// its request reads.
type Fixture struct {
	// Name names the fixture (the subtest).
	Name string
	// Model is the model; its graph inputs have a batch axis 0.
	Model *onnxio.Model
	// Inputs holds the graph inputs over the whole set (N samples).
	Inputs map[string]calib.Activation
	// Activations holds every value the request reads, graph inputs and
	// values computed by the model, over the whole set.
	Activations map[string]calib.Activation
	// Intermediate reports that the request reads a value computed by the
	// model: a streaming implementation must run the model (a builder that
	// cannot, for want of ONNX Runtime, skips).
	Intermediate bool
	// Request is what to collect.
	Request calib.Request
}

// Builder builds the implementation under test for a fixture. An error
// may come from the build or from a later method; the suite accepts both.
// A statistic the request did not ask for is either refused with
// calib.ErrMissing or, by an implementation that collects on demand
// (evalharness.Calibrator), served correctly.
type Builder func(t *testing.T, f Fixture) (calib.Stats, error)

// N is the number of samples of every fixture (not a multiple of small
// batch sizes, so that batched implementations end on a partial batch).
const N = 7

// Run checks build on every fixture.
func Run(t *testing.T, build Builder) {
	t.Helper()
	t.Run("layers", func(t *testing.T) { checkLayers(t, build) })
	t.Run("intermediate", func(t *testing.T) { checkIntermediate(t, build) })
	t.Run("non-finite Gram", func(t *testing.T) {
		f := nonFinite(t, calib.Request{Grams: []string{"W1"}})
		st, err := build(t, f)
		if err == nil {
			_, _, _, err = st.InputGram("W1")
		}
		if !errors.Is(err, calib.ErrNonFinite) {
			t.Errorf("Gram of an input holding NaN: err = %v, want ErrNonFinite", err)
		}
	})
	t.Run("non-finite tensor", func(t *testing.T) {
		f := nonFinite(t, calib.Request{Tensors: []string{"x"}, Bins: 4})
		st, err := build(t, f)
		if err != nil {
			t.Fatalf("tensor statistics count NaN, they do not fail the collection: %v", err)
		}
		if _, _, err := st.ActivationRange("x"); !errors.Is(err, calib.ErrNonFinite) {
			t.Errorf("ActivationRange: err = %v, want ErrNonFinite", err)
		}
		if _, _, err := st.ActivationHistogram("x"); !errors.Is(err, calib.ErrNonFinite) {
			t.Errorf("ActivationHistogram: err = %v, want ErrNonFinite", err)
		}
	})
}

// dyadic returns n values in {−2, −1.75, …, 2}: sums of their products are
// exact in float64.
func dyadic(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.Intn(17)-8) / 4
	}
	return v
}

func size(shape []int64) int {
	n := 1
	for _, d := range shape {
		n *= int(d)
	}
	return n
}

type builder struct {
	t   *testing.T
	m   *onnxio.Model
	r   *rand.Rand
	f   Fixture
	err error
}

func newBuilder(t *testing.T, name string, seed int64) *builder {
	return &builder{t: t, m: onnxio.New(name, 17), r: rand.New(rand.NewSource(seed)),
		f: Fixture{Name: name, Inputs: map[string]calib.Activation{}, Activations: map[string]calib.Activation{}}}
}

// input adds a graph input [N, dims…] of dyadic values.
func (b *builder) input(name string, dims ...int64) calib.Activation {
	shape := append([]int64{N}, dims...)
	vs := []onnxio.Dim{{Param: "N", Value: -1}}
	for _, d := range dims {
		vs = append(vs, onnxio.Dim{Value: d})
	}
	b.m.AddInput(onnxio.ValueInfo{Name: name, DType: onnxio.Float, Shape: vs})
	a := calib.Activation{Shape: shape, Data: dyadic(b.r, size(shape))}
	b.f.Inputs[name], b.f.Activations[name] = a, a
	return a
}

// weight adds an initializer of values in {−1, 0, 1}.
func (b *builder) weight(name string, dims ...int64) []float32 {
	v := make([]float32, size(dims))
	raw := make([]byte, 4*len(v))
	for i := range v {
		v[i] = float32(b.r.Intn(3) - 1)
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v[i]))
	}
	tn, err := onnxio.NewTensor(name, onnxio.Float, dims, raw)
	if err == nil {
		err = b.m.SetInitializer(tn)
	}
	if err != nil {
		b.t.Fatal(err)
	}
	return v
}

func (b *builder) node(op string, in []string, out string, attrs ...onnxio.Attr) {
	if err := b.m.InsertNodes(onnxio.Node{Name: out + "_node", OpType: op, Inputs: in, Outputs: []string{out}, Attrs: attrs}); err != nil {
		b.t.Fatal(err)
	}
	b.m.AddOutput(onnxio.ValueInfo{Name: out, DType: onnxio.Float})
}

// Layers returns the suite's fixture of MatMul, Gemm, grouped strided 2-D
// Conv and dilated 1-D Conv layers reading graph inputs, for tests of an
// implementation beyond the suite (sharing, concurrency).
func Layers(t *testing.T) Fixture { return layersFixture(t) }

func layersFixture(t *testing.T) Fixture {
	b := newBuilder(t, "layers", 1)
	b.input("x", 3, 6)
	b.weight("W1", 6, 5)
	b.node("MatMul", []string{"x", "W1"}, "y1")
	b.input("g", 4)
	b.weight("G", 3, 4)
	b.node("Gemm", []string{"g", "G"}, "y2", onnxio.AttrInt("transB", 1))
	b.input("img", 4, 5, 5)
	b.weight("W3", 6, 2, 3, 3)
	b.node("Conv", []string{"img", "W3"}, "y3", onnxio.AttrInt("group", 2), onnxio.AttrIntList("strides", 2, 1),
		onnxio.AttrIntList("pads", 1, 0, 0, 1), onnxio.AttrIntList("kernel_shape", 3, 3))
	b.input("seq", 2, 7)
	b.weight("W4", 3, 2, 3)
	b.node("Conv", []string{"seq", "W4"}, "y4", onnxio.AttrIntList("dilations", 2), onnxio.AttrStr("auto_pad", "SAME_UPPER"),
		onnxio.AttrIntList("kernel_shape", 3))
	c := b.input("c", 2)
	for i := range c.Data {
		c.Data[i] = 3 // a constant tensor
	}
	b.node("Relu", []string{"c"}, "y5")
	b.f.Request = calib.Request{Grams: []string{"W1", "W3"}, Norms: []string{"G", "W4"}, Tensors: []string{"x", "img", "c"}, Bins: 8}
	b.f.Model = b.m
	return b.f
}

// gramOf returns XᵀX of the rows of x (n rows of d), by definition.
func gramOf(x []float64, d int) ([]float64, int64) {
	n := len(x) / d
	g := make([]float64, d*d)
	for i := 0; i < d; i++ {
		for j := 0; j < d; j++ {
			for r := 0; r < n; r++ {
				g[i*d+j] += x[r*d+i] * x[r*d+j]
			}
		}
	}
	return g, int64(n)
}

func f64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// patches returns the im2col rows of a [N, G·C, H, W] input for a kernel
// kh×kw, by padding the input explicitly and reading windows of the padded
// copy; each group's windows are rows of their own.
func patches(a calib.Activation, groups, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr int) []float64 {
	n, c, h, w := int(a.Shape[0]), int(a.Shape[1]), int(a.Shape[2]), int(a.Shape[3])
	ph, pw := h+pt+pb, w+pl+pr
	padded := make([]float64, n*c*ph*pw)
	for s := 0; s < n; s++ {
		for ch := 0; ch < c; ch++ {
			for y := 0; y < h; y++ {
				for x := 0; x < w; x++ {
					padded[((s*c+ch)*ph+y+pt)*pw+x+pl] = float64(a.Data[((s*c+ch)*h+y)*w+x])
				}
			}
		}
	}
	oh, ow := (ph-(kh-1)*dh-1)/sh+1, (pw-(kw-1)*dw-1)/sw+1
	cg := c / groups
	var rows []float64
	for s := 0; s < n; s++ {
		for g := 0; g < groups; g++ {
			for oy := 0; oy < oh; oy++ {
				for ox := 0; ox < ow; ox++ {
					for ch := g * cg; ch < (g+1)*cg; ch++ {
						for i := 0; i < kh; i++ {
							for j := 0; j < kw; j++ {
								rows = append(rows, padded[((s*c+ch)*ph+oy*sh+i*dh)*pw+ox*sw+j*dw])
							}
						}
					}
				}
			}
		}
	}
	return rows
}

// histogram counts v in bins equal-width bins over [lo, hi] (the last bin
// closed), by finding each value's bin among the edges.
func histogram(v []float64, bins int) ([]int64, []float64) {
	lo, hi := slices.Min(v), slices.Max(v)
	if lo == hi {
		lo, hi = lo-0.5, hi+0.5
	}
	edges := make([]float64, bins+1) // numpy.linspace(lo, hi, bins+1)
	step := (hi - lo) / float64(bins)
	for i := range edges {
		edges[i] = float64(i)*step + lo
	}
	edges[bins] = hi
	counts := make([]int64, bins)
	for _, x := range v {
		for i := 0; i < bins; i++ {
			if x >= edges[i] && (x < edges[i+1] || i == bins-1) {
				counts[i]++
				break
			}
		}
	}
	return counts, edges
}

func checkGram(t *testing.T, st calib.Stats, weight string, want []float64, wantN int64, normsOnly bool) {
	t.Helper()
	d := int(math.Sqrt(float64(len(want))))
	diag := make([]float64, d)
	for i := range diag {
		diag[i] = want[i*d+i]
	}
	sq, n, err := st.SquaredColumnNorms(weight)
	if err != nil {
		t.Fatalf("%s: SquaredColumnNorms: %v", weight, err)
	}
	if n != wantN || !slices.Equal(sq, diag) {
		t.Errorf("%s: squared column norms %v over %d rows, want %v over %d", weight, sq, n, diag, wantN)
	}
	sq[0] = -1 // the caller's copy
	if again, _, _ := st.SquaredColumnNorms(weight); again[0] != diag[0] {
		t.Errorf("%s: SquaredColumnNorms returned the implementation's own slice", weight)
	}
	xtx, gd, gn, err := st.InputGram(weight)
	if normsOnly && errors.Is(err, calib.ErrMissing) {
		return // else an implementation that computes on demand: check it
	}
	if err != nil {
		t.Fatalf("%s: InputGram: %v", weight, err)
	}
	if gd != d || gn != wantN || !slices.Equal(xtx, want) {
		t.Errorf("%s: Gram d=%d n=%d %v, want d=%d n=%d %v", weight, gd, gn, xtx, d, wantN, want)
	}
	xtx[1] = math.Pi
	if again, _, _, _ := st.InputGram(weight); again[1] != want[1] {
		t.Errorf("%s: InputGram returned the implementation's own slice", weight)
	}
}

func checkTensor(t *testing.T, st calib.Stats, name string, v []float64, bins int) {
	t.Helper()
	lo, hi, err := st.ActivationRange(name)
	if err != nil {
		t.Fatalf("%s: ActivationRange: %v", name, err)
	}
	if lo != slices.Min(v) || hi != slices.Max(v) {
		t.Errorf("%s: range [%v, %v], want [%v, %v]", name, lo, hi, slices.Min(v), slices.Max(v))
	}
	counts, edges, err := st.ActivationHistogram(name)
	if err != nil {
		t.Fatalf("%s: ActivationHistogram: %v", name, err)
	}
	wc, we := histogram(v, bins)
	if !slices.Equal(counts, wc) || !slices.Equal(edges, we) {
		t.Errorf("%s: histogram %v edges %v, want %v edges %v", name, counts, edges, wc, we)
	}
}

func checkLayers(t *testing.T, build Builder) {
	f := layersFixture(t)
	st, err := build(t, f)
	if err != nil {
		t.Fatal(err)
	}
	g1, n1 := gramOf(f64(f.Activations["x"].Data), 6)
	checkGram(t, st, "W1", g1, n1, false)
	gg, ng := gramOf(f64(f.Activations["g"].Data), 4)
	checkGram(t, st, "G", gg, ng, true)
	g3, n3 := gramOf(patches(f.Activations["img"], 2, 3, 3, 2, 1, 1, 1, 1, 0, 0, 1), 18)
	checkGram(t, st, "W3", g3, n3, false)
	// 1-D, dilation 2, SAME_UPPER on L = 7: total pad 4, 2 on each side
	seq := f.Activations["seq"]
	seq2 := calib.Activation{Shape: []int64{seq.Shape[0], seq.Shape[1], 1, seq.Shape[2]}, Data: seq.Data}
	g4, n4 := gramOf(patches(seq2, 1, 1, 3, 1, 1, 1, 2, 0, 2, 0, 2), 6)
	checkGram(t, st, "W4", g4, n4, true)
	for _, name := range f.Request.Tensors {
		checkTensor(t, st, name, f64(f.Activations[name].Data), f.Request.Bins)
	}
	// names the model lacks: ErrMissing (not collected), or ErrUnsupported
	// from an implementation that collects on demand
	for _, c := range []struct {
		what string
		err  error
	}{
		{"InputGram of an unknown weight", func() error { _, _, _, err := st.InputGram("nope"); return err }()},
		{"SquaredColumnNorms of an unknown weight", func() error { _, _, err := st.SquaredColumnNorms("nope"); return err }()},
		{"ActivationRange of an unknown tensor", func() error { _, _, err := st.ActivationRange("nope"); return err }()},
		{"ActivationHistogram of an unknown tensor", func() error { _, _, err := st.ActivationHistogram("nope"); return err }()},
	} {
		if !errors.Is(c.err, calib.ErrMissing) && !errors.Is(c.err, calib.ErrUnsupported) {
			t.Errorf("%s: err = %v, want ErrMissing or ErrUnsupported", c.what, c.err)
		}
	}
	// the statistics asked for are still served after those errors
	checkGram(t, st, "W1", g1, n1, false)
}

func checkIntermediate(t *testing.T, build Builder) {
	b := newBuilder(t, "intermediate", 2)
	x := b.input("x", 3, 6)
	w1 := b.weight("W1", 6, 5)
	b.node("MatMul", []string{"x", "W1"}, "h")
	b.node("Relu", []string{"h"}, "r")
	b.weight("W2", 5, 4)
	b.node("MatMul", []string{"r", "W2"}, "y")
	// r = relu(x·W1): small integers and quarters, exact in float32
	rows := len(x.Data) / 6
	r := make([]float32, rows*5)
	for i := 0; i < rows; i++ {
		for j := 0; j < 5; j++ {
			var s float32
			for k := 0; k < 6; k++ {
				s += x.Data[i*6+k] * w1[k*5+j]
			}
			r[i*5+j] = max(s, 0)
		}
	}
	b.f.Activations["r"] = calib.Activation{Shape: []int64{N, 3, 5}, Data: r}
	b.f.Intermediate = true
	b.f.Request = calib.Request{Grams: []string{"W2"}, Tensors: []string{"r"}, Bins: 5}
	b.f.Model = b.m
	st, err := build(t, b.f)
	if err != nil {
		t.Fatal(err)
	}
	g, n := gramOf(f64(r), 5)
	checkGram(t, st, "W2", g, n, false)
	checkTensor(t, st, "r", f64(r), 5)
}

func nonFinite(t *testing.T, r calib.Request) Fixture {
	b := newBuilder(t, "non-finite", 3)
	x := b.input("x", 3, 6)
	x.Data[10] = float32(math.NaN())
	b.weight("W1", 6, 5)
	b.node("MatMul", []string{"x", "W1"}, "y")
	b.f.Request = r
	b.f.Model = b.m
	return b.f
}
