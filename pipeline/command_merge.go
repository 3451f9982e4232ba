package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/fisher"
	"github.com/onnxpost/onnxpost/merge"
	"github.com/onnxpost/onnxpost/merge/rebasin"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/quant"
	"github.com/onnxpost/onnxpost/transform"
)

// MergeSpec is a merge once its config file and its flags are combined
// (the flags win).
type MergeSpec struct {
	Options merge.Options
	// Base is the base model's path ("" for none).
	Base string
	// Models are the paths of the models merged.
	Models []string
	// Fishers are precomputed diagonal Fisher files, one per model.
	Fishers []string
	// FisherData are datasets to compute each model's Fisher on: one for
	// all models, or one per model.
	FisherData []string
	// Stack is a passthrough config's layer stack (then Options is
	// unused).
	Stack []merge.StackSlice
	// Dtype is the output's weight type from the config ("fp16", "bf16"
	// or "": unchanged).
	Dtype string
	// Output, Data and Gate are the config's output path, evaluation
	// data and gate ("" when it has none).
	Output, Data, Gate string
	// Notes are the config's notes (merge.Config.Notes).
	Notes []string
}

// MergeSpecFromFlags combines the merge command's config (flag config,
// read by merge.LoadConfig with outDir, the folder its output must stay
// in; "" for the config's own) with its flags; models are the model
// paths given besides (none with a config). Bad values and combinations
// are usage errors.
func MergeSpecFromFlags(f Flags, models []string, outDir string) (*MergeSpec, error) {
	s := &MergeSpec{}
	if p := f.String("config"); p != "" {
		if len(models) > 0 {
			return nil, Usagef("with a config the models come from the file; got %d models besides", len(models))
		}
		var opts []merge.ConfigOption
		if outDir != "" {
			opts = append(opts, merge.WithOutDir(outDir))
		}
		cfg, err := merge.LoadConfig(p, opts...)
		if err != nil {
			return nil, Usage(err)
		}
		s.Base, s.Models, s.Stack, s.Dtype = cfg.Base, cfg.Paths(), cfg.Stack(), cfg.OutputDtype()
		s.Output, s.Data, s.Gate, s.Notes = cfg.Output, cfg.Data, cfg.Gate, cfg.Notes
		if s.Stack == nil {
			if s.Options, err = cfg.Options(); err != nil {
				return nil, Usagef("%s: %v", p, err)
			}
		}
		if s.Fishers, err = cfg.FisherPaths(); err != nil {
			return nil, Usagef("%s: %v", p, err)
		}
		if s.Stack != nil {
			for _, k := range []string{"method", "param", "base", "weights", "density", "lambda", "trim-scope", "t", "fisher", "fisher-data",
				"fisher-floor", "fisher-normalize", "no-normalize", "include", "exclude", "align", "calib", "seed"} {
				if f.IsSet(k) {
					return nil, Usagef("%s does not apply to a passthrough config (it copies layers, it merges no weights)", k)
				}
			}
			return s, nil
		}
	} else {
		if f.IsSet("out-dir") {
			return nil, Usagef("out-dir applies to a config only")
		}
		for _, p := range models {
			s.Models = append(s.Models, merge.ModelPath(p))
		}
		if !f.IsSet("method") {
			return nil, Usagef("the method parameter is required (%s) unless a config is given", strings.Join(methodNames(), ", "))
		}
	}
	values := ParamValues(f, merge.Command)
	if f.IsSet("method") {
		if _, _, err := merge.Command.Check(values); err != nil {
			return nil, valueUsage(err)
		}
	} else if err := merge.Command.CheckValues(values); err != nil {
		return nil, valueUsage(err)
	}
	var err error
	if f.IsSet("method") {
		if s.Options.Method, err = merge.ParseMethod(f.String("method")); err != nil {
			return nil, Usage(err)
		}
	}
	for _, kv := range f.StringSlice("param") {
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, Usagef("param %q: want NAME=VALUE", kv)
		}
		if err := s.Options.SetParam(name, value); err != nil {
			return nil, Usagef("param: %v", strings.TrimPrefix(err.Error(), "merge: invalid options: "))
		}
	}
	if f.IsSet("base") {
		s.Base = merge.ModelPath(f.String("base"))
	}
	if f.IsSet("weights") {
		if s.Options.Weights, err = floatList("weights", f.String("weights")); err != nil {
			return nil, err
		}
		if len(s.Options.Weights) == 1 && len(s.Models) > 1 {
			w := s.Options.Weights[0]
			s.Options.Weights = nil
			for range s.Models {
				s.Options.Weights = append(s.Options.Weights, w)
			}
		}
	}
	if f.IsSet("density") {
		d, err := floatList("density", f.String("density"))
		if err != nil {
			return nil, err
		}
		s.Options.Densities = nil
		if len(d) == 1 {
			if d[0] == 0 {
				return nil, Usagef("density = 0 is outside (0, 1]")
			}
			s.Options.Density = d[0]
		} else {
			s.Options.Densities = d
		}
	}
	if f.IsSet("lambda") || s.Options.Lambda == nil {
		l := f.Float64("lambda")
		s.Options.Lambda = &l
	}
	if f.IsSet("trim-scope") || s.Options.TrimScope == "" {
		s.Options.TrimScope = merge.TrimScope(f.String("trim-scope"))
	}
	if f.IsSet("t") {
		t := f.Float64("t")
		s.Options.T = &t
	}
	if f.IsSet("seed") {
		s.Options.Seed = f.Int64("seed")
	}
	if f.IsSet("fisher-floor") || s.Options.FisherFloor == 0 {
		s.Options.FisherFloor = f.Float64("fisher-floor")
	}
	if f.IsSet("fisher-normalize") {
		s.Options.FisherNormalize = f.Bool("fisher-normalize")
	}
	if f.IsSet("no-normalize") {
		s.Options.NoNormalize = f.Bool("no-normalize")
	}
	for _, r := range []struct {
		flag string
		dst  **regexp.Regexp
	}{{"include", &s.Options.Include}, {"exclude", &s.Options.Exclude}} {
		if f.IsSet(r.flag) {
			re, err := regexp.Compile(f.String(r.flag))
			if err != nil {
				return nil, Usagef("%s: %v", r.flag, err)
			}
			*r.dst = re
		}
	}
	if f.IsSet("fisher") {
		s.Fishers = strings.Split(f.String("fisher"), ",")
	}
	if f.IsSet("fisher-data") {
		s.FisherData = strings.Split(f.String("fisher-data"), ",")
	}
	if len(s.Models) == 0 {
		return nil, Usagef("no models to merge: give models or a config")
	}
	switch {
	case s.Options.Method != merge.Fisher && (len(s.Fishers) > 0 || len(s.FisherData) > 0):
		return nil, Usagef("fisher and fisher-data are only used by method fisher")
	case s.Options.Method == merge.Fisher && len(s.Fishers) > 0 && len(s.FisherData) > 0:
		return nil, Usagef("give either fisher files or fisher-data datasets, not both")
	case s.Options.Method == merge.Fisher && len(s.FisherData) > 0:
		if len(s.FisherData) != 1 && len(s.FisherData) != len(s.Models) {
			return nil, Usagef("fisher-data takes one dataset or one per model (%d models, %d datasets)", len(s.Models), len(s.FisherData))
		}
	case s.Options.Method == merge.Fisher && len(s.Fishers) != len(s.Models):
		return nil, Usagef("fisher merging needs fisher with one file per model or fisher-data (%d models, %d files)", len(s.Models), len(s.Fishers))
	}
	if err := s.Options.Validate(len(s.Models), s.Base != ""); err != nil {
		return nil, Usagef("%v", strings.TrimPrefix(err.Error(), "merge: invalid options: "))
	}
	return s, nil
}

