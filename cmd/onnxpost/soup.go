package main

import (
	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/pipeline"
)

func init() {
	register(&cli.Command{
		Name:      "soup",
		Usage:     "average fine-tuned models: uniform soup, or greedy soup scored on held-out data",
		ArgsUsage: "MODEL...",
		Description: `Uniform soup: the plain average of the models' weights (linear merge with
equal weights).

Greedy soup (--greedy, Wortsman et al. 2022): score each model alone on --data
(accuracy by default), sort by score, start from the best, and add each next
model if the average of the soup plus that model scores strictly higher.
Needs --data (a held-out set with labels). With --gate the final soup must
also pass the gate to be written.

  onnxpost soup a.onnx b.onnx c.onnx -o soup.onnx
  onnxpost soup --greedy --data val.npz -o soup.onnx a.onnx b.onnx c.onnx`,
		Flags: append(commonFlags(),
			&cli.BoolFlag{Name: "greedy", Usage: "greedy soup (needs --data)"},
			&cli.StringFlag{Name: "metric", Value: "accuracy", Usage: "greedy soup score `METRIC`: accuracy or top5"},
			&cli.StringFlag{Name: "include", Usage: "average only tensors whose name matches `REGEX`"},
			&cli.StringFlag{Name: "exclude", Usage: "do not average tensors whose name matches `REGEX`"},
			&cli.BoolFlag{Name: "progress", Usage: "show a progress bar on stderr even when it is not a terminal"},
		),
		Action: soupAction,
	})
}

func soupAction(c *cli.Context) error {
	paths := c.Args().Slice()
	if len(paths) < 2 {
		return usagef("soup needs at least two models, got %d", len(paths))
	}
	if c.String("o") == "" {
		return usagef("-o OUT.onnx is required")
	}
	if c.String("gate") != "" && c.String("data") == "" {
		return usagef("--gate needs --data to evaluate the candidate")
	}
	opt, err := pipeline.SoupOptionsFromFlags(c, c.String("data"))
	if err != nil {
		return err
	}
	if opt.Greedy {
		if opt.Session, err = sessionOptions(c); err != nil {
			return err
		}
		if opt.Data, err = loadDataset(c, "data"); err != nil {
			return err
		}
		opt.Eval = evalharness.EvalOptions{Batch: c.Int("batch"), Outputs: evalharness.ParseOutputNames(c.String("output-name"))}
	}
	res, err := pipeline.Soup(c.Context, paths, opt, c.App.ErrWriter)
	if err != nil {
		return err
	}
	if res.Merger == nil {
		return finish(c, res.Model, res.Ref, res.Report)
	}
	mg := res.Merger
	defer mg.Close()
	bar := newProgressBar(c.Bool("progress"))
	stop := bar.watch("soup", mg.Done, mg.Elements())
	if c.String("data") == "" {
		return saveStreaming(c, mg, res.Model, res.Report, func(*onnxio.Model) error { return nil }, stop)
	}
	cand, err := mg.Model(c.Context, res.Model)
	stop()
	if err != nil {
		return err
	}
	if err := evalInputs(c, paths, res.Models, res.Report); err != nil {
		return err
	}
	return finish(c, cand, res.Ref, res.Report)
}
