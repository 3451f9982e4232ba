package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/pipeline"
)

func init() {
	register(&cli.Command{
		Name:      "search",
		Usage:     "EvoPress-style search of per-layer compression levels under an exact budget",
		ArgsUsage: "MODEL",
		Description: `Searches one compression level per layer so that the global budget is met
exactly and the mean KL divergence between the dense model's and the
candidate's outputs on calibration data is minimal (EvoPress: level-switch
mutation, (1+λ) selection over stages of growing random calibration
subsets, the parent rejoining only at the last stage).

Every layer gets a ladder of levels whose adjacent steps change the budget by
the same amount inside a switch group, so moving one layer up and another of
its group down keeps the budget exact. Candidates run in one ONNX Runtime
session with the searched weights fed as inputs. The report compares the
searched allocation with the uniform one and a per-layer-error allocation at
the same budget; the search starts from the better of the two (--start best,
the default) or from uniform (--start uniform, EvoPress's own start).

  onnxpost search model.onnx --space sparsity --target 0.7 \
      --calib calib.npz --data test.npz -o pruned.onnx --report search.json

Spaces (one per run, or sparsity and bits together):
  sparsity  --target = fraction of zeros over the searched MatMul/Gemm/Conv
            weights; one group, equal steps of zeros; --method magnitude,
            wanda or sparsegpt (the last two capture XᵀX on --calib, or on
            its first --calib-samples samples). Output: the pruned weights.
  rank      --target = fraction of the searched MatMul/Gemm parameters kept
            (rank r of an m×n weight keeps r·(m+n)); layers grouped by m+n,
            ranks in [1, break-even]. Output: every layer rewritten into two
            MatMuls by the low-rank package at its searched rank.
  bits      --target = mean bits per weight of the 2-D MatMul weights, block-
            wise (--block) RTN or GPTQ (--method rtn|gptq) from the quant
            package, ladder --bits (default 2,4 up to 4 bits, else 4,8: the
            widths quant supports with equal steps); layers grouped by size;
            the uniform baseline gives each group the target's mean as
            closely as whole layers allow. Output: the dequantized weights in
            float32 (quant's rewrite takes one width per model, so the mixed
            allocation is not packed; the report lists each layer's width).
  drop      --target = number of residual sub-blocks dropped (an integer in
            [1, blocks)). A block is an Add whose one input is an ancestor of
            the other through at least one MatMul/Gemm/Conv weight and whose
            branch ends in a linear layer (MatMul[+bias], Gemm, Conv); the
            search feeds zeros for that layer's weight and bias. Baselines:
            last-k (the last N blocks; reported as "uniform") and block-score
            (the N blocks whose lone removal costs least). Output: the blocks
            really removed (uses rewired to the skip input, dead nodes and
            initializers deleted).
  sparsity,bits (or bits,sparsity)
            both on the 2-D MatMul weights: --target = fraction of zeros,
            --target-bits = mean bits per weight (both required). Every
            weight has a sparsity entry and a bits entry in separate switch
            groups (bits grouped by size), so both budgets are exact in every
            candidate; the weight evaluated is the bits level of the pruned
            weight. --method SPARSITY,BITS (e.g. magnitude,rtn, the default;
            one name alone is the sparsity method). Baselines: uniform in
            both, and per-layer-error run in each space. Output: each layer
            pruned to its zeros, then packed into MatMulNBits at its width
            (asymmetric: 0 is on the grid, so the pruned zeros stay zero with
            rtn; gptq's error feedback does not keep them). The report lists
            "<weight> (sparsity)" and "<weight> (bits)" entries.

  onnxpost search model.onnx --space sparsity,bits --target 0.5 \
      --target-bits 3 --calib calib.npz --data test.npz -o out.onnx

Fitness (--fitness): kl (mean KL(dense‖candidate) of softmax outputs, per
token position for [N, T, V] outputs, masked by attention_mask), mse, or
cosine (mean 1 − cosine of each sample's flattened outputs). By default kl
for [N, C] and [N, T, V] outputs, cosine for any other shape. The output
compared is the first floating-point output, or those --output-name names
(the fitness is then the mean of their losses).

Levels are cached on disk (--cache-dir) under a content address made of the
model's hash, the space and method, the calibration data's hash (for
data-aware methods), the layer and the level, so later runs reuse them.`,
		Flags: append(append(commonFlags(), searchParamFlags()...),
			&cli.StringFlag{Name: "calib", Usage: "calibration `DATASET` for the fitness (required)"},
			&cli.StringFlag{Name: "cache-dir", Value: defaultCacheDir(), Usage: "level database cache `DIR` (\"\" for none)"},
			&cli.StringFlag{Name: "plots", Usage: "write PNG plots (fitness, levels) into `DIR`"},
			&cli.StringFlag{Name: "baselines", Usage: "also write the uniform and per-layer-error models as `DIR`/uniform.onnx and DIR/per-layer-error.onnx"},
		),
		Action: searchAction,
	})
}

// searchParamFlags derives the search flags from the declared parameters;
// --target is required.
func searchParamFlags() []cli.Flag {
	flags := paramFlags(pipeline.SearchCommand)
	for _, f := range flags {
		if t, ok := f.(*cli.Float64Flag); ok && t.Name == "target" {
			t.Required = true
		}
	}
	return flags
}

func defaultCacheDir() string { return pipeline.DefaultCacheDir() }

func searchAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("search takes one MODEL argument")
	}
	if c.String("o") == "" {
		return usagef("-o OUT.onnx is required")
	}
	if c.String("calib") == "" {
		return usagef("search needs --calib DATASET (the fitness runs on it)")
	}
	_, args, err := checkParams(c, pipeline.SearchCommand)
	if err != nil {
		return err
	}
	so, err := sessionOptions(c)
	if err != nil {
		return err
	}
	opt, err := pipeline.SearchOptionsFromFlags(args, c, so)
	if err != nil {
		return err
	}
	m, err := onnxio.Load(c.Args().First())
	if err != nil {
		return err
	}
	calib, err := loadDataset(c, "calib")
	if err != nil {
		return err
	}
	opt.Log = func(format string, args ...any) { fmt.Fprintf(os.Stderr, "search: "+format+"\n", args...) }
	gens := c.Int("generations")
	opt.Search.Progress = func(gen int, _ []int, f float64) {
		if isTerminal(os.Stderr) {
			fmt.Fprintf(os.Stderr, "\rsearch: generation %d/%d  loss %.6g ", gen+1, gens, f)
			if gen+1 == gens {
				fmt.Fprintln(os.Stderr)
			}
		}
	}
	out, rep, err := pipeline.Search(c.Context, m, calib, opt, c.Int64("seed"))
	if err != nil {
		return err
	}
	if dir := c.String("baselines"); dir != "" {
		if err := pipeline.SaveSearchBaselines(dir, rep, os.Stderr); err != nil {
			return err
		}
	}
	if dir := c.String("plots"); dir != "" {
		if err := pipeline.PlotSearch(dir, rep); err != nil {
			return err
		}
	}
	fmt.Fprint(os.Stderr, pipeline.SearchMarkdown(rep))
	if err := requireChange(c, out, m, true, []string{"the searched configuration changes no layer"}); err != nil {
		return err
	}
	return finish(c, out, m, map[string]any{"search": rep})
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
