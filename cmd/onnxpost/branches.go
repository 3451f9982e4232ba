package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/fisher"
	"github.com/onnxpost/onnxpost/merge"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/pipeline"
	"github.com/onnxpost/onnxpost/transform"
)

// branchCommands are the transforming commands that take If-merged
// decoders (Optimum's merged layout) by transforming each branch as a
// plain model (search does so in the library: pipeline.Search).
var branchCommands = map[string]bool{"quantize": true, "sparsify": true, "lowrank": true, "merge": true}

// branchDropFlags are the flags of the outer command that the branch runs
// do not take: the evaluation, gate, report and output belong to the
// joined model.
var branchDropFlags = map[string]bool{"data": true, "gate": true, "report": true, "json": true, "keep-rejected": true, "o": true, "output": true}

type rawArgsKey struct{}

// branchRunKey marks the context of a branch run (no further splitting);
// its value is the branch's If attribute.
type branchRunKey struct{}

// branchStatsKey holds, in the context of the branch runs, the
// *sharedStats of the command's branch runs.
type branchStatsKey struct{}

// branchPathsKey holds, in the context of a branch run, the map from each
// model path of the command to its branch file: merge --config reads the
// models' paths from its file, which the branch run reads unchanged
// (mergeSpecFrom substitutes them).
type branchPathsKey struct{}

// sharedStats are calibration statistics captured by the branch run of
// the no-cache branch (base, transform.BaseBranch) and keyed by weight
// names only (transform.WeightKeyed), which the other branch runs take
// instead of capturing their own, as transform.Apply does.
type sharedStats struct {
	base  string
	stats any
}

// branchStats returns capture's statistics, or in a branch run those the
// no-cache branch's run captured when they are keyed by weight names
// only; the no-cache branch's run keeps such statistics for the others.
func branchStats[T any](c *cli.Context, capture func() (T, error)) (T, error) {
	h, _ := c.Context.Value(branchStatsKey{}).(*sharedStats)
	attr, _ := c.Context.Value(branchRunKey{}).(string)
	if h == nil || attr == "" {
		return capture()
	}
	if v, ok := h.stats.(T); ok && h.stats != nil {
		fmt.Fprintf(os.Stderr, "%s: branch %s: the calibration statistics of the %s (keyed by weight names)\n", c.Command.Name, attr, h.base)
		return v, nil
	}
	v, err := capture()
	if err == nil && attr == h.base {
		if wk, ok := any(v).(transform.WeightKeyed); ok && wk.WeightKeyed() {
			h.stats = v
		}
	}
	return v, err
}

var wrapOnce sync.Once

// wrapBranchCommands makes every command of branchCommands split If-merged
// models into their branches (branchwise).
func wrapBranchCommands() {
	wrapOnce.Do(func() {
		for _, c := range commands {
			if branchCommands[c.Name] && c.Action != nil {
				c.Action = branchwise(c.Action)
			}
		}
	})
}

// branchwise runs action as it is, unless a model argument of the command
// (a positional MODEL or --base) is an If-merged decoder (onnxio.IfMerged:
// one If whose branches are whole decoders reading the main graph's
// weights, as Optimum exports them). Then every model argument must be
// one, and the library's transform.RunBranches runs the command once per
// branch on the branch lifted into a plain model (runBranches), with the
// same flags but without --data, --gate, --report, --json and -o;
// calibration data therefore flows through that branch exactly as through
// a plain decoder (a cache branch gets empty past key/values, as the
// evaluation feeds them). The transformed branches are joined back into
// the If (shared tensors must come out equal from both branches, or the
// command fails naming the tensor), and the joined model is evaluated,
// gated and written like any other candidate, against the input merged
// model.
func branchwise(action cli.ActionFunc) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.Context.Value(branchRunKey{}) != nil {
			return action(c)
		}
		paths := c.Args().Slice()
		if b := c.String("base"); c.Command.Name == "merge" && b != "" {
			paths = append(paths, b)
		}
		if c.Command.Name == "merge" && c.String("config") != "" {
			// the config names the models
			outDir, err := outDirFlag(c)
			if err != nil {
				return action(c) // the command reports it
			}
			s, err := pipeline.MergeSpecFromFlags(c, c.Args().Slice(), outDir)
			if err != nil {
				return action(c)
			}
			paths = append(slices.Clone(s.Models), s.Base)
		}
		for _, p := range paths {
			if p == "" {
				continue
			}
			m, err := onnxio.LoadLazy(p)
			if err != nil {
				return action(c) // the command reports it
			}
			if _, ok := m.IfMerged(); ok {
				return runBranches(c, action)
			}
		}
		return action(c)
	}
}