// valueUsage is a usage error of err's lines (transform.ErrValue's)
// without their "invalid value: " prefix.
func valueUsage(err error) error {
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, transform.ErrValue.Error()+": ")
	}
	return Usagef("%s", strings.Join(lines, "\n"))
}

// floatList parses "a,b,c" (empty: nil); a part that is not a number is
// a usage error naming flag.
func floatList(flag, s string) ([]float64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			return nil, Usagef("%s: %q is not a number", flag, f)
		}
		out = append(out, v)
	}
	return out, nil
}

// methodNames lists every merge method.
func methodNames() []string {
	names := make([]string, len(merge.Methods))
	for i, m := range merge.Methods {
		names[i] = string(m)
	}
	return names
}

// CheckAlignFlags validates the merge flags align and calib; fisherFiles
// tells whether precomputed Fisher files are given (flag or config).
func CheckAlignFlags(f Flags, fisherFiles bool) error {
	if f.String("align") == "" && f.IsSet("calib") {
		return Usagef("calib is only used by align activations")
	}
	if f.String("align") != "" && fisherFiles {
		// The files hold the Fisher of the models as given, not of their
		// permuted copies; fisher-data computes it after the alignment.
		return Usagef("align cannot use precomputed fisher files (they are not permuted); use fisher-data")
	}
	switch a := f.String("align"); a {
	case "", "weights":
		if a != "" && f.IsSet("calib") {
			return Usagef("calib is only used by align activations (weights matching reads no data)")
		}
	case "activations":
		if f.String("calib") == "" {
			return Usagef("align activations needs calib data")
		}
	default:
		return Usagef("align must be weights or activations, got %q", a)
	}
	return nil
}

