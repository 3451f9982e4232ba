package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/merge"
	"github.com/onnxpost/onnxpost/merge/rebasin"
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

// checkAlignFlags validates --align and --calib; fisherFiles tells whether
// precomputed Fisher files are given (flag or config).
func checkAlignFlags(c *cli.Context, fisherFiles bool) error {
	if c.String("align") == "" && c.IsSet("calib") {
		return usagef("--calib is only used by --align activations")
	}
	if c.String("align") != "" && fisherFiles {
		// The files hold the Fisher of the models as given, not of their
		// permuted copies; --fisher-data computes it after the alignment.
		return usagef("--align cannot use precomputed --fisher files (they are not permuted); use --fisher-data")
	}
	switch a := c.String("align"); a {
	case "", "weights":
		if a != "" && c.IsSet("calib") {
			return usagef("--calib is only used by --align activations (weights matching reads no data)")
		}
	case "activations":
		if c.String("calib") == "" {
			return usagef("--align activations needs --calib DATASET")
		}
	default:
		return usagef("--align must be weights or activations, got %q", a)
	}
	return nil
}

// alignModels permutes every model of in onto the reference (the base, or
// the first model) and returns the report entry.
func alignModels(c *cli.Context, in *merge.Inputs, labels []string) ([]map[string]any, error) {
	mode := c.String("align")
	if mode == "" {
		return nil, nil
	}
	ref, first := in.Base, 0
	if ref == nil {
		ref, first = in.Models[0], 1
	}
	var rows []map[string]any
	for i := first; i < len(in.Models); i++ {
		var (
			res *rebasin.Result
			err error
		)
		switch mode {
		case "weights":
			res, err = rebasin.WeightMatching(c.Context, ref, in.Models[i], rebasin.Options{Seed: c.Int64("seed")})
		case "activations":
			so, serr := sessionOptions(c)
			if serr != nil {
				return nil, serr
			}
			ds, derr := loadDatasetFor(c.String("calib"), valueNames(ref.Inputs()))
			if derr != nil {
				return nil, derr
			}
			res, err = rebasin.ActivationMatching(c.Context, ref, in.Models[i], ds, rebasin.ActivationOptions{Session: so})
		}
		if err != nil {
			return nil, fmt.Errorf("--align %s: %s: %w", mode, labels[i], err)
		}
		out, err := rebasin.Permute(in.Models[i], res.Groups, res.Perms)
		if err != nil {
			return nil, fmt.Errorf("--align %s: %s: %w", mode, labels[i], err)
		}
		out, heads, err := rebasin.RotateHeads(ref, out, res.Groups)
		if err != nil {
			return nil, fmt.Errorf("--align %s: %s: %w", mode, labels[i], err)
		}
		in.Models[i] = out
		if i == first {
			if _, held, err := rebasin.Analyze(ref); err == nil {
				for _, h := range held {
					fmt.Fprintf(os.Stderr, "merge: --align: %s stays in place: %s\n", h.Layer, h.Reason)
				}
			}
		}
		var groups []map[string]any
		var parts []string
		for g, mv := range res.Moved() {
			groups = append(groups, map[string]any{"group": res.Groups[g].Name, "units": res.Groups[g].Size, "moved": mv})
			parts = append(parts, fmt.Sprintf("%s %.0f%%", res.Groups[g].Name, 100*mv))
		}
		if len(groups) == 0 {
			fmt.Fprintf(os.Stderr, "merge: --align: %s has no hidden units to permute\n", labels[i])
		} else {
			how := mode + " matching"
			if mode == "weights" {
				how += fmt.Sprintf(", %d passes", res.Passes)
			}
			turned := ""
			if heads > 0 {
				turned = fmt.Sprintf("; %d attention heads turned", heads)
			}
			fmt.Fprintf(os.Stderr, "merge: aligned %s (%s): moved %s%s\n", labels[i], how, strings.Join(parts, ", "), turned)
		}
		rows = append(rows, map[string]any{"model": labels[i], "method": mode, "passes": res.Passes, "groups": groups, "heads_turned": heads})
	}
	return rows, nil
}
