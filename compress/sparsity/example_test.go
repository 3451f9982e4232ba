package sparsity_test

import (
	"context"
	"fmt"

	"github.com/onnxpost/onnxpost/compress/sparsity"
)

// Prune a MatMul weight B [K=8, N=2] to 2:4 by magnitude and check the
// result with the independent verifier.
func Example() {
	b := []float32{
		0.9, -0.1,
		-0.2, 0.8,
		0.05, -0.7,
		0.6, 0.3,
		0.1, 0.2,
		-0.3, 0.4,
		0.5, -0.6,
		0.7, 0.05,
	}
	layers := []sparsity.Layer{{Name: "B", Layout: sparsity.LayoutKN, Dims: []int64{8, 2}, Data: b}}
	outs, rep, err := sparsity.Prune(context.Background(), layers, sparsity.Options{Method: sparsity.Magnitude, Pattern: sparsity.Pattern{N: 2, M: 4}}, nil)
	if err != nil {
		panic(err)
	}
	for k := 0; k < 8; k++ {
		fmt.Println(outs[0][2*k], outs[0][2*k+1])
	}
	check, _ := sparsity.VerifyNM(outs[0], sparsity.LayoutKN, []int64{8, 2}, sparsity.Pattern{N: 2, M: 4})
	fmt.Printf("pruned %d of %d, groups %d, violations %d\n", rep.Pruned, rep.Params, check.Groups, check.Violations)
	// Output:
	// 0.9 0
	// 0 0.8
	// 0 -0.7
	// 0.6 0
	// 0 0
	// 0 0.4
	// 0.5 -0.6
	// 0.7 0
	// pruned 8 of 16, groups 4, violations 0
}
