package merge

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestMergekitKernelsAliasAndSeed: every mergekit kernel gives the same
// result when dst aliases the first model, the random ones give the same
// mask for a seed and another for another seed.
func TestMergekitKernelsAliasAndSeed(t *testing.T) {
	shape := []int64{6, 7}
	n := 42
	r := rand.New(rand.NewPCG(3, 4))
	gen := func() []float32 {
		v := make([]float32, n)
		for j := range v {
			v[j] = float32(r.NormFloat64())
		}
		return v
	}
	for _, tc := range mergekitCases() {
		t.Run(tc.name, func(t *testing.T) {
			base := gen()
			xs := make([][]float32, tc.models)
			for i := range xs {
				xs[i] = gen()
			}
			run := func(seed int64, alias bool) []float32 {
				opt := tc.opt
				if opt.Seed != 0 {
					opt.Seed = seed
				}
				if err := opt.Validate(tc.models, tc.base); err != nil {
					t.Fatal(err)
				}
				var b []float32
				if tc.base {
					b = slices.Clone(base)
				}
				in := make([][]float32, len(xs))
				for i := range xs {
					in[i] = slices.Clone(xs[i])
				}
				dst := make([]float32, n)
				if alias {
					dst = in[0]
				}
				if err := computeMergekit(&opt, &TensorPlan{Out: "w", Shape: shape}, dst, b, in); err != nil {
					t.Fatal(err)
				}
				return dst
			}
			plain := run(1, false)
			if got := run(1, true); !slices.Equal(got, plain) {
				t.Fatalf("aliased dst differs:\n%v\n%v", got, plain)
			}
			if tc.opt.Seed != 0 {
				if !slices.Equal(run(1, false), plain) {
					t.Fatal("same seed, different result")
				}
				if slices.Equal(run(2, false), plain) {
					t.Fatal("seeds 1 and 2 give the same result")
				}
			}
		})
	}
}

// TestMergekitKernelsEmpty: a tensor with no elements merges to nothing
// (ONNX allows zero-size initializers).
func TestMergekitKernelsEmpty(t *testing.T) {
	for _, tc := range mergekitCases() {
		opt := tc.opt
		if err := opt.Validate(tc.models, tc.base); err != nil {
			t.Fatal(err)
		}
		var b []float32
		if tc.base {
			b = []float32{}
		}
		xs := make([][]float32, tc.models)
		for i := range xs {
			xs[i] = []float32{}
		}
		err := computeMergekit(&opt, &TensorPlan{Out: "e", Shape: []int64{0, 3}}, []float32{}, b, xs)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
