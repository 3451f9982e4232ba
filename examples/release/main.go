// Command release is a release pipeline written with onnxpost's library:
// a TIES merge of the zoo MLP's fine-tunes, 2:4 pruning, int8 weights, and
// a gated evaluation against the base model before anything is written.
// recipe.yaml beside it is the same chain as a recipe (onnxpost run); both
// write the same model and report bytes.
//
//	go run ./examples/release -zoo models/zoo/mlp -data models/data/digits_union_test.npz -out out/release
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/onnxpost/onnxpost/compress/sparsity"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/merge"
	"github.com/onnxpost/onnxpost/quant"
	"github.com/onnxpost/onnxpost/release"
)

func main() {
	zoo := flag.String("zoo", "models/zoo/mlp", "folder of base.onnx and the fine-tunes")
	data := flag.String("data", "models/data/digits_union_test.npz", "evaluation data")
	out := flag.String("out", "out/release", "output folder (release.onnx, release.json, release.md)")
	gate := flag.String("gate", "accuracy_drop<=0.05", "accuracy gate against the base model")
	flag.Parse()
	rep, err := run(context.Background(), *zoo, *data, *out, *gate)
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s: accuracy %.4f (base %.4f), %d bytes\n", rep.Written,
		rep.Result.Metrics["accuracy"], rep.Result.Reference.Metrics["accuracy"], rep.Result.Bytes)
}

// run is the pipeline. Paths are made absolute, as a recipe resolves them,
// so the provenance it records matches the recipe's.
func run(ctx context.Context, zoo, data, out, gateExpr string) (*release.Report, error) {
	zoo, _ = filepath.Abs(zoo)
	base := filepath.Join(zoo, "base.onnx")
	tunes := []string{filepath.Join(zoo, "ft_low.onnx"), filepath.Join(zoo, "ft_high.onnx"), filepath.Join(zoo, "ft_shift.onnx")}

	// 1. TIES merge of the fine-tunes' deltas from the base (density 0.5)
	in, sources, err := merge.LoadInputs(base, tunes)
	if err != nil {
		return nil, err
	}
	mg, err := merge.New(ctx, in, merge.Options{Method: merge.TIES, Density: 0.5}, nil)
	if err != nil {
		return nil, err
	}
	model, err := mg.Merged(ctx, sources) // with the merge's provenance
	if err != nil {
		return nil, err
	}

	// 2. 2:4 magnitude pruning (in place)
	if _, err := sparsity.PruneModel(ctx, model, sparsity.Options{Method: sparsity.Magnitude, Pattern: sparsity.Pattern{N: 2, M: 4}}, sparsity.Selection{}, nil); err != nil {
		return nil, err
	}

	// 3. int8 weights (the zero values: per channel, symmetric, as the CLI)
	model, _, err = quant.Quantize(ctx, model, quant.Options{Weights: "int8"})
	if err != nil {
		return nil, err
	}

	// 4. evaluate against the base, gate, write only if it passes
	ds, err := evalharness.LoadDataset(data)
	if err != nil {
		return nil, err
	}
	gate, err := evalharness.ParseGate(gateExpr)
	if err != nil {
		return nil, err
	}
	inputs, err := release.HashInputs(append([]string{base}, tunes...)...)
	if err != nil {
		return nil, err
	}
	return release.Commit(ctx, model, in.Base, release.Options{
		Output:     filepath.Join(out, "release.onnx"),
		Report:     filepath.Join(out, "release.json"),
		Data:       ds,
		DataName:   data,
		Gate:       gate,
		Provenance: &release.Provenance{Version: release.Version, Inputs: inputs},
	})
}
