package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/pipeline"
)

func init() {
	register(&cli.Command{
		Name:      "fisher",
		Usage:     "compute a model's diagonal Fisher information with ONNX Runtime",
		ArgsUsage: "MODEL",
		Description: `Computes F = mean over the examples x of DATASET of
Σ_y p(y|x)·(∂ log p(y|x)/∂θ)², elementwise for every float parameter θ, with
the model's own probabilities p = softmax(logits) (docs/ARCHITECTURE.md §5.2).
Gradients come from a gradient graph of MODEL (reverse-mode differentiation
written in ONNX ops) run by ONNX Runtime; per-example gradients are squared
before they are averaged. --samples K replaces the sum over classes by the
mean over K labels drawn from p(y|x) (seeded by --seed).

Language models (logits [batch, sequence, vocabulary]): every next-token
position that perplexity counts (attention_mask 1 at t and t+1, labels[t+1]
not -100) is one example x, its context the window up to t; one backward
pass per position and label (mode tokens). --max-examples then bounds the
windows; use --samples (e.g. 1) with large vocabularies.

  onnxpost fisher --data calib.npz --max-examples 32 --samples 1 -o lm.fisher.onnx lm.onnx

The output is an ONNX file with no nodes whose initializers are named and
shaped like MODEL's parameters: what merge --method fisher --fisher reads.

  onnxpost fisher --data val.npz -o a.fisher.onnx a.onnx
  onnxpost merge --method fisher --fisher a.fisher.onnx,b.fisher.onnx -o m.onnx a.onnx b.onnx`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "o", Aliases: []string{"output"}, Usage: "write the Fisher file to `FISHER.onnx` (required)"},
			&cli.StringFlag{Name: "data", Usage: "dataset `D` (.npz or ONNX test-data folder) whose examples the Fisher averages over (required)"},
			&cli.IntFlag{Name: "samples", Usage: "draw `K` labels from p(y|x) per example instead of summing over every class (0: exact)"},
			&cli.Int64Flag{Name: "seed", Usage: "random seed (`N`) of the label sampling"},
			&cli.IntFlag{Name: "max-examples", Usage: "use at most `N` examples (0: all)"},
			&cli.IntFlag{Name: "batch", Value: 16, Usage: "examples per ONNX Runtime run (`N`)"},
			&cli.StringFlag{Name: "logits", Aliases: []string{"output-name"}, Usage: "model output `NAME` holding the logits (default: the first floating-point output)"},
			&cli.StringFlag{Name: "mode", Usage: "gradient graph `MODE`: rows (per-example gradients of a batch, replicated per class), copies (one example per run, one backward pass per class in one graph) or loop (one run per example and class); default rows when the graph allows it, else copies for small graphs and loop for large ones; tokens for [batch, sequence, vocabulary] logits (always)"},
			&cli.BoolFlag{Name: "json", Usage: "print the machine-readable result on stdout"},
			&cli.StringFlag{Name: "report", Usage: "write the JSON result to `FILE.json`"},
			&cli.StringFlag{Name: "ep", Value: "cpu", Usage: "ONNX Runtime execution provider: cpu or cuda"},
			threadsFlag(),
			&cli.StringFlag{Name: "ort-lib", Usage: ortLibUsage},
		},
		Action: fisherAction,
	})
}

func fisherAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("fisher takes exactly one MODEL, got %d arguments", c.NArg())
	}
	out := c.String("o")
	if out == "" {
		return usagef("-o FISHER.onnx is required")
	}
	if c.String("data") == "" {
		return usagef("--data DATASET is required")
	}
	so, err := sessionOptions(c)
	if err != nil {
		return err
	}
	opt, err := pipeline.FisherOptionsFromFlags(c, so)
	if err != nil {
		return err
	}
	path := c.Args().First()
	m, err := onnxio.Load(path)
	if err != nil {
		return fmt.Errorf("loading %s: %w", path, err)
	}
	ds, err := loadDatasetFor(c.String("data"), valueNames(m.Inputs()))
	if err != nil {
		return err
	}
	fm, res, err := pipeline.Fisher(c.Context, m, path, ds, opt, os.Stderr)
	if err != nil {
		return err
	}
	rep, err := prepareReport(c.String("report"))
	if err != nil {
		return err
	}
	defer rep.Abort()
	if err := fm.Save(out, &onnxio.SaveOptions{Context: c.Context}); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	res["output"], res["data"] = out, c.String("data")
	doc, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	doc = append(doc, '\n')
	if err := rep.CommitJSON(doc); err != nil {
		return err
	}
	if c.Bool("json") {
		os.Stdout.Write(doc)
	} else {
		fmt.Fprintf(os.Stderr, "fisher: %d tensors (%v values) over %v examples in %.2fs (%.0f examples/s, mode %v) -> %s\n",
			res["tensors"], res["params"], res["samples"], res["seconds"], res["examples_per_s"], res["mode"], out)
	}
	return nil
}
