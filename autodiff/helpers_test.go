package autodiff_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/autodiff"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

// requireORT skips the test when ONNX Runtime cannot be loaded.
func requireORT(t testing.TB) {
	t.Helper()
	if err := evalharness.Init(""); err != nil {
		if errors.Is(err, evalharness.ErrNoLibrary) {
			t.Skipf("ONNX Runtime not available: %v", err)
		}
		t.Fatalf("ONNX Runtime failed to initialize: %v", err)
	}
}

type randT = rand.Rand

func nd(op string, in, out []string, attrs ...onnxio.Attr) onnxio.Node {
	return onnxio.Node{Name: out[0] + "_node", OpType: op, Inputs: in, Outputs: out, Attrs: attrs}
}

// tensorSpec is one initializer of a test graph.
type tensorSpec struct {
	name  string
	shape []int64
	// gen draws the values; nil means normal(0,1).
	gen func(r *rand.Rand, n int) []float64
	// ints marks an int64 tensor (values from intVals).
	ints    []int64
	boolean []bool
	param   bool
}

func normal(r *rand.Rand, n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = r.NormFloat64()
	}
	return v
}

// awayFromZero draws |v| in [0.2, 1.5] with a random sign.
func awayFromZero(r *rand.Rand, n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = 0.2 + 1.3*r.Float64()
		if r.Intn(2) == 0 {
			v[i] = -v[i]
		}
	}
	return v
}

func positive(r *rand.Rand, n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = 0.5 + r.Float64()
	}
	return v
}

// distinct draws a random permutation of evenly spaced values, so that no
// two differ by less than 0.05 (max-pooling ties cannot flip under FD).
func distinct(r *rand.Rand, n int) []float64 {
	v := make([]float64, n)
	for i, p := range r.Perm(n) {
		v[i] = float64(p)*0.05 - float64(n)*0.025
	}
	return v
}

// gradCase is one finite-difference test: a graph whose output "y" is
// differentiated with respect to the tensors marked param.
type gradCase struct {
	name    string
	opset   int64
	tensors []tensorSpec
	nodes   []onnxio.Node
	inputs  []onnxio.ValueInfo
}

// build returns the forward model in dtype dt.
func (c gradCase) build(t testing.TB, dt onnxio.DType, seed int64) (*onnxio.Model, []string) {
	t.Helper()
	op := c.opset
	if op == 0 {
		op = 17
	}
	m := onnxio.New("test", op)
	r := rand.New(rand.NewSource(seed))
	var params []string
	for _, s := range c.tensors {
		var tt *onnxio.Tensor
		var err error
		switch {
		case s.ints != nil:
			tt, err = onnxio.FromInt64(s.name, onnxio.Int64, s.shape, s.ints)
		case s.boolean != nil:
			v := make([]int64, len(s.boolean))
			for i, b := range s.boolean {
				if b {
					v[i] = 1
				}
			}
			tt, err = onnxio.FromInt64(s.name, onnxio.Bool, s.shape, v)
		default:
			n, _ := onnxio.NumElements(s.shape)
			g := s.gen
			if g == nil {
				g = normal
			}
			tt, err = onnxio.FromFloat64(s.name, dt, s.shape, g(r, int(n)))
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetInitializer(tt); err != nil {
			t.Fatal(err)
		}
		if s.param {
			params = append(params, s.name)
		}
	}
	for _, in := range c.inputs {
		m.AddInput(in)
	}
	nodes := make([]onnxio.Node, len(c.nodes))
	for i, n := range c.nodes {
		n.Attrs = append([]onnxio.Attr(nil), n.Attrs...)
		for j, a := range n.Attrs {
			if a.Name == "to" && a.I == int64(onnxio.Float) { // Cast back to the test dtype
				n.Attrs[j].I = int64(dt)
			}
		}
		nodes[i] = n
	}
	if err := m.InsertNodes(nodes...); err != nil {
		t.Fatal(err)
	}
	// onnxruntime_go cannot run a session without inputs: add an unused one.
	m.AddInput(onnxio.ValueInfo{Name: "dummy", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 1}}})
	m.SetOutputs([]onnxio.ValueInfo{{Name: "y"}})
	return m, params
}