// runBranches is branchwise's work: the models (positional, and --base of
// merge) are loaded and handed to the library's transform.RunBranches,
// whose branch runs are this command run again on the lifted branches
// (written to a temporary folder), with the same flags but without --data,
// --gate, --report, --json and -o. merge --fisher-data computes each
// model's Fisher once, on the branch the data takes (fisher.FromData on a
// merged decoder), and hands the files to both branch runs as --fisher.
func runBranches(c *cli.Context, action cli.ActionFunc) error {
	raw, _ := c.Context.Value(rawArgsKey{}).([]string)
	if raw == nil {
		return fmt.Errorf("internal error: %s: the command line is not available for the branch runs", c.Command.Name)
	}
	args := c.Args().Slice()
	base := c.String("base")
	if c.Command.Name != "merge" {
		base = ""
	}
	var spec *pipeline.MergeSpec
	if c.Command.Name == "merge" && c.String("config") != "" {
		// the config's models, base and output (its data and gate
		// evaluate the joined model)
		s, err := mergeSpecFrom(c)
		if err != nil {
			return err
		}
		args, base, spec = s.Models, s.Base, s
	}
	out := c.String("o")
	if out == "" {
		return usagef("-o OUT.onnx is required")
	}
	loaded := map[string]*onnxio.Model{}
	load := func(p string) (*onnxio.Model, error) {
		if m := loaded[p]; m != nil {
			return m, nil
		}
		m, err := onnxio.Load(p)
		if err != nil {
			return nil, fmt.Errorf("loading %s: %w", p, err)
		}
		loaded[p] = m
		return m, nil
	}
	var in transform.Input
	for _, p := range args {
		m, err := load(p)
		if err != nil {
			return err
		}
		in.Models = append(in.Models, m)
	}
	if base != "" {
		m, err := load(base)
		if err != nil {
			return err
		}
		in.Base = m
	}
	if len(in.Models) == 0 {
		return action(c) // the command reports what it misses
	}
	if _, err := transform.Merged(in); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), ".onnxpost-branches-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	drop := maps.Clone(branchDropFlags)
	var add []string
	var fisherFiles []string
	method, _ := merge.ParseMethod(c.String("method"))
	if spec != nil {
		method = spec.Options.Method
	}
	if c.Command.Name == "merge" && method == merge.Fisher && c.IsSet("fisher-data") && !c.IsSet("fisher") && (spec == nil || len(spec.Fishers) == 0) {
		// (other combinations are the branch runs' usage errors)
		files, err := branchFishers(c, in.Models, args, tmp)
		if err != nil {
			return err
		}
		drop["fisher-data"] = true
		add = append(add, "--fisher", strings.Join(files, ","))
		fisherFiles = files
	}
	fmt.Fprintf(os.Stderr, "%s: If-merged decoder: transforming its branches as plain models, then joining them\n", c.Command.Name)
	shared := &sharedStats{}
	if bs, err := in.Models[0].LiftBranches(); err == nil {
		if i := transform.BaseBranch(bs); i >= 0 {
			shared.base = bs[i].Attr
		}
	}
	branchFiles := map[string]string{} // a branch file → the model path it comes from
	cand, brep, err := transform.RunBranches(c.Context, in, func(ctx context.Context, attr string, bin transform.Input) (*onnxio.Model, any, error) {
		subst := map[string]string{}
		save := func(p string, m *onnxio.Model) error {
			if _, ok := subst[p]; ok {
				return nil
			}
			bp := filepath.Join(tmp, fmt.Sprintf("model%d.%s.onnx", len(subst), attr))
			if err := m.Save(bp, &onnxio.SaveOptions{Context: ctx}); err != nil {
				return fmt.Errorf("writing branch %s of %s: %w", attr, p, err)
			}
			subst[p] = bp
			branchFiles[bp] = p
			return nil
		}
		for j, p := range args {
			if err := save(p, bin.Models[j]); err != nil {
				return nil, nil, err
			}
		}
		if base != "" {
			if err := save(base, bin.Base); err != nil {
				return nil, nil, err
			}
		}
		bout := filepath.Join(tmp, "out."+attr+".onnx")
		brep := filepath.Join(tmp, "report."+attr+".json")
		bargs, err := branchArgs(c, raw, subst, drop, append([]string{"-o", bout, "--report", brep}, add...))
		if err != nil {
			return nil, nil, err
		}
		fmt.Fprintf(os.Stderr, "%s: branch %s\n", c.Command.Name, attr)
		bctx := context.WithValue(context.WithValue(ctx, branchRunKey{}, attr), branchStatsKey{}, shared)
		bctx = context.WithValue(bctx, branchPathsKey{}, subst)
		// a branch run records no provenance (cliProvenance: its command
		// line names temporary files); the joined model gets the command's
		if err := newApp().RunContext(bctx, bargs); err != nil {
			return nil, nil, err
		}
		bm, err := onnxio.Load(bout)
		if err != nil {
			return nil, nil, err
		}
		var r map[string]any
		if b, err := os.ReadFile(brep); err == nil && json.Unmarshal(b, &r) == nil {
			delete(r, "metrics")
			delete(r, "reference")
		}
		return bm, r, nil
	})
	if err != nil {
		return err
	}
	report := map[string]any{"branches": brep.Branches}
	if c.Command.Name == "merge" {
		srcs, err := mergeSources(cand, branchFiles, loaded, fisherFiles, c.String("fisher-data"))
		if err != nil {
			return err
		}
		if srcs != nil {
			report["inputs"] = srcs
			for _, r := range brep.Branches {
				if m, ok := r.(map[string]any); ok {
					delete(m, "inputs")
				}
			}
		}
	}
	ref := in.Models[0]
	if in.Base != nil {
		ref = in.Base
	}
	return finish(c, cand, ref, report)
}

