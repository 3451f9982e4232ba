package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/fisher"
	"github.com/onnxpost/onnxpost/merge"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/quant"
	"github.com/onnxpost/onnxpost/transform"
)

func init() {
	register(&cli.Command{
		Name:      "merge",
		Usage:     "merge models in weight space (linear, task arithmetic, TIES, DARE, SLERP, Fisher, and mergekit's methods)",
		ArgsUsage: "MODEL...",
		Description: fmt.Sprintf(`Merges models of one architecture into one. Tensors are paired by graph
position (not by name); floating-point initializers are merged, every other
tensor (shapes, indices) must be equal. fp16/bf16 tensors are computed in
float64 and written back in their own type. The merge streams one tensor name
at a time, so models with external data larger than memory merge too.

Methods (docs/ARCHITECTURE.md §5.1):
  linear           Σ wᵢθᵢ / Σ wᵢ (--no-normalize: Σ wᵢθᵢ)
  task-arithmetic  θ_base + λ Σ wᵢ(θᵢ − θ_base)                     needs --base
  ties             trim each delta to its top --density (global: one threshold
                   per model over all merged tensors; tensor: per tensor), elect
                   the sign of the sum, disjoint (weighted) mean, θ_base + λτ   needs --base
  dare             drop delta entries with p = 1 − density (seeded), rescale
                   kept ones by 1/(1 − p), θ_base + λ Σ wᵢτ̂ᵢ                     needs --base
  dare-ties        DARE drops, then TIES sign election and disjoint mean      needs --base
  slerp            spherical interpolation of two models per tensor (--t)
  fisher           Σ λᵢFᵢθᵢ / Σ λᵢFᵢ with diagonal Fisher files (--fisher)

mergekit's methods, as mergekit defines them (underscores or dashes; their
parameters, mergekit's names, via --param NAME=VALUE or a config's parameters):
%s
passthrough (layer stacking) is a --config with slices, one source each:
  slices:
    - sources: [{model: a.onnx, layer_range: [0, 24]}]
    - sources: [{model: b.onnx, layer_range: [20, 40]}]
  merge_method: passthrough
The layers are the graph's repeated residual blocks; each output layer is a
copy of one input layer, chained along the residual stream (embeddings from
the first slice's model, final norm and head from the last's).
dtype: float16 or bfloat16 in a config converts the output's weights as
quantize --weights fp16/bf16 does.
Not supported: ram, ramplus_tl.

--weights and --density take one value per model (comma-separated) or one
value for all. With --data the merged model is evaluated beside the base (or
the first model) and the inputs; --gate decides whether it is written.

  onnxpost merge --method ties --base base.onnx --density 0.2 -o out.onnx a.onnx b.onnx c.onnx
  onnxpost merge a.onnx b.onnx --method linear --weights 2,1 -o avg.onnx
  onnxpost merge --config merge.yaml

--config reads a YAML file as mergekit's users write it (merge_method,
base_model, models or one slices: entry over all layers, per-model and global
parameters as scalars, gradients such as weight: [0, 0.3, 0.7, 1] interpolated
across the layers found in the graph, or filter lists such as
[{filter: mlp, value: 0.5}, {value: 0}], dtype, tokenizer_source; slices
stacking layers with merge_method passthrough) plus
onnxpost's output, data and gate; unknown keys and parameters a method does not
take are refused by name. Model paths are .onnx files or folders holding
model.onnx. Flags given on the command line override its values. Its paths are relative to its
folder; its output must stay inside that folder, or inside --out-dir DIR
(no absolute path, "..", or symbolic link leaving it), and it cannot set
ort-lib or threads.
%s`, mergekitMethodHelp(), alignHelp),
		Flags: append(append(append(commonFlags(), paramFlags(merge.Command)...),
			&cli.StringFlag{Name: "base", Usage: "the pre-trained model `BASE.onnx` deltas are taken from"},
			&cli.StringFlag{Name: "fisher", Usage: "diagonal Fisher files `F1,F2,...`, one per model (ONNX files whose initializers are named and shaped like the model's)"},
			&cli.StringFlag{Name: "fisher-data", Usage: "compute each model's diagonal Fisher on `DATASET` (one for all models, or D1,D2,... one per model: each model's own task data works best)"},
			&cli.StringFlag{Name: "config", Usage: "read the merge from `merge.yaml`"},
			&cli.StringFlag{Name: "out-dir", Usage: "with --config: resolve the config's output inside `DIR` (an existing folder) instead of the config's folder"},
			&cli.BoolFlag{Name: "progress", Usage: "show a progress bar on stderr even when it is not a terminal"},
		), alignFlags()...),
		Action: mergeAction,
	})
}

