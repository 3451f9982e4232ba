package main

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/merge"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/pipeline"
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

// mergeSpecFrom combines --config and the flags (flags win;
// pipeline.MergeSpecFromFlags): the config's output, data and gate fill
// the flags -o, --data and --gate that are not given, and its notes are
// printed. In a branch run of merged decoders (runBranches) the models
// and base are replaced by their branch files instead, and the config's
// output, data, gate and notes are left to the outer run.
func mergeSpecFrom(c *cli.Context) (*pipeline.MergeSpec, error) {
	outDir := ""
	if c.String("config") != "" {
		d, err := outDirFlag(c)
		if err != nil {
			return nil, err
		}
		outDir = d
	}
	s, err := pipeline.MergeSpecFromFlags(c, c.Args().Slice(), outDir)
	if err != nil {
		return nil, err
	}
	if subst, ok := c.Context.Value(branchPathsKey{}).(map[string]string); ok {
		// a branch run of merged decoders (runBranches): the config's
		// models are the branch files; the output, data and gate are the
		// joined model's
		for i, p := range s.Models {
			if b, ok := subst[p]; ok {
				s.Models[i] = b
			}
		}
		if b, ok := subst[s.Base]; ok {
			s.Base = b
		}
		return s, nil
	}
	for _, n := range s.Notes {
		fmt.Fprintf(os.Stderr, "merge: note: %s\n", n)
	}
	for flag, v := range map[string]string{"o": s.Output, "data": s.Data, "gate": s.Gate} {
		if v != "" && !c.IsSet(flag) {
			if err := c.Set(flag, v); err != nil {
				return nil, err
			}
		}
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
	if s.Stack != nil {
		return stackAction(c, s)
	}
	if err := pipeline.CheckAlignFlags(c, len(s.Fishers) > 0); err != nil {
		return err
	}
	// the inputs are hashed for provenance in the background while they
	// are merged; inputSources waits for the digests
	in, inputSources, err := merge.OpenInputs(s.Base, s.Models)
	if err != nil {
		return err
	}
	var srcs []merge.Source // other inputs (calibration, Fisher files and data)
	so, err := sessionOptions(c)
	if err != nil {
		return err
	}
	alignRows, err := pipeline.AlignModels(c.Context, &in, s.Models, pipeline.AlignOptions{
		Mode: c.String("align"), Seed: c.Int64("seed"), Calib: c.String("calib"), Session: so, Log: os.Stderr})
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
	fs, err := pipeline.MergeFishers(c.Context, s, &in, c.Int64("seed"), so, os.Stderr)
	if err != nil {
		return err
	}
	srcs = append(srcs, fs...)
	ctx := c.Context
	bar := newProgressBar(c.Bool("progress"))
	mg, err := merge.New(ctx, in, s.Options, bar.update)
	if err != nil {
		bar.stop()
		return err
	}
	defer mg.Close()
	out := mg.Output()
	report := pipeline.MergeReport(mg, s.Options, nil, alignRows)
	// provenance records the inputs' digests in out and the report
	provenance := func(out *onnxio.Model) error {
		return pipeline.MergeProvenance(out, s.Options, inputSources, srcs, report)
	}
	if alignRows != nil {
		out.SetMetadata("onnxpost.align", c.String("align"))
	}
	ref := in.Base
	if ref == nil {
		ref = in.Models[0]
	}
	stopTicker := bar.watch("merge", mg.Done, mg.Elements())
	if c.String("data") == "" && s.Dtype == "" {
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
	if cand, err = pipeline.ConvertDtype(c.Context, cand, s.Dtype, report); err != nil {
		return err
	}
	if c.String("data") != "" {
		if err := evalInputs(c, s.Models, in.Models, report); err != nil {
			return err
		}
	}
	return finish(c, cand, ref, report)
}

// stackAction runs a passthrough config: the slices' layers stacked into
// one model (pipeline.StackMerge), converted to the config's dtype,
// evaluated and gated like a merge.
func stackAction(c *cli.Context, s *pipeline.MergeSpec) error {
	cand, ref, models, report, err := pipeline.StackMerge(s)
	if err != nil {
		return err
	}
	if cand, err = pipeline.ConvertDtype(c.Context, cand, s.Dtype, report); err != nil {
		return err
	}
	if c.String("data") != "" {
		if err := evalInputs(c, s.Models, models, report); err != nil {
			return err
		}
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
