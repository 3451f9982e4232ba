package main

import (
	"context"
	"fmt"
	"math"
	"regexp"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/merge"
	"github.com/onnxpost/onnxpost/onnxio"
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
	greedy := c.Bool("greedy")
	if greedy && c.String("data") == "" {
		return usagef("--greedy needs --data (a held-out set to score candidate soups)")
	}
	if c.String("gate") != "" && c.String("data") == "" {
		return usagef("--gate needs --data to evaluate the candidate")
	}
	metric := c.String("metric")
	if metric != "accuracy" && metric != "top5" {
		return usagef("--metric must be accuracy or top5, got %q", metric)
	}
	opt := merge.Options{Method: merge.Linear}
	for _, f := range []struct {
		flag string
		dst  **regexp.Regexp
	}{{"include", &opt.Include}, {"exclude", &opt.Exclude}} {
		if c.IsSet(f.flag) {
			r, err := regexp.Compile(c.String(f.flag))
			if err != nil {
				return usagef("--%s: %v", f.flag, err)
			}
			*f.dst = r
		}
	}
	models, err := loadModels(paths)
	if err != nil {
		return err
	}
	if err := mergeReady(models, paths); err != nil {
		return err
	}
	srcs, err := merge.Sources("model", paths, models)
	if err != nil {
		return err
	}
	ctx := c.Context
	report := map[string]any{"method": "uniform-soup", "inputs": srcs}
	if !greedy {
		bar := newProgressBar(c.Bool("progress"))
		mg, err := merge.New(ctx, merge.Inputs{Models: models, Labels: paths}, opt, nil)
		if err != nil {
			return err
		}
		defer mg.Close()
		out := mg.Output()
		if err := merge.SetProvenance(out, &opt, srcs); err != nil {
			return err
		}
		out.SetMetadata(merge.MetaMethod, "uniform-soup")
		report["merged_tensors"] = len(mg.Plan())
		stop := bar.watch("soup", mg.Done, mg.Elements())
		if c.String("data") == "" {
			return saveStreaming(c, mg, out, report, func(*onnxio.Model) error { return nil }, stop)
		}
		cand, err := mg.Model(ctx, out)
		stop()
		if err != nil {
			return err
		}
		if err := evalInputs(c, paths, models, report); err != nil {
			return err
		}
		return finish(c, cand, models[0], report)
	}

	so, err := sessionOptions(c)
	if err != nil {
		return err
	}
	ds, err := loadDataset(c, "data")
	if err != nil {
		return err
	}
	if ds.Labels == nil {
		return usagef("--greedy scores %s, which needs labels in %s", metric, c.String("data"))
	}
	scorer := merge.ScorerFunc(func(ctx context.Context, cand *onnxio.Model) (float64, error) {
		eo := evalharness.EvalOptions{Metrics: []string{metric}, Batch: c.Int("batch"), Outputs: evalharness.ParseOutputNames(c.String("output-name"))}
		r, err := evalharness.EvaluateModels(ctx, cand, nil, ds, so, eo)
		if err != nil {
			return 0, err
		}
		v := r.Metrics[metric]
		if math.IsNaN(v) {
			return math.Inf(-1), nil // never the best: a NaN soup is not kept
		}
		return v, nil
	})
	soup, res, err := merge.GreedySoupModels(ctx, models, scorer, opt)
	if err != nil {
		return fmt.Errorf("greedy soup: %w", err)
	}
	var ing []string
	var ingSrc []merge.Source
	for _, k := range res.Ingredients {
		ing = append(ing, paths[k])
		ingSrc = append(ingSrc, srcs[k])
	}
	fmt.Fprintf(c.App.ErrWriter, "greedy soup of %d models: %v (%s %.6g)\n", len(ing), ing, metric, res.Score)
	report["method"] = "greedy-soup"
	report["soup"] = map[string]any{
		"metric": metric, "ingredients": ing, "score": res.Score,
		"individual": res.Individual, "steps": res.Steps,
	}
	opt.Weights = make([]float64, len(ing))
	for i := range opt.Weights {
		opt.Weights[i] = 1
	}
	if err := merge.SetProvenance(soup, &opt, ingSrc); err != nil {
		return err
	}
	soup.SetMetadata(merge.MetaMethod, "greedy-soup")
	return finish(c, soup, models[res.Ingredients[0]], report)
}