// floatList parses "a,b,c" (empty: nil).
func floatList(flag, s string) ([]float64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			return nil, usagef("--%s: %q is not a number", flag, f)
		}
		out = append(out, v)
	}
	return out, nil
}

// mergeSpec is what a merge needs after flags and config are combined.
type mergeSpec struct {
	opt        merge.Options
	base       string
	models     []string
	fishers    []string
	fisherData []string // datasets to compute the Fisher on: one for all models, or one per model
	// stack is a passthrough config's layer stack (then opt is unused).
	stack []merge.StackSlice
	// dtype is the output's weight type from the config ("fp16", "bf16"
	// or "": unchanged).
	dtype string
}

// mergeSpecFrom combines --config and the flags (flags win).
func mergeSpecFrom(c *cli.Context) (*mergeSpec, error) {
	s := &mergeSpec{}
	if p := c.String("config"); p != "" {
		if c.NArg() > 0 {
			return nil, usagef("with --config the models come from the file; got %d model arguments too", c.NArg())
		}
		outDir, err := outDirFlag(c)
		if err != nil {
			return nil, err
		}
		cfg, err := merge.LoadConfig(p, merge.WithOutDir(outDir))
		if err != nil {
			return nil, usagef("%v", err)
		}
		s.base, s.models, s.stack, s.dtype = cfg.Base, cfg.Paths(), cfg.Stack(), cfg.OutputDtype()
		if s.stack == nil {
			if s.opt, err = cfg.Options(); err != nil {
				return nil, usagef("%s: %v", p, err)
			}
		}
		for _, n := range cfg.Notes {
			fmt.Fprintf(os.Stderr, "merge: note: %s\n", n)
		}
		if s.fishers, err = cfg.FisherPaths(); err != nil {
			return nil, usagef("%s: %v", p, err)
		}
		for flag, v := range map[string]string{"o": cfg.Output, "data": cfg.Data, "gate": cfg.Gate} {
			if v != "" && !c.IsSet(flag) {
				if err := c.Set(flag, v); err != nil {
					return nil, err
				}
			}
		}
		if s.stack != nil {
			for _, f := range []string{"method", "param", "base", "weights", "density", "lambda", "trim-scope", "t", "fisher", "fisher-data",
				"fisher-floor", "fisher-normalize", "no-normalize", "include", "exclude", "align", "calib", "seed"} {
				if c.IsSet(f) {
					return nil, usagef("--%s does not apply to a passthrough config (it copies layers, it merges no weights)", f)
				}
			}
			return s, nil
		}
	} else {
		if c.IsSet("out-dir") {
			return nil, usagef("--out-dir applies to --config only (-o names the output)")
		}
		for _, p := range c.Args().Slice() {
			s.models = append(s.models, merge.ModelPath(p))
		}
		if !c.IsSet("method") {
			return nil, usagef("--method is required (%s) unless --config is given", methodNames())
		}
	}
	if c.IsSet("method") {
		if _, _, err := checkParams(c, merge.Command); err != nil {
			return nil, err
		}
	} else if err := merge.Command.CheckValues(paramValues(c, merge.Command)); err != nil {
		return nil, usageError{strings.TrimPrefix(err.Error(), transform.ErrValue.Error()+": ")}
	}
	var err error
	if c.IsSet("method") {
		if s.opt.Method, err = merge.ParseMethod(c.String("method")); err != nil {
			return nil, usagef("%v", err)
		}
	}
	for _, kv := range c.StringSlice("param") {
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, usagef("--param %q: want NAME=VALUE", kv)
		}
		if err := s.opt.SetParam(name, value); err != nil {
			return nil, usagef("--param: %v", strings.TrimPrefix(err.Error(), "merge: invalid options: "))
		}
	}
	if c.IsSet("base") {
		s.base = merge.ModelPath(c.String("base"))
	}
	if c.IsSet("weights") {
		if s.opt.Weights, err = floatList("weights", c.String("weights")); err != nil {
			return nil, err
		}
		if len(s.opt.Weights) == 1 && len(s.models) > 1 {
			w := s.opt.Weights[0]
			s.opt.Weights = nil
			for range s.models {
				s.opt.Weights = append(s.opt.Weights, w)
			}
		}
	}
	if c.IsSet("density") {
		d, err := floatList("density", c.String("density"))
		if err != nil {
			return nil, err
		}
		s.opt.Densities = nil
		if len(d) == 1 {
			if d[0] == 0 {
				return nil, usagef("--density = 0 is outside (0, 1]")
			}
			s.opt.Density = d[0]
		} else {
			s.opt.Densities = d
		}
	}
	if c.IsSet("lambda") || s.opt.Lambda == nil {
		l := c.Float64("lambda")
		s.opt.Lambda = &l
	}
	if c.IsSet("trim-scope") || s.opt.TrimScope == "" {
		s.opt.TrimScope = merge.TrimScope(c.String("trim-scope"))
	}
	if c.IsSet("t") {
		t := c.Float64("t")
		s.opt.T = &t
	}
	if c.IsSet("seed") {
		s.opt.Seed = c.Int64("seed")
	}
	if c.IsSet("fisher-floor") || s.opt.FisherFloor == 0 {
		s.opt.FisherFloor = c.Float64("fisher-floor")
	}
	if c.IsSet("fisher-normalize") {
		s.opt.FisherNormalize = c.Bool("fisher-normalize")
	}
	if c.IsSet("no-normalize") {
		s.opt.NoNormalize = c.Bool("no-normalize")
	}
	for _, f := range []struct {
		flag string
		dst  **regexp.Regexp
	}{{"include", &s.opt.Include}, {"exclude", &s.opt.Exclude}} {
		if c.IsSet(f.flag) {
			r, err := regexp.Compile(c.String(f.flag))
			if err != nil {
				return nil, usagef("--%s: %v", f.flag, err)
			}
			*f.dst = r
		}
	}
	if c.IsSet("fisher") {
		s.fishers = strings.Split(c.String("fisher"), ",")
	}
	if c.IsSet("fisher-data") {
		s.fisherData = strings.Split(c.String("fisher-data"), ",")
	}
	if len(s.models) == 0 {
		return nil, usagef("no models to merge: give MODEL... or --config")
	}
	switch {
	case s.opt.Method != merge.Fisher && (len(s.fishers) > 0 || len(s.fisherData) > 0):
		return nil, usagef("--fisher and --fisher-data are only used by --method fisher")
	case s.opt.Method == merge.Fisher && len(s.fishers) > 0 && len(s.fisherData) > 0:
		return nil, usagef("give either --fisher files or --fisher-data datasets, not both")
	case s.opt.Method == merge.Fisher && len(s.fisherData) > 0:
		if len(s.fisherData) != 1 && len(s.fisherData) != len(s.models) {
			return nil, usagef("--fisher-data takes one dataset or one per model (%d models, %d datasets)", len(s.models), len(s.fisherData))
		}
	case s.opt.Method == merge.Fisher && len(s.fishers) != len(s.models):
		return nil, usagef("fisher merging needs --fisher with one file per model or --fisher-data (%d models, %d files)", len(s.models), len(s.fishers))
	}
	if err := s.opt.Validate(len(s.models), s.base != ""); err != nil {
		return nil, usagef("%v", strings.TrimPrefix(err.Error(), "merge: invalid options: "))
	}
	return s, nil
}