// mergeSources rewrites the merge provenance (merge.MetaInputs) that the
// branch runs recorded on the joined model cand, which names their
// temporary files: a branch file (branchFiles) becomes the model file it
// was lifted from (loaded there), hashed; the Fisher files computed from
// --fisher-data for the branch runs (fisherFiles) become that data, as
// merge records --fisher-data of plain models. It returns the sources
// recorded (nil when cand holds none).
func mergeSources(cand *onnxio.Model, branchFiles map[string]string, loaded map[string]*onnxio.Model, fisherFiles []string, fisherData string) ([]merge.Source, error) {
	raw, ok := cand.Metadata()[merge.MetaInputs]
	if !ok {
		return nil, nil
	}
	var recorded []merge.Source
	if err := json.Unmarshal([]byte(raw), &recorded); err != nil {
		return nil, fmt.Errorf("internal error: merge provenance %q: %w", raw, err)
	}
	datas := strings.Split(fisherData, ",")
	computed := map[string]string{} // Fisher file → its data
	for i, f := range fisherFiles {
		computed[f] = datas[min(i, len(datas)-1)]
	}
	var out []merge.Source
	for _, src := range recorded {
		orig, isBranch := branchFiles[src.Path]
		data, isComputed := computed[src.Path]
		switch {
		case isBranch:
			ss, err := merge.Sources(src.Role, []string{orig}, []*onnxio.Model{loaded[orig]})
			if err != nil {
				return nil, err
			}
			out = append(out, ss...)
		case isComputed:
			ss, err := merge.Sources("fisher-data", []string{data}, nil)
			if err != nil {
				return nil, err
			}
			out = append(out, ss...)
		default:
			out = append(out, src)
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	cand.SetMetadata(merge.MetaInputs, string(b))
	return out, nil
}

// branchFishers computes, for merge --fisher-data on merged decoders, each
// model's diagonal Fisher on its dataset (fisher.FromData computes it on
// the branch the data takes; its tensors are the shared weights) and
// writes them to dir; it returns the files, one per model.
func branchFishers(c *cli.Context, models []*onnxio.Model, paths []string, dir string) ([]string, error) {
	datas := strings.Split(c.String("fisher-data"), ",")
	if len(datas) != 1 && len(datas) != len(models) {
		return nil, usagef("--fisher-data takes one dataset or one per model (%d models, %d datasets)", len(models), len(datas))
	}
	so, err := sessionOptions(c)
	if err != nil {
		return nil, err
	}
	var files []string
	for i, m := range models {
		dp := datas[0]
		if len(datas) > 1 {
			dp = datas[i]
		}
		ds, err := loadDatasetFor(dp, valueNames(m.Inputs()))
		if err != nil {
			return nil, err
		}
		fm, r, err := fisher.FromData(c.Context, m, paths[i], ds, fisher.Options{Session: so, Seed: c.Int64("seed")})
		if err != nil {
			return nil, fmt.Errorf("Fisher of %s on %s: %w", paths[i], dp, err)
		}
		fmt.Fprintf(os.Stderr, "merge: the diagonal Fisher of %s on %s (its %s, the branch the data takes)\n", paths[i], dp, r.Branch)
		f := filepath.Join(dir, fmt.Sprintf("fisher%d.onnx", i))
		if err := fm.Save(f, &onnxio.SaveOptions{Context: c.Context}); err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

// branchArgs returns the command line of one branch run: raw (the
// reordered command line) with every model path replaced by its branch
// file (subst), the flags named in drop removed, and add added after the
// command's name.
func branchArgs(c *cli.Context, raw []string, subst map[string]string, drop map[string]bool, add []string) ([]string, error) {
	ci := -1
	for i := 1; i < len(raw); i++ {
		if c.Command.HasName(raw[i]) {
			ci = i
			break
		}
	}
	if ci < 0 {
		return nil, fmt.Errorf("internal error: %s: command not found in its command line", c.Command.Name)
	}
	takesValue := map[string]bool{}
	for _, f := range c.Command.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			takesValue[n] = !isBool
		}
	}
	sub := func(s string) string {
		if r, ok := subst[s]; ok {
			return r
		}
		return s
	}
	out := append([]string{}, raw[:ci+1]...)
	out = append(out, add...)
	rest := raw[ci+1:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			out = append(out, "--")
			for _, p := range rest[i+1:] {
				out = append(out, sub(p))
			}
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			out = append(out, sub(a))
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		drop := drop[name]
		switch {
		case hasVal:
			if !drop {
				out = append(out, a[:len(a)-len(val)]+sub(val))
			}
		case takesValue[name] && i+1 < len(rest):
			if !drop {
				out = append(out, a, sub(rest[i+1]))
			}
			i++
		default:
			if !drop {
				out = append(out, a)
			}
		}
	}
	return out, nil
}
