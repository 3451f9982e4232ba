package merge

import (
	"bytes"
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

// maskVals is a constant like a −Inf attention mask or pad value.
var maskVals = []float32{float32(math.Inf(-1)), 0, 2.5, float32(math.Inf(-1)), -1, float32(math.Inf(1)), 0.125, float32(math.Inf(-1))}

// withMask returns a clone of m whose l0.q.b (8 values) holds vals.
func withMask(t *testing.T, m *onnxio.Model, vals []float32) *onnxio.Model {
	t.Helper()
	c := m.Clone()
	x, err := c.Initializer("l0.q.b")
	if err != nil {
		t.Fatal(err)
	}
	nt, err := onnxio.FromFloat32("l0.q.b", onnxio.Float, x.Shape, vals)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetInitializer(nt); err != nil {
		t.Fatal(err)
	}
	return c
}

// onesLike returns a Fisher file for m: every initializer filled with 1.
func onesLike(t *testing.T, m *onnxio.Model) *onnxio.Model {
	t.Helper()
	c := m.Clone()
	for _, n := range c.Initializers() {
		x, _ := c.Initializer(n)
		k, _ := onnxio.NumElements(x.Shape)
		ones := make([]float32, k)
		for i := range ones {
			ones[i] = 1
		}
		nt, err := onnxio.FromFloat32(n, onnxio.Float, x.Shape, ones)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SetInitializer(nt); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// TestIdenticalNonFiniteTensorKept merges models whose l0.q.b is the same
// constant holding ±Inf in every model and the base, while their other
// tensors differ: under every method that tensor comes out bit for bit,
// and the merge of the other tensors is unaffected.
func TestIdenticalNonFiniteTensorKept(t *testing.T) {
	b0, f0 := zooLike(t, tiny)
	base := withMask(t, b0, maskVals)
	var fts []*onnxio.Model
	for _, f := range f0 {
		fts = append(fts, withMask(t, f, maskVals))
	}
	third, half, lam := 0.3, 0.5, 0.7
	fishers := []*onnxio.Model{onesLike(t, fts[0]), onesLike(t, fts[1])}
	tests := []struct {
		name string
		in   Inputs
		opt  Options
	}{
		{"linear", Inputs{Models: fts}, Options{Method: Linear, Weights: []float64{0.2, 0.3, 0.5}}},
		{"linear unnormalized, weights sum to 1", Inputs{Models: fts[:2]}, Options{Method: Linear, Weights: []float64{0.25, 0.75}, NoNormalize: true}},
		{"task arithmetic", Inputs{Base: base, Models: fts}, Options{Method: TaskArithmetic, Lambda: &lam}},
		{"ties global", Inputs{Base: base, Models: fts}, Options{Method: TIES}},
		{"ties tensor", Inputs{Base: base, Models: fts}, Options{Method: TIES, TrimScope: TrimTensor}},
		{"ties disjoint sum", Inputs{Base: base, Models: fts}, Options{Method: TIES, TIESDisjointSum: true}},
		{"dare", Inputs{Base: base, Models: fts}, Options{Method: DARE}},
		{"dare-ties", Inputs{Base: base, Models: fts}, Options{Method: DARETIES}},
		{"slerp", Inputs{Models: fts[:2]}, Options{Method: SLERP, T: &third}},
		{"slerp with base", Inputs{Base: base, Models: fts[:1]}, Options{Method: SLERP, T: &half}},
		{"fisher", Inputs{Models: fts[:2], Fishers: fishers}, Options{Method: Fisher}},
		{"dare-linear", Inputs{Base: base, Models: fts}, Options{Method: DARELinear}},
		{"breadcrumbs", Inputs{Base: base, Models: fts}, Options{Method: Breadcrumbs}},
		{"breadcrumbs-ties", Inputs{Base: base, Models: fts}, Options{Method: BreadcrumbsTIES}},
		{"della", Inputs{Base: base, Models: fts}, Options{Method: Della}},
		{"della-linear", Inputs{Base: base, Models: fts}, Options{Method: DellaLinear}},
		{"model-stock", Inputs{Base: base, Models: fts}, Options{Method: ModelStock}},
		{"nuslerp", Inputs{Models: fts[:2]}, Options{Method: NuSlerp}},
		{"multislerp", Inputs{Base: base, Models: fts}, Options{Method: MultiSlerp}},
		{"karcher", Inputs{Models: fts}, Options{Method: Karcher}},
		{"sce", Inputs{Base: base, Models: fts}, Options{Method: SCE}},
		{"nearswap", Inputs{Base: base, Models: fts[:1]}, Options{Method: NearSwap, T: &half}},
		{"arcee-fusion", Inputs{Base: base, Models: fts[:1]}, Options{Method: ArceeFusion}},
	}
	want, _ := onnxio.FromFloat32("l0.q.b", onnxio.Float, []int64{8}, maskVals)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mg, err := New(context.Background(), tc.in, tc.opt, nil)
			if err != nil {
				t.Fatal(err)
			}
			out, err := mg.Model(context.Background(), nil)
			if err != nil {
				t.Fatalf("merge: %v", err)
			}
			got, err := out.Initializer("l0.q.b")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				v, _ := got.Float32()
				t.Fatalf("l0.q.b = %v, want %v unchanged", v, maskVals)
			}
			// A tensor that differs across the models was merged.
			if slices.Equal(floats(t, out, "l0.fc1.w"), floats(t, tc.in.Models[0], "l0.fc1.w")) &&
				slices.Equal(floats(t, out, "l0.fc1.w"), floats(t, tc.in.Models[len(tc.in.Models)-1], "l0.fc1.w")) && len(tc.in.Models) > 1 {
				t.Fatal("l0.fc1.w was not merged")
			}
		})
	}
}