// loadModels loads model files, naming the file in errors
// (merge.LoadModels).
func loadModels(paths []string) ([]*onnxio.Model, error) { return merge.LoadModels(paths) }

// mergeReady prepares loaded models for merging (merge.Prepare).
func mergeReady(models []*onnxio.Model, paths []string) error { return merge.Prepare(models, paths) }

func mergeAction(c *cli.Context) error {
	s, err := mergeSpecFrom(c)
	if err != nil {
		return err
	}
	if c.String("o") == "" {
		return usagef("-o OUT.onnx is required")
	}
	if c.String("gate") != "" && c.String("data") == "" {
		return usagef("--gate needs --data to evaluate the candidate")
	}
	if s.stack != nil {
		return stackAction(c, s)
	}
	if err := checkAlignFlags(c, len(s.fishers) > 0); err != nil {
		return err
	}
	// the inputs are hashed for provenance in the background while they
	// are merged; inputSources waits for the digests
	in, inputSources, err := merge.OpenInputs(s.base, s.models)
	if err != nil {
		return err
	}
	var srcs []merge.Source // other inputs (calibration, Fisher files and data)
	alignRows, err := alignModels(c, &in, s.models)
	if err != nil {
		return err
	}
	if c.String("align") == "activations" {
		cs, err := merge.Sources("calib", []string{c.String("calib")}, nil)
		if err != nil {
			return err
		}
		srcs = append(srcs, cs...)
	}
	if len(s.fishers) > 0 {
		if in.Fishers, err = loadModels(s.fishers); err != nil {
			return err
		}
		fs, err := merge.Sources("fisher", s.fishers, in.Fishers)
		if err != nil {
			return err
		}
		srcs = append(srcs, fs...)
	}
	if len(s.fisherData) > 0 {
		so, err := sessionOptions(c)
		if err != nil {
			return err
		}
		for i, m := range in.Models {
			dp := s.fisherData[0]
			if len(s.fisherData) > 1 {
				dp = s.fisherData[i]
			}
			ds, err := loadDatasetFor(dp, valueNames(m.Inputs()))
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "merge: computing the diagonal Fisher of %s on %s\n", s.models[i], dp)
			fm, _, err := fisher.FromData(c.Context, m, s.models[i], ds, fisher.Options{Session: so, Seed: c.Int64("seed")})
			if err != nil {
				return fmt.Errorf("Fisher of %s on %s: %w", s.models[i], dp, err)
			}
			in.Fishers = append(in.Fishers, fm)
			ds2, err := merge.Sources("fisher-data", []string{dp}, nil)
			if err != nil {
				return err
			}
			srcs = append(srcs, ds2...)
		}
	}
	ctx := c.Context
	bar := newProgressBar(c.Bool("progress"))
	mg, err := merge.New(ctx, in, s.opt, bar.update)
	if err != nil {
		bar.stop()
		return err
	}
	defer mg.Close()
	out := mg.Output()
	report := map[string]any{
		"method":         string(s.opt.Method),
		"merge_params":   s.opt.Params(),
		"merged_tensors": len(mg.Plan()),
		"merged_params":  mg.Elements(),
	}
	// provenance records the inputs' digests in out and the report
	provenance := func(out *onnxio.Model) error {
		ins, err := inputSources()
		if err != nil {
			return err
		}
		all := append(ins, srcs...)
		report["inputs"] = all
		return merge.SetProvenance(out, &s.opt, all)
	}
	if th := mg.Thresholds(); th != nil {
		report["trim_thresholds"] = th
	}
	if alignRows != nil {
		report["alignment"] = alignRows
		out.SetMetadata("onnxpost.align", c.String("align"))
	}
	ref := in.Base
	if ref == nil {
		ref = in.Models[0]
	}
	stopTicker := bar.watch("merge", mg.Done, mg.Elements())
	if c.String("data") == "" && s.dtype == "" {
		return saveStreaming(c, mg, out, report, provenance, stopTicker)
	}
	cand, err := mg.Model(ctx, out)
	stopTicker()
	if err != nil {
		return err
	}
	if err := provenance(cand); err != nil {
		return err
	}
	if cand, err = convertDtype(c, cand, s.dtype, report); err != nil {
		return err
	}
	if c.String("data") != "" {
		if err := evalInputs(c, s.models, in.Models, report); err != nil {
			return err
		}
	}
	return finish(c, cand, ref, report)
}

