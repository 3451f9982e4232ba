package autodiff_test

import (
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/onnxpost/onnxpost/autodiff"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/internal/pyoracle"
	"github.com/onnxpost/onnxpost/onnxio"
)

// TestMiniLMDirectionalDerivatives builds the gradient graph of a real
// exported BERT (all-MiniLM-L6-v2, `make minilm`; skipped when absent):
// embeddings Gather, attention-mask arithmetic, LayerNormalization, Erf
// GELU, Softmax, mean pooling and L2 normalization with Clip. It compares
// g·v with central differences of the loss along random directions v, in
// float32 (h = 1e-2 on unit-norm directions; tolerance 5 % of g·v plus the
// loss's float32 noise over 2h).
func TestMiniLMDirectionalDerivatives(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the 90 MB MiniLM")
	}
	requireORT(t)
	dir := filepath.Join(pyoracle.RepoRoot(), "models", "minilm")
	if _, err := os.Stat(filepath.Join(dir, "model.onnx")); err != nil {
		t.Skip("models/minilm not generated (make minilm)")
	}
	m, err := onnxio.Load(filepath.Join(dir, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	text, err := evalharness.ReadNPZ(filepath.Join(dir, "text.npz"))
	if err != nil {
		t.Fatal(err)
	}
	feed := map[string]*evalharness.Array{}
	for k, v := range text {
		feed[k] = v.Slice(0, 2)
	}
	info, err := probe(m, feed)
	if err != nil {
		t.Fatal(err)
	}
	params := []string{
		"bert.embeddings.word_embeddings.weight",
		"bert.embeddings.LayerNorm.weight",
		"bert.encoder.layer.0.attention.self.query.weight",
		"bert.encoder.layer.5.intermediate.dense.bias",
	}
	for _, p := range params {
		if !m.HasInitializer(p) {
			t.Skipf("MiniLM export has no initializer %s", p)
		}
	}
	out := m.Outputs()[0].Name
	r := rand.New(rand.NewSource(9))
	s := make([]float32, 2*384)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	seed := evalharness.FromFloat32([]int64{2, 384}, s)
	g, names, err := autodiff.Gradients(m, out, "seed", params, autodiff.Options{Info: info})
	if err != nil {
		t.Fatal(err)
	}
	gin := map[string]*evalharness.Array{"seed": seed}
	for k, v := range feed {
		gin[k] = v
	}
	gouts, err := run(g, gin)
	if err != nil {
		t.Fatal(err)
	}
	// Forward loss with the parameters as inputs.
	fm := m.Clone()
	st, _ := onnxio.FromFloat32("seedc", onnxio.Float, []int64{2, 384}, s)
	one, _ := onnxio.FromInt64("one1", onnxio.Int64, []int64{1}, []int64{1})
	_ = fm.SetInitializer(st)
	_ = fm.SetInitializer(one)
	if err := fm.InsertNodes(
		nd("Cast", []string{out}, []string{"o64"}, ai("to", int64(onnxio.Double))),
		nd("Cast", []string{"seedc"}, []string{"s64"}, ai("to", int64(onnxio.Double))),
		nd("Mul", []string{"o64", "s64"}, []string{"ls"}),
		nd("ReduceSum", []string{"ls"}, []string{"l0"}, ai("keepdims", 0)),
		nd("Reshape", []string{"l0", "one1"}, []string{"loss"}),
	); err != nil {
		t.Fatal(err)
	}
	fm.SetOutputs([]onnxio.ValueInfo{{Name: "loss", DType: onnxio.Double}})
	base, err := fm.InitializersToInputs(params)
	if err != nil {
		t.Fatal(err)
	}
	b, err := fm.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	sess, err := evalharness.NewSession(b, evalharness.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	vals := map[string][]float32{}
	for _, tt := range base {
		v, _ := tt.Float32()
		vals[tt.Name] = v
	}
	loss := func(p string, dirv []float64, h float64) float64 {
		in := map[string]*evalharness.Array{}
		for k, v := range feed {
			in[k] = v
		}
		for _, tt := range base {
			v := vals[tt.Name]
			if tt.Name == p {
				w := make([]float32, len(v))
				for i := range v {
					w[i] = v[i] + float32(h*dirv[i])
				}
				v = w
			}
			in[tt.Name] = evalharness.FromFloat32(tt.Shape, v)
		}
		o, err := sess.Run(in)
		if err != nil {
			t.Fatal(err)
		}
		f, _ := o[0].Float64()
		return f[0]
	}
	for i, p := range params {
		gv, err := gouts[names[i]].Float64()
		if err != nil {
			t.Fatal(err)
		}
		n := len(vals[p])
		dirv := make([]float64, n)
		var nv, ng, dot float64
		for k := range dirv {
			dirv[k] = r.NormFloat64()
			nv += dirv[k] * dirv[k]
		}
		for k := range dirv {
			dirv[k] /= math.Sqrt(nv)
			dot += gv[k] * dirv[k]
			ng += gv[k] * gv[k]
		}
		const h = 1e-2
		fd := (loss(p, dirv, h) - loss(p, dirv, -h)) / (2 * h)
		// 5 % of the derivative, plus float32 noise of the loss (~1e-6)
		// divided by 2h.
		if err := math.Abs(fd - dot); err > 0.05*math.Abs(dot)+2e-4 {
			t.Errorf("%s: g·v = %.6g, finite differences %.6g (|g| = %.3g)", p, dot, fd, math.Sqrt(ng))
		} else {
			t.Logf("%s: g·v = %.6g, finite differences %.6g (|g| = %.3g)", p, dot, fd, math.Sqrt(ng))
		}
	}
}
