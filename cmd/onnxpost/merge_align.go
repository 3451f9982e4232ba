package main

import (
	"github.com/urfave/cli/v2"
)

// alignHelp documents --align in merge's help.
const alignHelp = `
--align weights|activations permutes the hidden units of every model onto the
first model (or --base) before merging, for models trained from different
initializations (Git Re-Basin). The units of each hidden MatMul/Gemm layer
(with its bias) and the channels of each hidden Conv (with its bias and
BatchNormalization; a Flatten into a Gemm moves each channel's H·W rows) form
a group; weights matching finds one permutation per group by coordinate
descent over the groups (order drawn from --seed), each step a linear
assignment on the product of the two models' weights; activations matching
solves one assignment per group on the correlation of the units' outputs over
--calib DATASET. The permuted models compute exactly the same function. Layers
added together by residual connections share one permutation (units added to
the model's input stay in place). In transformer blocks the residual stream
(embedding, LayerNorm parameters, every projection's input and output), each
block's MLP units and, within each attention head, the query/key and
value/output dimensions are aligned, and the heads reordered (projections
outside the recognized Reshape → Transpose → MatMul pattern are left in place
and listed on stderr); then the dimensions of each head are turned by the
orthogonal map that best matches the first model's weights (queries with keys,
values with the output projection's rows: the same function up to float
rounding, since the attention products are unchanged by any such turn).
Grouped convolutions, reshapes and concatenations of
hidden units are refused by name. The report lists, per model and group, the
fraction of units moved. Precomputed --fisher files cannot be combined with
--align (they are not permuted); --fisher-data computes the Fisher of the
aligned models.

  onnxpost merge --align weights --method linear -o mid.onnx seed_a.onnx seed_b.onnx
`

// alignFlags are merge's re-basin flags.
func alignFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "align", Usage: "permute every model's hidden units onto the first model (or --base) before merging: `weights` or activations (needs --calib)"},
		&cli.StringFlag{Name: "calib", Usage: "with --align activations: the calibration `DATASET` the units' outputs are compared on"},
	}
}