// stackAction runs a passthrough config: the slices' layers stacked into
// one model (merge.Stack), converted to the config's dtype, evaluated
// and gated like a merge.
func stackAction(c *cli.Context, s *mergeSpec) error {
	models, err := loadModels(s.models)
	if err != nil {
		return err
	}
	if err := mergeReady(models, s.models); err != nil {
		return err
	}
	srcs, err := merge.Sources("model", s.models, models)
	if err != nil {
		return err
	}
	cand, err := merge.Stack(models, s.models, s.stack)
	if err != nil {
		return err
	}
	var slices []map[string]any
	for _, sl := range s.stack {
		slices = append(slices, map[string]any{"model": s.models[sl.Model], "layer_range": []int{sl.Start, sl.End}})
	}
	report := map[string]any{"method": "passthrough", "slices": slices, "inputs": srcs}
	pb, err := json.Marshal(map[string]any{"slices": slices})
	if err != nil {
		return err
	}
	sb, err := json.Marshal(srcs)
	if err != nil {
		return err
	}
	cand.SetMetadata(merge.MetaMethod, "passthrough")
	cand.SetMetadata(merge.MetaParams, string(pb))
	cand.SetMetadata(merge.MetaInputs, string(sb))
	if cand, err = convertDtype(c, cand, s.dtype, report); err != nil {
		return err
	}
	if c.String("data") != "" {
		if err := evalInputs(c, s.models, models, report); err != nil {
			return err
		}
	}
	return finish(c, cand, models[s.stack[0].Model], report)
}

