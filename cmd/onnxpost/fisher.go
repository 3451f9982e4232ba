package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/fisher"
	"github.com/onnxpost/onnxpost/onnxio"
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
	if c.Int("samples") < 0 || c.Int("max-examples") < 0 || c.Int("batch") < 1 {
		return usagef("--samples and --max-examples must be >= 0 and --batch >= 1")
	}
	mode := c.String("mode")
	if mode != "" && mode != fisher.ModeRows && mode != fisher.ModeCopies && mode != fisher.ModeLoop && mode != fisher.ModeTokens {
		return usagef("--mode must be %s, %s, %s or %s, got %q", fisher.ModeRows, fisher.ModeCopies, fisher.ModeLoop, fisher.ModeTokens, mode)
	}
	so, err := sessionOptions(c)
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
	opt := fisher.Options{
		Output: c.String("logits"), Samples: c.Int("samples"), Seed: c.Int64("seed"),
		MaxExamples: c.Int("max-examples"), Batch: c.Int("batch"), Mode: mode, Session: so,
	}
	t0 := time.Now()
	fm, r, err := fisher.FromData(c.Context, m, path, ds, opt)
	if err != nil {
		return err
	}
	secs := time.Since(t0).Seconds()
	if r.Branch != "" {
		fmt.Fprintf(os.Stderr, "fisher: If-merged decoder: the Fisher of its %s (the branch the data takes)\n", r.Branch)
	}
	fm.SetMetadata("onnxpost.version", version)
	rep, err := prepareReport(c.String("report"))
	if err != nil {
		return err
	}
	defer rep.Abort()
	if err := fm.Save(out, &onnxio.SaveOptions{Context: c.Context}); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	var elems int64
	for _, v := range r.Fisher {
		elems += int64(len(v))
	}
	res := map[string]any{
		"command": "fisher", "model": path, "output": out, "data": c.String("data"),
		"samples": r.Examples, "classes": r.Classes, "label_samples": opt.Samples,
		"params": elems, "tensors": len(r.Params), "mode": r.Mode, "seconds": secs,
		"examples_per_s": float64(r.Examples) / secs,
	}
	if r.Fallback != "" {
		res["fallback"] = r.Fallback
	}
	if r.Branch != "" {
		res["branch"] = r.Branch
	}
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
		fmt.Fprintf(os.Stderr, "fisher: %d tensors (%d values) over %d examples in %.2fs (%.0f examples/s, mode %s) -> %s\n",
			len(r.Params), elems, r.Examples, secs, float64(r.Examples)/secs, r.Mode, out)
	}
	return nil
}
