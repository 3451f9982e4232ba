package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/internal/jsonout"
	"github.com/onnxpost/onnxpost/merge"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/release"
	"github.com/onnxpost/onnxpost/transform"
)

// stepPathKeys are the step keys that name files the step reads; their
// values resolve against the recipe's folder (lists element by element).
var stepPathKeys = map[string]bool{"base": true, "calib": true, "data": true, "ref": true, "config": true, "fisher-data": true, "fisher": true}

// stepValues returns step i's keys as its command's flags take them:
// paths it reads resolved against the recipe's folder, paths it writes
// as validated, and the recipe's seed and data when the step sets none.
func (r *Recipe) stepValues(i int) map[string]any {
	s := r.Steps[i]
	v := make(map[string]any, len(s.Args)+2)
	for k, x := range s.Args {
		switch {
		case s.writes[k] != "":
			v[k] = s.writes[k]
		case stepPathKeys[k]:
			if xs, ok := x.([]any); ok {
				out := make([]any, len(xs))
				for j, e := range xs {
					out[j] = r.Path(transform.Text(e))
				}
				v[k] = out
			} else {
				v[k] = r.Path(transform.Text(x))
			}
		default:
			v[k] = x
		}
	}
	if _, ok := v["seed"]; !ok && r.Seed != nil {
		v["seed"] = *r.Seed
	}
	if _, ok := v["data"]; !ok {
		if d := s.Data; d != "" {
			v["data"] = r.Path(d)
		} else if r.Data != "" {
			v["data"] = r.Path(r.Data)
		}
	}
	return v
}

// checkCommandStep checks, before any step runs, the values of step i
// that runs through its command's library entry point (its options'
// types are CheckStepFlags's): what the entry points check without
// reading files (eval's metrics and shard, fisher's counts and
// mode, soup's metric and patterns, search's combinations). Errors are
// usage errors.
func (r *Recipe) checkCommandStep(i int) error {
	s := r.Steps[i]
	f := StepFlags(s.Command, r.stepValues(i))
	if _, err := SessionFromFlags(f); err != nil {
		return err
	}
	switch s.Command {
	case "eval":
		if f.String("data") == "" {
			return Usagef("eval needs data")
		}
		_, err := EvalOptionsFromFlags(f, nil)
		return err
	case "fisher":
		if s.Gate != "" {
			return Usagef("fisher makes a Fisher file, not a model to gate: remove the step's gate")
		}
		if f.String("data") == "" {
			return Usagef("fisher needs data (the examples its Fisher averages over)")
		}
		_, err := FisherOptionsFromFlags(f, evalharness.SessionOptions{})
		return err
	case "soup":
		_, err := SoupOptionsFromFlags(f, f.String("data"))
		return err
	case "search":
		if f.String("calib") == "" {
			return Usagef("search needs calib data (the fitness runs on it)")
		}
		args, err := r.searchArgs(i)
		if err != nil {
			return err
		}
		_, err = SearchOptionsFromFlags(args, f, evalharness.SessionOptions{})
		return err
	}
	return nil
}

// searchArgs checks search step i's parameters through their
// declarations.
func (r *Recipe) searchArgs(i int) (transform.Args, error) {
	values := map[string]any{}
	for k, v := range r.Steps[i].Args {
		if SearchCommand.Param(k) != nil {
			values[k] = v
		}
	}
	_, args, err := SearchCommand.Check(values)
	if err != nil {
		return nil, valueUsage(err)
	}
	return args, nil
}