// convertDtype converts m's weights to a config's dtype with quant's
// fp16/bf16 conversion ("" leaves m as it is) and records it in the report.
func convertDtype(c *cli.Context, m *onnxio.Model, dtype string, report map[string]any) (*onnxio.Model, error) {
	if dtype == "" {
		return m, nil
	}
	out, rep, err := quant.Quantize(c.Context, m, quant.Options{Weights: dtype})
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

// evalInputs evaluates every input model alone on --data, so the report
// shows the merge beside its inputs.
func evalInputs(c *cli.Context, paths []string, models []*onnxio.Model, report map[string]any) error {
	so, err := sessionOptions(c)
	if err != nil {
		return err
	}
	ds, err := loadDataset(c, "data")
	if err != nil || ds == nil {
		return err
	}
	var rows []map[string]any
	for i, m := range models {
		eo, err := evalOptions(c, nil)
		if err != nil {
			return err
		}
		eo.NoDefaultLatency = true
		r, err := evalharness.EvaluateModels(c.Context, m, nil, ds, so, eo)
		if err != nil {
			return fmt.Errorf("evaluating %s: %w", paths[i], err)
		}
		rows = append(rows, map[string]any{"model": paths[i], "metrics": r.Metrics})
	}
	report["input_metrics"] = rows
	return nil
}

// saveStreaming writes the merge without evaluating it (no --data): the
// tensors are merged as the output is written, so only a few tensors are in
// memory at once. It records the same provenance and prints the same
// result as finish; the provenance (provenance, then the command's) is
// recorded once the tensors are written, since the inputs' digests are
// computed while they are merged.
func saveStreaming(c *cli.Context, mg *merge.Merger, out *onnxio.Model, report map[string]any, provenance func(*onnxio.Model) error, stopProgress func()) error {
	path := c.String("o")
	so := &onnxio.SaveOptions{Finish: func(out *onnxio.Model) error {
		if err := provenance(out); err != nil {
			return err
		}
		prov, err := cliProvenance(c)
		if err != nil {
			return err
		}
		return prov.Record(out)
	}}
	if c.Bool("external-data") {
		so.External = onnxio.ExternalAlways
	}
	rep, err := prepareReport(c.String("report"))
	if err != nil {
		stopProgress()
		return err
	}
	defer rep.Abort()
	err = mg.Save(c.Context, out, path, so)
	stopProgress()
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	res := &evalharness.Result{Model: path, Metrics: map[string]float64{}, Bytes: fileBytes(path, so)}
	if n, err := modelParams(out); err == nil {
		res.Params = n
	}
	doc, err := resultJSON(c.Command.Name, res, path, true, path, report)
	if err != nil {
		return err
	}
	return publish(c, rep, res, doc, true, path, path)
}

// progressBar draws a one-line progress bar on stderr when it is a
// terminal (or when forced); otherwise it does nothing.
type progressBar struct {
	on    bool
	mu    sync.Mutex
	last  time.Time
	stage string
}

func newProgressBar(force bool) *progressBar {
	on := force
	if st, err := os.Stderr.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
		on = true
	}
	return &progressBar{on: on}
}