// run runs a model with no or given inputs and returns its outputs by name.
func run(m *onnxio.Model, inputs map[string]*evalharness.Array) (map[string]*evalharness.Array, error) {
	b, err := m.Bytes()
	if err != nil {
		return nil, err
	}
	s, err := evalharness.NewSession(b, evalharness.SessionOptions{Threads: 1})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if inputs == nil {
		inputs = map[string]*evalharness.Array{}
	}
	for _, in := range s.Inputs() {
		if _, ok := inputs["dummy"]; !ok && in.Name == "dummy" {
			inputs["dummy"] = evalharness.FromFloat32([]int64{1}, []float32{0})
		}
	}
	outs, err := s.Run(inputs)
	if err != nil {
		return nil, err
	}
	res := map[string]*evalharness.Array{}
	for i, o := range s.Outputs() {
		res[o.Name] = outs[i]
	}
	return res, nil
}

// probe returns the dtype and shape of every value of m.
func probe(m *onnxio.Model, inputs map[string]*evalharness.Array) (map[string]autodiff.Info, error) {
	p, po, err := autodiff.ProbeModel(m)
	if err != nil {
		return nil, err
	}
	outs, err := run(p, inputs)
	if err != nil {
		return nil, err
	}
	info, err := autodiff.ProbeInfo(po,
		func(o string) (onnxio.DType, error) { return outs[o].DType, nil },
		func(o string) ([]int64, error) { return outs[o].Int64() })
	if err != nil {
		return nil, err
	}
	for k, a := range inputs {
		info[k] = autodiff.Info{DType: a.DType, Shape: a.Shape}
	}
	return info, nil
}

