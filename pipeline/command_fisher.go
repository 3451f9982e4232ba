package pipeline

import (
	"context"
	"io"
	"time"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/fisher"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/release"
)

// FisherOptionsFromFlags returns the options of the fisher command's
// flags samples, seed, max-examples, batch, mode and logits (or
// output-name), with the session so; bad values are usage errors.
func FisherOptionsFromFlags(f Flags, so evalharness.SessionOptions) (fisher.Options, error) {
	if f.Int("samples") < 0 || f.Int("max-examples") < 0 || f.Int("batch") < 1 {
		return fisher.Options{}, Usagef("samples and max-examples must be >= 0 and batch >= 1")
	}
	mode := f.String("mode")
	if mode != "" && mode != fisher.ModeRows && mode != fisher.ModeCopies && mode != fisher.ModeLoop && mode != fisher.ModeTokens {
		return fisher.Options{}, Usagef("mode must be %s, %s, %s or %s, got %q", fisher.ModeRows, fisher.ModeCopies, fisher.ModeLoop, fisher.ModeTokens, mode)
	}
	return fisher.Options{
		Output: f.String("logits"), Samples: f.Int("samples"), Seed: f.Int64("seed"),
		MaxExamples: f.Int("max-examples"), Batch: f.Int("batch"), Mode: mode, Session: so,
	}, nil
}

// Fisher runs the fisher command's computation: the diagonal Fisher of m
// (named name; for an If-merged decoder, of the branch the data takes,
// fisher.DataBranch, which it names on log) on ds, as a model holding one tensor per parameter
// with the tool's version in its metadata, and the command's JSON result
// (its keys "command", "model", "samples", "classes", "label_samples",
// "params", "tensors", "mode", "seconds", "examples_per_s", "fallback";
// the caller adds "output" and "data").
func Fisher(ctx context.Context, m *onnxio.Model, name string, ds *evalharness.Dataset, opt fisher.Options, log io.Writer) (*onnxio.Model, map[string]any, error) {
	m, err := fisher.DataBranch(m, ds, log)
	if err != nil {
		return nil, nil, err
	}
	t0 := time.Now()
	fm, r, err := fisher.FromData(ctx, m, name, ds, opt)
	if err != nil {
		return nil, nil, err
	}
	secs := time.Since(t0).Seconds()
	fm.SetMetadata("onnxpost.version", release.Version)
	var elems int64
	for _, v := range r.Fisher {
		elems += int64(len(v))
	}
	res := map[string]any{
		"command": "fisher", "model": name,
		"samples": r.Examples, "classes": r.Classes, "label_samples": opt.Samples,
		"params": elems, "tensors": len(r.Params), "mode": r.Mode, "seconds": secs,
		"examples_per_s": float64(r.Examples) / secs,
	}
	if r.Fallback != "" {
		res["fallback"] = r.Fallback
	}
	return fm, res, nil
}