// update draws stage at done/total, at most every 100 ms.
func (b *progressBar) update(stage string, done, total int64) {
	if !b.on || total <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if stage != b.stage {
		if b.stage != "" {
			fmt.Fprintln(os.Stderr)
		}
		b.stage = stage
	} else if time.Since(b.last) < 100*time.Millisecond && done < total {
		return
	}
	b.last = time.Now()
	const width = 30
	f := float64(done) / float64(total)
	f = min(max(f, 0), 1)
	n := int(f * width)
	fmt.Fprintf(os.Stderr, "\r%-12s [%s%s] %5.1f%%", stage, strings.Repeat("#", n), strings.Repeat(".", width-n), 100*f)
}

// watch polls done() every 200 ms until the returned function is called.
func (b *progressBar) watch(stage string, done func() int64, total int64) func() {
	if !b.on {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-quit:
				b.update(stage, total, total)
				b.stop()
				return
			case <-t.C:
				b.update(stage, done(), total)
			}
		}
	}()
	return func() { close(quit); wg.Wait() }
}

// stop ends the bar's line.
func (b *progressBar) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.on && b.stage != "" {
		fmt.Fprintln(os.Stderr)
		b.stage = ""
	}
}

// methodNames lists every --method value.
func methodNames() string {
	names := make([]string, len(merge.Methods))
	for i, m := range merge.Methods {
		names[i] = string(m)
	}
	return strings.Join(names, ", ")
}

// mergekitMethodHelp lists the mergekit methods with their definitions
// and parameters, for onnxpost help merge.
func mergekitMethodHelp() string {
	var b strings.Builder
	for _, m := range merge.Methods {
		if m.Doc() == "" {
			continue
		}
		fmt.Fprintf(&b, "  %-16s %s\n", m, m.Doc())
		var ps []string
		for _, p := range m.Params() {
			d := p.Default
			if d == "" {
				d = "required"
			}
			scope := ""
			if p.PerModel {
				scope = " per model"
			}
			ps = append(ps, fmt.Sprintf("%s=%s%s", p.Name, d, scope))
		}
		if len(ps) > 0 {
			fmt.Fprintf(&b, "  %-16s   parameters: %s\n", "", strings.Join(ps, ", "))
		}
	}
	return b.String()
}