// checkCase compares the gradient graph with central finite differences.
// It runs in float64 when ONNX Runtime's CPU kernels support it and falls
// back to float32 otherwise, with a larger step and tolerance.
func checkCase(t *testing.T, c gradCase) {
	t.Helper()
	err := checkCaseDType(t, c, onnxio.Double)
	if err != nil && isNotImplemented(err) {
		t.Logf("no float64 kernel (%v): checking in float32", firstLine(err))
		err = checkCaseDType(t, c, onnxio.Float)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 160 {
		s = s[:160]
	}
	return s
}

func isNotImplemented(err error) bool {
	s := err.Error()
	return strings.Contains(s, "NOT_IMPLEMENTED") || strings.Contains(s, "Could not find an implementation") || strings.Contains(s, "not supported") || strings.Contains(s, "Type Error")
}

func checkCaseDType(t *testing.T, c gradCase, dt onnxio.DType) error {
	m, params := c.build(t, dt, 1)
	info, err := probe(m, nil)
	if err != nil {
		return err
	}
	yi := info["y"]
	r := rand.New(rand.NewSource(7))
	n, _ := onnxio.NumElements(yi.Shape)
	sv := normal(r, int(n))
	seedT, err := onnxio.FromFloat64("seed", dt, yi.Shape, sv)
	if err != nil {
		return err
	}
	gm := m.Clone()
	if err := gm.SetInitializer(seedT); err != nil {
		return err
	}
	g, names, err := autodiff.Gradients(gm, "y", "seed", params, autodiff.Options{Info: info})
	if err != nil {
		return err
	}
	// Flatten the gradients: onnxruntime_go cannot return 0-d outputs.
	flat := make([]onnxio.ValueInfo, len(names))
	minus1, _ := onnxio.FromInt64("minus1", onnxio.Int64, []int64{1}, []int64{-1})
	if err := g.SetInitializer(minus1); err != nil {
		return err
	}
	for i, nm := range names {
		flat[i] = onnxio.ValueInfo{Name: nm + "_flat"}
		if err := g.InsertNodes(nd("Reshape", []string{nm, "minus1"}, []string{nm + "_flat"})); err != nil {
			return err
		}
		names[i] = nm + "_flat"
	}
	g.SetOutputs(flat)
	gouts, err := run(g, nil)
	if err != nil {
		return fmt.Errorf("gradient graph: %w", err)
	}
	// Forward loss L = Σ seed⊙y in float64, parameters as inputs.
	fm := m.Clone()
	seed64, _ := onnxio.FromFloat64("seed64", onnxio.Double, yi.Shape, sv)
	if err := fm.SetInitializer(seed64); err != nil {
		return err
	}
	one, _ := onnxio.FromInt64("one", onnxio.Int64, []int64{1}, []int64{1})
	if err := fm.SetInitializer(one); err != nil {
		return err
	}
	if err := fm.InsertNodes(
		nd("Cast", []string{"y"}, []string{"y64"}, onnxio.AttrInt("to", int64(onnxio.Double))),
		nd("Mul", []string{"y64", "seed64"}, []string{"ly"}),
		nd("ReduceSum", []string{"ly"}, []string{"loss"}, onnxio.AttrInt("keepdims", 0)),
		nd("Reshape", []string{"loss", "one"}, []string{"loss1"}),
	); err != nil {
		return err
	}
	fm.SetOutputs([]onnxio.ValueInfo{{Name: "loss1", DType: onnxio.Double, Shape: []onnxio.Dim{{Value: 1}}}})
	vals, err := fm.InitializersToInputs(params)
	if err != nil {
		return err
	}
	b, err := fm.Bytes()
	if err != nil {
		return err
	}
	s, err := evalharness.NewSession(b, evalharness.SessionOptions{Threads: 1})
	if err != nil {
		return err
	}
	defer s.Close()
	base := map[string][]float64{}
	feed := map[string]*evalharness.Array{}
	mk := func(name string, v []float64, shape []int64) *evalharness.Array {
		if dt == onnxio.Double {
			return evalharness.FromFloat64(shape, v)
		}
		f := make([]float32, len(v))
		for i := range v {
			f[i] = float32(v[i])
		}
		return evalharness.FromFloat32(shape, f)
	}
	feed["dummy"] = evalharness.FromFloat32([]int64{1}, []float32{0})
	for _, tt := range vals {
		v, err := tt.Float64()
		if err != nil {
			return err
		}
		base[tt.Name] = v
		feed[tt.Name] = mk(tt.Name, v, tt.Shape)
	}
	h, rtol := 1e-6, 1e-6
	if dt != onnxio.Double {
		h, rtol = 1e-2, 3e-3
	}
	loss := func() (float64, error) {
		o, err := s.Run(feed)
		if err != nil {
			return 0, err
		}
		v, err := o[0].Float64()
		if err != nil {
			return 0, err
		}
		return v[0], nil
	}
	for pi, tt := range vals {
		ga, ok := gouts[names[pi]]
		if !ok {
			return fmt.Errorf("no gradient output for %s", tt.Name)
		}
		got, err := ga.Float64()
		if err != nil {
			return err
		}
		if len(got) != len(base[tt.Name]) {
			return fmt.Errorf("gradient of %s has %d elements, want %d", tt.Name, len(got), len(base[tt.Name]))
		}
		v := append([]float64(nil), base[tt.Name]...)
		fd := make([]float64, len(v))
		for i := range v {
			orig := v[i]
			v[i] = orig + h
			feed[tt.Name] = mk(tt.Name, v, tt.Shape)
			lp, err := loss()
			if err != nil {
				return err
			}
			v[i] = orig - h
			feed[tt.Name] = mk(tt.Name, v, tt.Shape)
			lm, err := loss()
			if err != nil {
				return err
			}
			v[i] = orig
			fd[i] = (lp - lm) / (2 * h)
		}
		feed[tt.Name] = mk(tt.Name, v, tt.Shape)
		scale := 0.0
		for _, f := range fd {
			scale = math.Max(scale, math.Abs(f))
		}
		scale = math.Max(scale, 1e-3)
		worst := 0.0
		for i := range fd {
			worst = math.Max(worst, math.Abs(got[i]-fd[i])/scale)
		}
		if worst > rtol || math.IsNaN(worst) {
			return fmt.Errorf("%s (%v): gradient of %s differs from finite differences: max |g-fd|/max|fd| = %.3g > %.3g\n got %v\n fd  %v", c.name, dt, tt.Name, worst, rtol, trunc(got), trunc(fd))
		}
		t.Logf("%v %s: max rel err %.2g over %d elements", dt, tt.Name, worst, len(fd))
	}
	return nil
}

func trunc(v []float64) []float64 {
	if len(v) > 12 {
		return v[:12]
	}
	return v
}