// AlignOptions are the options of AlignModels.
type AlignOptions struct {
	// Mode is "weights" or "activations" ("": no alignment).
	Mode string
	// Seed orders weights matching's coordinate descent.
	Seed int64
	// Calib is the path of activations matching's dataset.
	Calib string
	// Session opens activations matching's sessions.
	Session evalharness.SessionOptions
	// Log receives what was moved (nil: nowhere).
	Log io.Writer
}

// AlignModels permutes every model of in onto the reference (the base,
// or the first model; Git Re-Basin), turns attention heads onto it, and
// returns the report rows (nil when opt.Mode is ""). labels name the
// models in messages and rows.
func AlignModels(ctx context.Context, in *merge.Inputs, labels []string, opt AlignOptions) ([]map[string]any, error) {
	mode := opt.Mode
	if mode == "" {
		return nil, nil
	}
	logf := func(format string, args ...any) {
		if opt.Log != nil {
			fmt.Fprintf(opt.Log, format, args...)
		}
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
			res, err = rebasin.WeightMatching(ctx, ref, in.Models[i], rebasin.Options{Seed: opt.Seed})
		case "activations":
			ds, derr := evalharness.LoadDatasetFor(opt.Calib, evalharness.DatasetOptions{Inputs: inputNames(ref)})
			if derr != nil {
				return nil, derr
			}
			res, err = rebasin.ActivationMatching(ctx, ref, in.Models[i], ds, rebasin.ActivationOptions{Session: opt.Session})
		}
		if err != nil {
			return nil, fmt.Errorf("align %s: %s: %w", mode, labels[i], err)
		}
		out, err := rebasin.Permute(in.Models[i], res.Groups, res.Perms)
		if err != nil {
			return nil, fmt.Errorf("align %s: %s: %w", mode, labels[i], err)
		}
		out, heads, err := rebasin.RotateHeads(ref, out, res.Groups)
		if err != nil {
			return nil, fmt.Errorf("align %s: %s: %w", mode, labels[i], err)
		}
		in.Models[i] = out
		if i == first {
			if _, held, err := rebasin.Analyze(ref); err == nil {
				for _, h := range held {
					logf("merge: align: %s stays in place: %s\n", h.Layer, h.Reason)
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
			logf("merge: align: %s has no hidden units to permute\n", labels[i])
		} else {
			how := mode + " matching"
			if mode == "weights" {
				how += fmt.Sprintf(", %d passes", res.Passes)
			}
			turned := ""
			if heads > 0 {
				turned = fmt.Sprintf("; %d attention heads turned", heads)
			}
			logf("merge: aligned %s (%s): moved %s%s\n", labels[i], how, strings.Join(parts, ", "), turned)
		}
		rows = append(rows, map[string]any{"model": labels[i], "method": mode, "passes": res.Passes, "groups": groups, "heads_turned": heads})
	}
	return rows, nil
}

// MergeFishers gives in the diagonal Fishers the merge spec names: the
// files of s.Fishers, or each model's Fisher computed on s.FisherData
// (seeded by seed), and returns their provenance sources.
func MergeFishers(ctx context.Context, s *MergeSpec, in *merge.Inputs, seed int64, so evalharness.SessionOptions, log io.Writer) ([]merge.Source, error) {
	var srcs []merge.Source
	if len(s.Fishers) > 0 {
		fs, err := merge.LoadModels(s.Fishers)
		if err != nil {
			return nil, err
		}
		in.Fishers = fs
		if srcs, err = merge.Sources("fisher", s.Fishers, fs); err != nil {
			return nil, err
		}
	}
	for i, m := range in.Models {
		if len(s.FisherData) == 0 {
			break
		}
		dp := s.FisherData[0]
		if len(s.FisherData) > 1 {
			dp = s.FisherData[i]
		}
		ds, err := evalharness.LoadDatasetFor(dp, evalharness.DatasetOptions{Inputs: inputNames(m)})
		if err != nil {
			return nil, err
		}
		if log != nil {
			fmt.Fprintf(log, "merge: computing the diagonal Fisher of %s on %s\n", s.Models[i], dp)
		}
		fm, _, err := fisher.FromData(ctx, m, s.Models[i], ds, fisher.Options{Session: so, Seed: seed})
		if err != nil {
			return nil, fmt.Errorf("Fisher of %s on %s: %w", s.Models[i], dp, err)
		}
		in.Fishers = append(in.Fishers, fm)
		ds2, err := merge.Sources("fisher-data", []string{dp}, nil)
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, ds2...)
	}
	return srcs, nil
}

