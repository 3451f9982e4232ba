package main

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/fisher"
	"github.com/onnxpost/onnxpost/merge"
	"github.com/onnxpost/onnxpost/onnxio"
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

Methods (docs/ARCHITECTURE.md §5):
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
Not supported: passthrough (layer stacking), ram, ramplus_tl.

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
[{filter: mlp, value: 0.5}, {value: 0}], dtype, tokenizer_source) plus
onnxpost's output, data and gate; unknown keys and parameters a method does not
take are refused by name. Model paths are .onnx files or folders holding
model.onnx. Flags given on the command line override its values. Its paths are relative to its
folder; its output must stay inside that folder, or inside --out-dir DIR
(no absolute path, "..", or symbolic link leaving it), and it cannot set
ort-lib or threads.
%s`, mergekitMethodHelp(), alignHelp),
		Flags: append(append(commonFlags(),
			&cli.StringFlag{Name: "method", Usage: "merge `METHOD`: linear, task-arithmetic, ties, dare, dare-ties, slerp, fisher, or one of mergekit's (model_stock, della, ...; see above)"},
			&cli.StringSliceFlag{Name: "param", Usage: "set the method's parameter `NAME=VALUE` (mergekit's names, e.g. gamma=0.05, rescale=false; repeatable)"},
			&cli.StringFlag{Name: "base", Usage: "the pre-trained model `BASE.onnx` deltas are taken from"},
			&cli.StringFlag{Name: "weights", Usage: "per-model weights `W1,W2,...` (default all 1)"},
			&cli.StringFlag{Name: "density", Usage: "fraction `D` of each delta kept, or D1,D2,... per model (TIES default 0.2, DARE 0.5)"},
			&cli.Float64Flag{Name: "lambda", Value: 1, Usage: "scale `L` of the merged delta"},
			&cli.StringFlag{Name: "trim-scope", Value: "global", Usage: "TIES trim `SCOPE`: global (the paper's) or tensor (mergekit's)"},
			&cli.Float64Flag{Name: "t", Usage: "SLERP interpolation parameter `T` in [0,1] (0: first model)"},
			&cli.StringFlag{Name: "fisher", Usage: "diagonal Fisher files `F1,F2,...`, one per model (ONNX files whose initializers are named and shaped like the model's)"},
			&cli.StringFlag{Name: "fisher-data", Usage: "compute each model's diagonal Fisher on `DATASET` (one for all models, or D1,D2,... one per model: each model's own task data works best)"},
			&cli.Float64Flag{Name: "fisher-floor", Value: merge.DefaultFisherFloor, Usage: "floor `F` applied to Fisher values"},
			&cli.BoolFlag{Name: "fisher-normalize", Usage: "divide each model's coefficient by the L2 norm of its Fisher"},
			&cli.BoolFlag{Name: "no-normalize", Usage: "linear: weighted sum instead of weighted average"},
			&cli.StringFlag{Name: "include", Usage: "merge only tensors whose name matches `REGEX`"},
			&cli.StringFlag{Name: "exclude", Usage: "do not merge tensors whose name matches `REGEX` (they keep the base's or first model's values)"},
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
		if s.opt, err = cfg.Options(); err != nil {
			return nil, usagef("%s: %v", p, err)
		}
		s.base, s.models = cfg.Base, cfg.Paths()
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

// loadModels loads model files, naming the file in errors.
func loadModels(paths []string) ([]*onnxio.Model, error) {
	out := make([]*onnxio.Model, len(paths))
	for i, p := range paths {
		m, err := onnxio.Load(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("model %s does not exist", p)
			}
			return nil, fmt.Errorf("loading %s: %w", p, err)
		}
		out[i] = m
	}
	return out, nil
}

// mergeReady prepares loaded models for merging, which reads main-graph
// initializers: weights held in Constant nodes are folded into initializers,
// sparse initializers made dense and initializers of If/Loop/Scan
// subgraphs moved to the main graph (onnxio.Model.HoistWeight), in every
// model alike, so the structural pairing still holds. Float weights that
// cannot be moved (Constant nodes inside subgraphs, a name used twice) are
// refused by name, since merging would silently keep the template's values
// for them.
func mergeReady(models []*onnxio.Model, paths []string) error {
	for i, m := range models {
		ws, err := m.AllWeights()
		if err != nil {
			return err
		}
		var held []string
		for _, w := range ws {
			if w.Stored == "" || !w.DType.IsFloat() {
				continue
			}
			if err := m.HoistWeight(w); err != nil {
				held = append(held, fmt.Sprintf("%s (%s)", displayName(w.Name), displayName(w.Stored)))
			}
		}
		if len(held) > 0 {
			return fmt.Errorf("%s holds weights in subgraphs, which merge does not merge (it would keep one model's values): %s", paths[i], strings.Join(held, ", "))
		}
		if _, err := m.FoldConstantWeights(); err != nil {
			return fmt.Errorf("%s: %w", paths[i], err)
		}
		if _, err := m.DensifySparseInitializers(); err != nil {
			return fmt.Errorf("%s: %w", paths[i], err)
		}
	}
	return nil
}

// sources hashes the input files for provenance.
// models, when not nil, are the loaded models of paths: their external
// data files are hashed too. The files are hashed concurrently (one
// worker per CPU): hashing gigabytes of external data is otherwise a
// sequential pass as long as the merge itself.
func sources(role string, paths []string, models []*onnxio.Model) ([]merge.Source, error) {
	out := make([]merge.Source, len(paths))
	type job struct {
		src  int
		loc  string // "" for the model file itself
		path string
	}
	var jobs []job
	for i, p := range paths {
		out[i] = merge.Source{Role: role, Path: p}
		jobs = append(jobs, job{i, "", p})
		if models != nil {
			locs, files, err := models[i].ExternalFiles()
			if err != nil {
				return nil, err
			}
			for k, f := range files {
				jobs = append(jobs, job{i, locs[k], f})
			}
		}
	}
	sums := make([]string, len(jobs))
	errs := make([]error, len(jobs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range next {
				sums[k], errs[k] = merge.FileSHA256(jobs[k].path)
			}
		}()
	}
	for k := range jobs {
		next <- k
	}
	close(next)
	wg.Wait()
	for k, j := range jobs {
		if errs[k] != nil {
			return nil, errs[k]
		}
		if j.loc == "" {
			out[j.src].SHA256 = sums[k]
			continue
		}
		if out[j.src].Data == nil {
			out[j.src].Data = map[string]string{}
		}
		out[j.src].Data[j.loc] = sums[k]
	}
	return out, nil
}

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
	if err := checkAlignFlags(c, len(s.fishers) > 0); err != nil {
		return err
	}
	in := merge.Inputs{}
	var srcs []merge.Source
	if s.base != "" {
		bs, err := loadModels([]string{s.base})
		if err != nil {
			return err
		}
		if err := mergeReady(bs, []string{s.base}); err != nil {
			return err
		}
		in.Base = bs[0]
		in.Labels = append(in.Labels, s.base)
		if srcs, err = sources("base", []string{s.base}, bs); err != nil {
			return err
		}
	}
	if in.Models, err = loadModels(s.models); err != nil {
		return err
	}
	if err := mergeReady(in.Models, s.models); err != nil {
		return err
	}
	in.Labels = append(in.Labels, s.models...)
	ms, err := sources("model", s.models, in.Models)
	if err != nil {
		return err
	}
	srcs = append(srcs, ms...)
	alignRows, err := alignModels(c, &in, s.models)
	if err != nil {
		return err
	}
	if c.String("align") == "activations" {
		cs, err := sources("calib", []string{c.String("calib")}, nil)
		if err != nil {
			return err
		}
		srcs = append(srcs, cs...)
	}
	if len(s.fishers) > 0 {
		if in.Fishers, err = loadModels(s.fishers); err != nil {
			return err
		}
		fs, err := sources("fisher", s.fishers, in.Fishers)
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
			ds2, err := sources("fisher-data", []string{dp}, nil)
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
	if err := merge.SetProvenance(out, &s.opt, srcs); err != nil {
		bar.stop()
		return err
	}
	report := map[string]any{
		"method":         string(s.opt.Method),
		"merge_params":   s.opt.Params(),
		"merged_tensors": len(mg.Plan()),
		"merged_params":  mg.Elements(),
		"inputs":         srcs,
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
	if c.String("data") == "" {
		return saveStreaming(c, mg, out, report, stopTicker)
	}
	cand, err := mg.Model(ctx, out)
	stopTicker()
	if err != nil {
		return err
	}
	if err := evalInputs(c, s.models, in.Models, report); err != nil {
		return err
	}
	return finish(c, cand, ref, report)
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
// result as finish.
func saveStreaming(c *cli.Context, mg *merge.Merger, out *onnxio.Model, report map[string]any, stopProgress func()) error {
	path := c.String("o")
	out.SetMetadata("onnxpost.version", version)
	out.SetMetadata("onnxpost.command", strings.Join(append([]string{"onnxpost", c.Command.Name}, c.Args().Slice()...), " "))
	so := &onnxio.SaveOptions{}
	if c.Bool("external-data") {
		so.External = onnxio.ExternalAlways
	}
	rep, err := prepareReport(c.String("report"))
	if err != nil {
		stopProgress()
		return err
	}
	defer rep.abort()
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
