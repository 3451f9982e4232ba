package pipeline

import (
	"context"
	"fmt"
	"io"
	"math"
	"regexp"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/merge"
	"github.com/onnxpost/onnxpost/onnxio"
)

// SoupOptions are the soup command's options.
type SoupOptions struct {
	// Greedy selects the greedy soup (Wortsman et al. 2022), scored on
	// Data; otherwise the uniform soup.
	Greedy bool
	// Metric is the greedy soup's score: accuracy or top5.
	Metric string
	// Include and Exclude select the tensors averaged (nil: all).
	Include, Exclude *regexp.Regexp
	// Data scores the greedy soup's candidates (it needs labels).
	Data *evalharness.Dataset
	// Session and Eval evaluate the candidates (Eval's Batch and Outputs).
	Session evalharness.SessionOptions
	Eval    evalharness.EvalOptions
}

// SoupOptionsFromFlags returns the options of the soup command's flags
// greedy, metric, include and exclude; data names the flag data's value
// (greedy needs it). Bad values are usage errors.
func SoupOptionsFromFlags(f Flags, data string) (SoupOptions, error) {
	opt := SoupOptions{Greedy: f.Bool("greedy"), Metric: f.String("metric")}
	if opt.Greedy && data == "" {
		return opt, Usagef("greedy needs data (a held-out set to score candidate soups)")
	}
	if opt.Metric != "accuracy" && opt.Metric != "top5" {
		return opt, Usagef("metric must be accuracy or top5, got %q", opt.Metric)
	}
	for _, r := range []struct {
		flag string
		dst  **regexp.Regexp
	}{{"include", &opt.Include}, {"exclude", &opt.Exclude}} {
		if f.IsSet(r.flag) {
			re, err := regexp.Compile(f.String(r.flag))
			if err != nil {
				return opt, Usagef("%s: %v", r.flag, err)
			}
			*r.dst = re
		}
	}
	return opt, nil
}

// SoupResult is a soup before it is committed.
type SoupResult struct {
	// Merger computes the uniform soup (nil for the greedy soup): its
	// output is Model, whose tensors Merger.Model or Merger.Save fill.
	Merger *merge.Merger
	// Model is the greedy soup, or the uniform soup's output (with the
	// merge's provenance) still to be filled by Merger.
	Model *onnxio.Model
	// Ref is the model the soup is compared with: the first model, or
	// the greedy soup's first ingredient.
	Ref *onnxio.Model
	// Models are the loaded inputs.
	Models []*onnxio.Model
	// Report holds the command's report keys ("method", "inputs",
	// "merged_tensors" or "soup").
	Report map[string]any
}

// Soup runs the soup command on the model files at paths (at least two):
// the uniform soup's merger, or the greedy soup scored on opt.Data, with
// the merge's provenance in the output's metadata. The greedy soup's
// ingredients are named on log (nil: nowhere). A uniform soup's Merger
// must be closed by the caller.
func Soup(ctx context.Context, paths []string, opt SoupOptions, log io.Writer) (*SoupResult, error) {
	if len(paths) < 2 {
		return nil, Usagef("soup needs at least two models, got %d", len(paths))
	}
	models, err := merge.LoadModels(paths)
	if err != nil {
		return nil, err
	}
	if err := merge.Prepare(models, paths); err != nil {
		return nil, err
	}
	srcs, err := merge.Sources("model", paths, models)
	if err != nil {
		return nil, err
	}
	mo := merge.Options{Method: merge.Linear, Include: opt.Include, Exclude: opt.Exclude}
	report := map[string]any{"method": "uniform-soup", "inputs": srcs}
	if !opt.Greedy {
		mg, err := merge.New(ctx, merge.Inputs{Models: models, Labels: paths}, mo, nil)
		if err != nil {
			return nil, err
		}
		out := mg.Output()
		if err := merge.SetProvenance(out, &mo, srcs); err != nil {
			mg.Close()
			return nil, err
		}
		out.SetMetadata(merge.MetaMethod, "uniform-soup")
		report["merged_tensors"] = len(mg.Plan())
		return &SoupResult{Merger: mg, Model: out, Ref: models[0], Models: models, Report: report}, nil
	}
	ds := opt.Data
	if ds == nil || ds.Labels == nil {
		return nil, Usagef("greedy scores %s, which needs labels in the data", opt.Metric)
	}
	scorer := merge.ScorerFunc(func(ctx context.Context, cand *onnxio.Model) (float64, error) {
		eo := evalharness.EvalOptions{Metrics: []string{opt.Metric}, Batch: opt.Eval.Batch, Outputs: opt.Eval.Outputs}
		r, err := evalharness.EvaluateModels(ctx, cand, nil, ds, opt.Session, eo)
		if err != nil {
			return 0, err
		}
		v := r.Metrics[opt.Metric]
		if math.IsNaN(v) {
			return math.Inf(-1), nil // never the best: a NaN soup is not kept
		}
		return v, nil
	})
	soup, res, err := merge.GreedySoupModels(ctx, models, scorer, mo)
	if err != nil {
		return nil, fmt.Errorf("greedy soup: %w", err)
	}
	var ing []string
	var ingSrc []merge.Source
	for _, k := range res.Ingredients {
		ing = append(ing, paths[k])
		ingSrc = append(ingSrc, srcs[k])
	}
	if log != nil {
		fmt.Fprintf(log, "greedy soup of %d models: %v (%s %.6g)\n", len(ing), ing, opt.Metric, res.Score)
	}
	report["method"] = "greedy-soup"
	report["soup"] = map[string]any{
		"metric": opt.Metric, "ingredients": ing, "score": res.Score,
		"individual": res.Individual, "steps": res.Steps,
	}
	mo.Weights = make([]float64, len(ing))
	for i := range mo.Weights {
		mo.Weights[i] = 1
	}
	if err := merge.SetProvenance(soup, &mo, ingSrc); err != nil {
		return nil, err
	}
	soup.SetMetadata(merge.MetaMethod, "greedy-soup")
	return &SoupResult{Model: soup, Ref: models[res.Ingredients[0]], Models: models, Report: report}, nil
}