// runCommand runs step i through its command's library entry point (the
// one the command line calls): eval, fisher, soup, search, or a merge
// with a config, Fisher files or data, or an alignment. prev is the
// previous step's model (nil for a step with inputs); the step's inputs
// are files. A step that makes a model is evaluated and gated by
// evaluateStep; an eval step hands its input on unchanged, a fisher step
// the Fisher model.
func (r *Recipe) runCommand(ctx context.Context, i int, p *stepPlan, prev *onnxio.Model) (*stepOutcome, error) {
	s := r.Steps[i]
	f := StepFlags(s.Command, r.stepValues(i))
	so, err := SessionFromFlags(f)
	if err != nil {
		return nil, err
	}
	so.Library = r.Session.Library
	paths := make([]string, len(s.Inputs))
	for j, x := range s.Inputs {
		paths[j] = r.Path(x)
	}
	var log io.Writer
	if r.Log != nil {
		log = r.Log
	}
	// one model: the step's input file, or the previous step's model
	one := func() (*onnxio.Model, string, error) {
		switch len(paths) {
		case 0:
			return prev, "", nil
		case 1:
			m, err := onnxio.Load(paths[0])
			return m, paths[0], err
		}
		return nil, "", Usagef("%s takes one model, got %d inputs", s.Command, len(paths))
	}
	switch s.Command {
	case "eval":
		m, path, err := one()
		if err != nil {
			return nil, err
		}
		ds, err := evalharness.LoadDatasetFor(f.String("data"), evalharness.DatasetOptions{Inputs: inputNames(m)})
		if err != nil {
			return nil, err
		}
		eo, err := EvalOptionsFromFlags(f, p.gate)
		if err != nil {
			return nil, err
		}
		req := EvalRequest{Path: path, RefPath: f.String("ref"), Data: ds, Session: so, Options: eo, Gate: p.gate}
		if path == "" {
			req.Model = m
		}
		res, names, err := Eval(ctx, req)
		if err != nil {
			return nil, err
		}
		if out := f.String("save-outputs"); out != "" {
			if err := WriteEvalOutputs(out, names, res); err != nil {
				return nil, fmt.Errorf("save-outputs: %w", err)
			}
		}
		o, err := outcome(m, res)
		if err != nil {
			return nil, err
		}
		if res.Gate != nil && !res.Gate.Passed {
			return o, fmt.Errorf("%w: %s", release.ErrGateFailed, res.Gate.Failed())
		}
		return o, nil
	case "fisher":
		m, path, err := one()
		if err != nil {
			return nil, err
		}
		if path == "" {
			path = "-"
		}
		opt, err := FisherOptionsFromFlags(f, so)
		if err != nil {
			return nil, err
		}
		ds, err := evalharness.LoadDatasetFor(f.String("data"), evalharness.DatasetOptions{Inputs: inputNames(m)})
		if err != nil {
			return nil, err
		}
		fm, res, err := Fisher(ctx, m, path, ds, opt, log)
		if err != nil {
			return nil, err
		}
		res["output"], res["data"] = "", f.String("data")
		return outcome(fm, res)
	case "soup":
		opt, err := SoupOptionsFromFlags(f, f.String("data"))
		if err != nil {
			return nil, err
		}
		if opt.Greedy {
			var names []string
			if len(paths) > 0 {
				if sig, err := onnxio.ReadSignature(paths[0]); err == nil {
					for _, v := range sig.Inputs {
						names = append(names, v.Name)
					}
				}
			}
			if opt.Data, err = evalharness.LoadDatasetFor(f.String("data"), evalharness.DatasetOptions{Inputs: names}); err != nil {
				return nil, err
			}
			opt.Session = so
			opt.Eval = evalharness.EvalOptions{Batch: f.Int("batch"), Outputs: evalharness.ParseOutputNames(f.String("output-name"))}
		}
		res, err := Soup(ctx, paths, opt, log)
		if err != nil {
			return nil, err
		}
		cand, inputs := res.Model, []*onnxio.Model(nil)
		if res.Merger != nil {
			cand, err = res.Merger.Model(ctx, res.Model)
			res.Merger.Close()
			if err != nil {
				return nil, err
			}
			inputs = res.Models
		}
		return r.evaluateStep(ctx, i, p, cand, res.Ref, res.Report, inputs, paths)
	case "search":
		m, _, err := one()
		if err != nil {
			return nil, err
		}
		args, err := r.searchArgs(i)
		if err != nil {
			return nil, err
		}
		opt, err := SearchOptionsFromFlags(args, f, so)
		if err != nil {
			return nil, err
		}
		calib, err := evalharness.LoadDatasetFor(f.String("calib"), evalharness.DatasetOptions{Inputs: inputNames(m)})
		if err != nil {
			return nil, err
		}
		opt.Log = func(format string, args ...any) { r.logf("search: "+format+"\n", args...) }
		out, rep, err := Search(ctx, m, calib, opt, f.Int64("seed"))
		if err != nil {
			return nil, err
		}
		if dir := f.String("baselines"); dir != "" {
			if err := SaveSearchBaselines(dir, rep, log); err != nil {
				return nil, err
			}
		}
		if dir := f.String("plots"); dir != "" {
			if err := PlotSearch(dir, rep); err != nil {
				return nil, err
			}
		}
		r.logf("%s", SearchMarkdown(rep))
		if err := r.requireChange(i, out, m); err != nil {
			return nil, err
		}
		return r.evaluateStep(ctx, i, p, out, m, map[string]any{"search": rep}, nil, nil)
	case "merge":
		return r.runMerge(ctx, i, p, f, so, paths, log)
	}
	return nil, fmt.Errorf("internal error: step %d: no entry point for %q", i+1, s.Command)
}