// TestDifferentNonFiniteTensorFails: ±Inf that is not the same in every
// model is still an error naming the tensor, with and without a base.
func TestDifferentNonFiniteTensorFails(t *testing.T) {
	b0, f0 := zooLike(t, tiny)
	other := slices.Clone(maskVals)
	other[2] = 3 // one finite value differs
	base := withMask(t, b0, maskVals)
	a, b := withMask(t, f0[0], maskVals), withMask(t, f0[1], other)
	tests := []struct {
		name string
		in   Inputs
		opt  Options
	}{
		{"linear", Inputs{Models: []*onnxio.Model{a, b}}, Options{Method: Linear}},
		{"ties", Inputs{Base: base, Models: []*onnxio.Model{a, b}}, Options{Method: TIES, TrimScope: TrimTensor}},
		{"task arithmetic, base differs", Inputs{Base: withMask(t, b0, other), Models: []*onnxio.Model{a, withMask(t, f0[1], maskVals)}}, Options{Method: TaskArithmetic}},
		// Σ wᵢ·x is not x: the method runs and meets the infinities.
		{"linear unnormalized", Inputs{Models: []*onnxio.Model{a, withMask(t, f0[1], maskVals)}}, Options{Method: Linear, Weights: []float64{1, 1}, NoNormalize: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mg, err := New(context.Background(), tc.in, tc.opt, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = mg.Model(context.Background(), nil)
			if !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), `merging "l0.q.b"`) || !strings.Contains(err.Error(), "Inf") && !strings.Contains(err.Error(), "NaN") {
				t.Fatalf("error %v, want ErrIncompatible naming l0.q.b and a non-finite value", err)
			}
		})
	}
}

// TestGlobalThresholdIgnoresEqualInfinities: a ±Inf constant equal in
// base and model has zero deltas for the global TIES threshold, exactly
// like a finite constant (−Inf − −Inf would be NaN, the largest key).
func TestGlobalThresholdIgnoresEqualInfinities(t *testing.T) {
	b0, f0 := zooLike(t, tiny)
	thresholds := func(vals []float32) []float64 {
		var fts []*onnxio.Model
		for _, f := range f0 {
			fts = append(fts, withMask(t, f, vals))
		}
		mg, err := New(context.Background(), Inputs{Base: withMask(t, b0, vals), Models: fts}, Options{Method: TIES}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return mg.Thresholds()
	}
	finite := make([]float32, len(maskVals))
	if got, want := thresholds(maskVals), thresholds(finite); !slices.Equal(got, want) {
		t.Fatalf("thresholds %v with the ±Inf constant, want %v as with a zero constant", got, want)
	}
}
