package lowrank_test

import (
	"context"
	"fmt"
	"os"
	"regexp"

	"github.com/onnxpost/onnxpost/compress/lowrank"
	"github.com/onnxpost/onnxpost/onnxio"
)

// Factorize a 4×3 matrix of rank 2 and pick the rank that keeps 99% of its
// energy.
func ExampleExactSVD() {
	w := []float64{
		1, 2, 3,
		2, 4, 6,
		1, 0, 1,
		0, 1, 1,
	}
	s, err := lowrank.ExactSVD(w, 4, 3)
	if err != nil {
		panic(err)
	}
	r := lowrank.Rule{Kind: lowrank.ByEnergy, Value: 0.99}.Select(s)
	a, b := s.Factors(r) // a 4×r, b r×3
	fmt.Printf("rank %d keeps %.4f of the energy; factors %d and %d values; saves parameters: %v\n",
		r, s.Energy(r), len(a), len(b), lowrank.Saves(4, 3, r))
	// Output: rank 2 keeps 1.0000 of the energy; factors 8 and 6 values; saves parameters: false
}

// Factorize the first two Gemm layers of the zoo's MLP at a quarter of their
// rank and print the per-layer table.
func ExampleApply() {
	model, err := onnxio.Load("../../models/zoo/mlp/base.onnx")
	if err != nil {
		panic(err)
	}
	rep, err := lowrank.Apply(context.Background(), model, lowrank.Options{
		Scheme:  lowrank.SchemeSVD,
		Rule:    lowrank.Rule{Kind: lowrank.ByRankRatio, Value: 0.25},
		Include: regexp.MustCompile(`fc[12]`),
	})
	if err != nil {
		panic(err)
	}
	for _, l := range rep.Layers {
		fmt.Printf("%s: rank %d, %d → %d parameters\n", l.Weight, l.Rank, l.ParamsBefore, l.ParamsAfter)
	}
	_ = rep.WriteTable(os.Stderr)
	// Output:
	// fc1.weight: rank 16, 8192 → 3072 parameters
	// fc2.weight: rank 16, 8192 → 3072 parameters
}