// runMerge runs merge step i through the merge command's entry points:
// its config and keys combined (MergeSpecFromFlags), then a passthrough
// stack, or the models loaded, aligned, given their Fishers and merged,
// converted to the config's dtype. The config's data and gate apply when
// the step has none.
func (r *Recipe) runMerge(ctx context.Context, i int, p *stepPlan, f Flags, so evalharness.SessionOptions, paths []string, log io.Writer) (*stepOutcome, error) {
	s := r.Steps[i]
	outDir := ""
	if f.IsSet("out-dir") {
		outDir = r.Path(f.String("out-dir"))
	}
	spec, err := MergeSpecFromFlags(f, paths, outDir)
	if err != nil {
		return nil, err
	}
	for _, n := range spec.Notes {
		r.logf("merge: note: %s\n", n)
	}
	if p.data == "" && spec.Data != "" {
		p.data = spec.Data
	}
	if s.Gate == "" && spec.Gate != "" {
		if p.gate, err = evalharness.ParseGate(spec.Gate); err != nil {
			return nil, Usagef("gate: %v", err)
		}
	}
	if len(p.gate.Conditions) > 0 && p.data == "" {
		return nil, Usagef("the gate needs data to evaluate the candidate")
	}
	if spec.Stack != nil {
		cand, ref, models, report, err := StackMerge(spec)
		if err != nil {
			return nil, err
		}
		if cand, err = ConvertDtype(ctx, cand, spec.Dtype, report); err != nil {
			return nil, err
		}
		return r.evaluateStep(ctx, i, p, cand, ref, report, models, spec.Models)
	}
	if err := CheckAlignFlags(f, len(spec.Fishers) > 0); err != nil {
		return nil, err
	}
	// as the command: the inputs hashed while they are merged, their
	// provenance recorded on the merged model
	in, inputSources, merged, err := openMerge(spec.Base, spec.Models)
	if err != nil {
		return nil, err
	}
	if merged {
		return r.runMergeBranches(ctx, i, p, f, so, spec, in, inputSources, log)
	}
	mode := f.String("align")
	rows, err := AlignModels(ctx, &in, spec.Models, AlignOptions{Mode: mode, Seed: f.Int64("seed"), Calib: f.String("calib"), Session: so, Log: log})
	if err != nil {
		return nil, err
	}
	srcs, err := mergeExtraSources(ctx, spec, &in, f, so, log)
	if err != nil {
		return nil, err
	}
	cand, report, err := mergeInMemory(ctx, in, spec, rows, mode)
	if err != nil {
		return nil, err
	}
	if err := MergeProvenance(cand, spec.Options, inputSources, srcs, report); err != nil {
		return nil, err
	}
	if cand, err = ConvertDtype(ctx, cand, spec.Dtype, report); err != nil {
		return nil, err
	}
	ref := in.Base
	if ref == nil {
		ref = in.Models[0]
	}
	return r.evaluateStep(ctx, i, p, cand, ref, report, in.Models, spec.Models)
}