// MergeProvenance records a merge's inputs in out's metadata
// (merge.SetProvenance) and in report["inputs"]: the models' and base's
// sources from inputSources (merge.OpenInputs's, which waits for their
// digests), then other (calibration, Fisher files and data).
func MergeProvenance(out *onnxio.Model, opt merge.Options, inputSources func() ([]merge.Source, error), other []merge.Source, report map[string]any) error {
	ins, err := inputSources()
	if err != nil {
		return err
	}
	all := append(ins, other...)
	report["inputs"] = all
	return merge.SetProvenance(out, &opt, all)
}

// MergeReport is the merge command's report of mg (its keys "method",
// "merge_params", "merged_tensors", "merged_params", "inputs" when srcs
// are known, "trim_thresholds", "alignment").
func MergeReport(mg *merge.Merger, opt merge.Options, srcs []merge.Source, alignment []map[string]any) map[string]any {
	report := map[string]any{
		"method":         string(opt.Method),
		"merge_params":   opt.Params(),
		"merged_tensors": len(mg.Plan()),
		"merged_params":  mg.Elements(),
	}
	if srcs != nil {
		report["inputs"] = srcs
	}
	if th := mg.Thresholds(); th != nil {
		report["trim_thresholds"] = th
	}
	if alignment != nil {
		report["alignment"] = alignment
	}
	return report
}

// StackMerge runs a passthrough merge spec: the slices' layers of the
// models at s.Models stacked into one model (merge.Stack), with the
// merge's metadata; it returns the model, the model it is compared with
// (the first slice's) and the report.
func StackMerge(s *MergeSpec) (cand, ref *onnxio.Model, models []*onnxio.Model, report map[string]any, err error) {
	models, err = merge.LoadModels(s.Models)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if err := merge.Prepare(models, s.Models); err != nil {
		return nil, nil, nil, nil, err
	}
	srcs, err := merge.Sources("model", s.Models, models)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	cand, err = merge.Stack(models, s.Models, s.Stack)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	var slices []map[string]any
	for _, sl := range s.Stack {
		slices = append(slices, map[string]any{"model": s.Models[sl.Model], "layer_range": []int{sl.Start, sl.End}})
	}
	report = map[string]any{"method": "passthrough", "slices": slices, "inputs": srcs}
	pb, err := json.Marshal(map[string]any{"slices": slices})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	sb, err := json.Marshal(srcs)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	cand.SetMetadata(merge.MetaMethod, "passthrough")
	cand.SetMetadata(merge.MetaParams, string(pb))
	cand.SetMetadata(merge.MetaInputs, string(sb))
	return cand, models[s.Stack[0].Model], models, report, nil
}

// ConvertDtype converts m's weights to a merge config's dtype with quant's
// fp16/bf16 conversion ("" leaves m as it is) and records it in report.
func ConvertDtype(ctx context.Context, m *onnxio.Model, dtype string, report map[string]any) (*onnxio.Model, error) {
	if dtype == "" {
		return m, nil
	}
	out, rep, err := quant.Quantize(ctx, m, quant.Options{Weights: dtype})
	if err != nil {
		return nil, fmt.Errorf("dtype %s: %w", dtype, err)
	}
	report["dtype"] = dtype
	if len(rep.Notes) > 0 {
		report["dtype_notes"] = rep.Notes
	}
	out.SetMetadata("onnxpost.merge.dtype", dtype)
	return out, nil
}
