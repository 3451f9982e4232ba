package onnxpost_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/onnxpost/onnxpost/compress/sparsity"
	"github.com/onnxpost/onnxpost/merge"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/quant"
	"github.com/onnxpost/onnxpost/release"
)

// linear returns a one-layer model y = x·W with W [4,2] holding w.
func linear(w ...float32) *onnxio.Model {
	m := onnxio.New("tiny", 17)
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "N"}, {Value: 4}}})
	t, _ := onnxio.FromFloat32("W", onnxio.Float, []int64{4, 2}, w)
	_ = m.SetInitializer(t)
	_ = m.InsertNodes(onnxio.Node{Name: "fc", OpType: "MatMul", Inputs: []string{"x", "W"}, Outputs: []string{"y"}})
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "N"}, {Value: 2}}})
	return m
}

// A release pipeline: TIES merge of two fine-tunes, 2:4 pruning, int8
// weights, and the gate-and-commit step, which records provenance and
// writes the model and its report only when the gate passes (here there is
// no evaluation data: the model is checked to load in ONNX Runtime when it
// is installed). examples/release does the same on the zoo with a gated
// evaluation against the base model.
func Example() {
	ctx := context.Background()
	base := linear(0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8)
	ftA := linear(0.3, -0.2, 0.3, 0.1, -0.5, 0.9, 0.7, -0.8)
	ftB := linear(0.1, -0.6, 0.2, 0.4, -0.5, 0.6, 1.1, -0.8)

	mg, err := merge.New(ctx, merge.Inputs{Base: base, Models: []*onnxio.Model{ftA, ftB}}, merge.Options{Method: merge.TIES, Density: 1}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	model, err := mg.Model(ctx, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	pruned, err := sparsity.PruneModel(ctx, model, sparsity.Options{Method: sparsity.Magnitude, Pattern: sparsity.Pattern{N: 2, M: 4}}, sparsity.Selection{}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	model, _, err = quant.Quantize(ctx, model, quant.Options{Weights: "int8"})
	if err != nil {
		fmt.Println(err)
		return
	}

	dir, _ := os.MkdirTemp("", "onnxpost-example-")
	defer os.RemoveAll(dir)
	rep, err := release.Commit(ctx, model, base, release.Options{
		Output:     filepath.Join(dir, "release.onnx"),
		Report:     filepath.Join(dir, "release.json"),
		Provenance: &release.Provenance{Version: release.Version},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("pruned:", pruned.Zeros, "of", pruned.Params, "weights")
	fmt.Println("written:", filepath.Base(rep.Written), "passed:", rep.Passed, "params:", rep.Result.Params)
	fmt.Println("sparsity:", model.Metadata()["onnxpost.sparsity"])
	// Output:
	// pruned: 4 of 8 weights
	// written: release.onnx passed: true params: 8
	// sparsity: magnitude 2:4, 4 of 8 weights zero
}
