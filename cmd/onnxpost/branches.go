package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/onnxio"
)

// branchCommands are the transforming commands that take If-merged
// decoders (Optimum's merged layout) by transforming each branch as a
// plain model.
var branchCommands = map[string]bool{"quantize": true, "sparsify": true, "lowrank": true, "search": true, "merge": true}

// branchDropFlags are the flags of the outer command that the branch runs
// do not take: the evaluation, gate, report and output belong to the
// joined model.
var branchDropFlags = map[string]bool{"data": true, "gate": true, "report": true, "json": true, "keep-rejected": true, "o": true, "output": true}

// branchRefusedFlags write per-branch files that have no joined
// counterpart.
var branchRefusedFlags = map[string]bool{"baselines": true, "plots": true}

type rawArgsKey struct{}

// branchRunKey marks the context of a branch run (no further splitting).
type branchRunKey struct{}

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
// one, and the command runs once per branch on the branch lifted into a
// plain model (onnxio.LiftBranches: the graph inputs it reads, the weights,
// its nodes), with the same flags but without --data, --gate, --report,
// --json and -o; calibration data therefore flows through that branch
// exactly as through a plain decoder (a cache branch gets empty past
// key/values, as the evaluation feeds them). The transformed branches are
// joined back into the If (onnxio.JoinBranches: shared tensors must come
// out equal from both branches, or the command fails naming the tensor),
// and the joined model is evaluated, gated and written like any other
// candidate, against the input merged model.
func branchwise(action cli.ActionFunc) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.Context.Value(branchRunKey{}) != nil {
			return action(c)
		}
		paths := c.Args().Slice()
		if b := c.String("base"); c.Command.Name == "merge" && b != "" {
			paths = append(paths, b)
		}
		merged := map[string]*onnxio.Model{}
		for _, p := range paths {
			m, err := onnxio.LoadLazy(p)
			if err != nil {
				return action(c) // the command reports it
			}
			if _, ok := m.IfMerged(); ok {
				merged[p] = nil
			}
		}
		if len(merged) == 0 {
			return action(c)
		}
		if len(merged) != len(uniq(paths)) {
			return fmt.Errorf("%s: an If-merged decoder cannot be combined with plain models (%d of %d models are merged decoders)", c.Command.Name, len(merged), len(uniq(paths)))
		}
		return runBranches(c, paths, merged)
	}
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// runBranches is branchwise's work for the merged models in paths.
func runBranches(c *cli.Context, paths []string, merged map[string]*onnxio.Model) error {
	raw, _ := c.Context.Value(rawArgsKey{}).([]string)
	if raw == nil {
		return fmt.Errorf("internal error: %s: the command line is not available for the branch runs", c.Command.Name)
	}
	for f := range branchRefusedFlags {
		if c.IsSet(f) {
			return usagef("--%s is not supported on an If-merged decoder", f)
		}
	}
	out := c.String("o")
	if out == "" {
		return usagef("-o OUT.onnx is required")
	}
	lifted := map[string][]onnxio.Branch{}
	var attrs []string
	for p := range merged {
		m, err := onnxio.Load(p)
		if err != nil {
			return fmt.Errorf("loading %s: %w", p, err)
		}
		merged[p] = m
		bs, err := m.LiftBranches()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		var names []string
		for _, b := range bs {
			names = append(names, b.Attr)
		}
		if attrs == nil {
			attrs = names
		} else if strings.Join(attrs, ",") != strings.Join(names, ",") {
			return fmt.Errorf("%s: its If has the branches %v, another model's %v", p, names, attrs)
		}
		lifted[p] = bs
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), ".onnxpost-branches-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(os.Stderr, "%s: If-merged decoder: transforming its branches (%s) as plain models, then joining them\n", c.Command.Name, strings.Join(attrs, ", "))
	var joined []onnxio.Branch
	reports := map[string]any{}
	for i, attr := range attrs {
		subst := map[string]string{}
		for j, p := range paths {
			if _, ok := subst[p]; ok {
				continue
			}
			bp := filepath.Join(tmp, fmt.Sprintf("model%d.%s.onnx", j, attr))
			if err := lifted[p][i].Model.Save(bp, &onnxio.SaveOptions{Context: c.Context}); err != nil {
				return fmt.Errorf("writing branch %s of %s: %w", attr, p, err)
			}
			subst[p] = bp
		}
		bout := filepath.Join(tmp, "out."+attr+".onnx")
		brep := filepath.Join(tmp, "report."+attr+".json")
		args, err := branchArgs(c, raw, subst, bout, brep)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "%s: branch %s\n", c.Command.Name, attr)
		ctx := context.WithValue(c.Context, branchRunKey{}, attr)
		if err := newApp().RunContext(ctx, args); err != nil {
			return fmt.Errorf("branch %s: %w", attr, err)
		}
		bm, err := onnxio.Load(bout)
		if err != nil {
			return fmt.Errorf("branch %s: %w", attr, err)
		}
		joined = append(joined, onnxio.Branch{Attr: attr, Model: bm})
		if b, err := os.ReadFile(brep); err == nil {
			var r map[string]any
			if json.Unmarshal(b, &r) == nil {
				delete(r, "metrics")
				delete(r, "reference")
				reports[attr] = r
			}
		}
	}
	ref := merged[paths[0]]
	if b := c.String("base"); c.Command.Name == "merge" && b != "" {
		ref = merged[b]
	}
	cand, err := ref.JoinBranches(joined)
	if err != nil {
		return err
	}
	return finish(c, cand, ref, map[string]any{"branches": reports})
}

// branchArgs returns the command line of one branch run: raw (the
// reordered command line) with every model path replaced by its branch
// file (subst), the flags of branchDropFlags removed, and -o bout --report
// brep added.
func branchArgs(c *cli.Context, raw []string, subst map[string]string, bout, brep string) ([]string, error) {
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
	out = append(out, "-o", bout, "--report", brep)
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
		drop := branchDropFlags[name]
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
