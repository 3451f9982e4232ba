package rebasin

import (
	"errors"
	"math"
	"math/rand"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

// randomTurn turns every head of the attention groups of m by a random
// orthogonal map (the orthogonal factor of a Gaussian matrix).
func randomTurn(t *testing.T, m *onnxio.Model, gs []Group, seed int64) *onnxio.Model {
	t.Helper()
	r := rand.New(rand.NewSource(seed))
	data, uses, err := load(m, gs)
	if err != nil {
		t.Fatal(err)
	}
	for gi, g := range gs {
		if g.Heads < 2 || g.Attention == "" {
			continue
		}
		hd := g.Size / g.Heads
		for h := 0; h < g.Heads; h++ {
			c := make([]float64, hd*hd)
			for i := range c {
				c[i] = r.NormFloat64()
			}
			rot, err := procrustes(c, hd)
			if err != nil {
				t.Fatal(err)
			}
			for name, us := range uses {
				for _, u := range us {
					if u.group == gi {
						turnBlock(data[name].v, data[name].shape, u.axis, h*hd, hd, rot)
					}
				}
			}
		}
	}
	out := m.Clone()
	for name, d := range data {
		tt, err := onnxio.FromFloat64(name, d.t.DType, d.shape, d.v)
		if err != nil {
			t.Fatal(err)
		}
		if err := out.SetInitializer(tt); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// maxWeightDiff is the largest difference between the float initializers
// of a and b.
func maxWeightDiff(t *testing.T, a, b *onnxio.Model) float64 {
	t.Helper()
	worst := 0.0
	for _, n := range a.Initializers() {
		x, _ := a.Initializer(n)
		y, err := b.Initializer(n)
		if err != nil || !x.DType.IsFloat() {
			continue
		}
		xv, _ := x.Float64()
		yv, _ := y.Float64()
		for i := range xv {
			worst = math.Max(worst, math.Abs(xv[i]-yv[i]))
		}
	}
	return worst
}

// TestRotateHeadsRecovers: the zoo transformer with every head turned by
// a random orthogonal map is turned back onto itself (weights within
// float32 rounding), and the model itself is left in place.
func TestRotateHeadsRecovers(t *testing.T) {
	a := loadZoo(t, "transformer")
	gs, err := Groups(a)
	if err != nil {
		t.Fatal(err)
	}
	turned := randomTurn(t, a, gs, 7)
	if d := maxWeightDiff(t, a, turned); d < 0.01 {
		t.Fatalf("the random turn changed the weights by %g only", d)
	}
	back, heads, err := RotateHeads(a, turned, gs)
	if err != nil {
		t.Fatal(err)
	}
	if heads != 8 { // 2 blocks × (queries/keys, values/output) × 2 heads
		t.Fatalf("%d heads turned, want 8", heads)
	}
	if d := maxWeightDiff(t, a, back); d > 1e-5 {
		t.Fatalf("turned back: max weight difference %g, want ≤ 1e-5", d)
	}
	// a per-unit use of block 0's query bias (here an unused Mul) does not
	// commute with a turn: that group keeps its units, the others turn
	scaled := turned.Clone()
	if err := scaled.InsertNodes(onnxio.Node{Name: "scale", OpType: "Mul", Inputs: []string{"blocks.0.q.bias", "blocks.0.q.bias"}, Outputs: []string{"scaled"}}); err != nil {
		t.Fatal(err)
	}
	part, heads, err := RotateHeads(a, scaled, gs)
	if err != nil || heads != 6 {
		t.Fatalf("%d heads turned (%v), want 6", heads, err)
	}
	for _, n := range []string{"blocks.0.q.weight", "blocks.0.k.bias"} {
		x, _ := part.Initializer(n)
		y, _ := turned.Initializer(n)
		xv, _ := x.Float64()
		yv, _ := y.Float64()
		for i := range xv {
			if xv[i] != yv[i] {
				t.Fatalf("%s changed although its group cannot turn", n)
			}
		}
	}
	self, _, err := RotateHeads(a, a, gs)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxWeightDiff(t, a, self); d > 1e-6 {
		t.Fatalf("a turned onto itself moved by %g", d)
	}
}

// TestRotateHeadsSameFunction: the seed pair's B, permuted and turned onto
// A, computes B's function in ONNX Runtime (max abs ≤ 1e-5).
func TestRotateHeadsSameFunction(t *testing.T) {
	if err := evalharness.Init(""); err != nil {
		if errors.Is(err, evalharness.ErrNoLibrary) {
			t.Skipf("ONNX Runtime not available: %v", err)
		}
		t.Fatal(err)
	}
	a, err := onnxio.Load("../../models/zoo/transformer/seed_a.onnx")
	if err != nil {
		t.Skipf("re-basin zoo missing (make rebasin-zoo): %v", err)
	}
	b, err := onnxio.Load("../../models/zoo/transformer/seed_b.onnx")
	if err != nil {
		t.Skipf("re-basin zoo missing (make rebasin-zoo): %v", err)
	}
	r, err := WeightMatching(t.Context(), a, b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Permute(b, r.Groups, r.Perms)
	if err != nil {
		t.Fatal(err)
	}
	q, heads, err := RotateHeads(a, p, r.Groups)
	if err != nil || heads != 8 {
		t.Fatalf("%d heads turned, %v", heads, err)
	}
	if d := maxWeightDiff(t, p, q); d < 0.01 {
		t.Fatalf("the heads barely turned (%g)", d)
	}
	shape := []int64{32, 1, 8, 8}
	x := make([]float32, 32*64)
	rng := rand.New(rand.NewSource(3))
	for i := range x {
		x[i] = float32(rng.Float64())
	}
	run := func(m *onnxio.Model) []float64 {
		raw, err := m.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		s, err := evalharness.NewSession(raw, evalharness.SessionOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		out, err := s.Run(map[string]*evalharness.Array{"image": evalharness.FromFloat32(shape, x)})
		if err != nil {
			t.Fatal(err)
		}
		v, err := out[0].Float64()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	yb, yq := run(b), run(q)
	worst := 0.0
	for i := range yb {
		worst = math.Max(worst, math.Abs(yb[i]-yq[i]))
	}
	if worst > 1e-5 {
		t.Fatalf("turned model: max abs %g from B's outputs, want ≤ 1e-5", worst)
	}
	t.Logf("max abs %.2g", worst)
}