// mergeInMemory merges in with spec's options into a model in memory and
// returns it with the merge's report; rows, the alignment's (nil when the
// models were not aligned), go into the report and mode into the model's
// metadata.
func mergeInMemory(ctx context.Context, in merge.Inputs, spec *MergeSpec, rows []map[string]any, mode string) (*onnxio.Model, map[string]any, error) {
	mg, err := merge.New(ctx, in, spec.Options, nil)
	if err != nil {
		return nil, nil, err
	}
	defer mg.Close()
	out := mg.Output()
	report := MergeReport(mg, spec.Options, nil, rows)
	if rows != nil {
		out.SetMetadata("onnxpost.align", mode)
	}
	cand, err := mg.Model(ctx, out)
	if err != nil {
		return nil, nil, err
	}
	return cand, report, nil
}

// mergeExtraSources returns a merge step's inputs beyond its models, for
// provenance: the calibration data of an activation alignment and the
// Fisher files, which MergeFishers computes on in when the spec asks.
func mergeExtraSources(ctx context.Context, spec *MergeSpec, in *merge.Inputs, f Flags, so evalharness.SessionOptions, log io.Writer) ([]merge.Source, error) {
	var srcs []merge.Source
	if f.String("align") == "activations" {
		cs, err := merge.Sources("calib", []string{f.String("calib")}, nil)
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, cs...)
	}
	fs, err := MergeFishers(ctx, spec, in, f.Int64("seed"), so, log)
	if err != nil {
		return nil, err
	}
	return append(srcs, fs...), nil
}

// runMergeBranches is runMerge on If-merged decoders (openMerge): the
// Fishers computed once on the merged models (MergeFishers, on the branch
// the data takes), then each branch aligned, merged and converted to the
// config's dtype as a plain model (mergeBranches), as the merge command's
// branch runs do; the provenance is recorded on the joined model.
func (r *Recipe) runMergeBranches(ctx context.Context, i int, p *stepPlan, f Flags, so evalharness.SessionOptions, spec *MergeSpec, in merge.Inputs, inputSources func() ([]merge.Source, error), log io.Writer) (*stepOutcome, error) {
	mode := f.String("align")
	srcs, err := mergeExtraSources(ctx, spec, &in, f, so, log)
	if err != nil {
		return nil, err
	}
	cand, brep, err := mergeBranches(ctx, in, func(ctx context.Context, attr string, bi merge.Inputs) (*onnxio.Model, any, error) {
		rows, err := AlignModels(ctx, &bi, spec.Models, AlignOptions{Mode: mode, Seed: f.Int64("seed"), Calib: f.String("calib"), Session: so, Log: log})
		if err != nil {
			return nil, nil, err
		}
		cand, report, err := mergeInMemory(ctx, bi, spec, rows, mode)
		if err != nil {
			return nil, nil, err
		}
		if cand, err = ConvertDtype(ctx, cand, spec.Dtype, report); err != nil {
			return nil, nil, err
		}
		return cand, report, nil
	})
	if err != nil {
		return nil, err
	}
	report := map[string]any{"method": string(spec.Options.Method), "merge_params": spec.Options.Params(), "branches": brep.Branches}
	if err := MergeProvenance(cand, spec.Options, inputSources, srcs, report); err != nil {
		return nil, err
	}
	ref := in.Base
	if ref == nil {
		ref = in.Models[0]
	}
	return r.evaluateStep(ctx, i, p, cand, ref, report, in.Models, spec.Models)
}

// requireChange refuses step i's result when it changed no weight of its
// input (ErrNothingChanged), unless the step sets allow-noop.
func (r *Recipe) requireChange(i int, cand, in *onnxio.Model) error {
	if !cand.SameGraph(in) {
		return nil
	}
	s := r.Steps[i]
	if StepFlags(s.Command, s.Args).Bool("allow-noop") {
		r.logf("%s: warning: nothing to transform (allow-noop keeps the unchanged model)\n", s.Command)
		return nil
	}
	return fmt.Errorf("%w: %s changed no weight (allow-noop: true keeps the unchanged model)", ErrNothingChanged, s.Command)
}

// outcome is a step's outcome of a model and a result that is not a
// release.Report (eval's evaluation, fisher's summary): its JSON keys.
func outcome(m *onnxio.Model, result any) (*stepOutcome, error) {
	b, err := jsonout.Marshal(result)
	if err != nil {
		return nil, err
	}
	o := &stepOutcome{model: m}
	if err := json.Unmarshal(b, &o.result); err != nil {
		return nil, err
	}
	return o, nil
}
