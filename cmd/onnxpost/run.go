package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/internal/safefs"
	"github.com/onnxpost/onnxpost/pipeline"
)

func init() {
	register(&cli.Command{
		Name:      "run",
		Usage:     "run a recipe: a chain of commands with gates",
		ArgsUsage: "RECIPE.yaml",
		Description: `Runs the steps of a YAML recipe in order, each one an onnxpost command
whose keys are that command's flags, with a gate after any step. The whole
recipe is checked first (unknown keys, missing files, gates without data),
so a typo fails before any work. A step names one of the commands merge,
quantize, sparsify, lowrank, search, soup, fisher or eval; every step runs
in this process through the library (the transforms, and the entry points
these commands call), the model passed from step to step in memory
(written to workdir only when the recipe sets workdir). A step with data is
evaluated against its input and checked by its gate; an eval step measures
its input and hands it on, a fisher step hands on its Fisher model. A
step's failure exits as the command alone would (2 for a bad value or a
missing input, 1 for other errors, 3 for a failed gate). The last step's
model is committed like a command's output (release.Commit):
evaluated on data against ref when gate or output-report is set, gated by
gate, written to output only when every step and that gate passed, with
the chain's provenance in its metadata (tool version, SHA-256 of every
model the recipe reads, what each transform records) and its own report
at output-report. The recipe report (JSON and Markdown) is written in
every case.

  name: demo
  data: models/data/digits_union_test.npz
  output: out/demo.onnx
  report: out/demo.json
  ref: models/zoo/mlp/base.onnx
  gate: "accuracy_drop<=0.05"
  output-report: out/demo-output.json
  steps:
    - merge: {method: ties, base: models/zoo/mlp/base.onnx, density: 0.3,
              inputs: [models/zoo/mlp/ft_low.onnx, models/zoo/mlp/ft_high.onnx]}
      gate: "accuracy>=0.8"
    - search: {target: 0.5, calib: models/data/digits_union_val.npz}
      gate: "accuracy_drop<=0.05"

Paths are relative to the recipe's folder. Everything the recipe writes
(output, report and its .md/.png, output-report and its .md, workdir, and
step flags such as save-outputs or plots) must stay inside that folder, or
inside --out-dir DIR when given: absolute paths, ".." and symbolic links
that leave it are refused before anything runs (exit code 2). A recipe
cannot set ort-lib or threads above the limit (see SECURITY.md). The
recipe report records the recipe's SHA-256 and its validated form, not
its text.
Exit code 3 when a gate fails.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the recipe report as JSON on stdout"},
			&cli.BoolFlag{Name: "check", Usage: "only validate the recipe"},
			&cli.StringFlag{Name: "ort-lib", Usage: ortLibUsage + "; used by every step"},
			&cli.StringFlag{Name: "out-dir", Usage: "write the recipe's outputs inside `DIR` (an existing folder) instead of the recipe's folder"},
		},
		Action: runAction,
	})
}

// flagSpec lists the flags of each command a recipe step may name
// (pipeline.StepCommands), for recipe validation.
func flagSpec(name string) (map[string]bool, bool) {
	if !slices.Contains(pipeline.StepCommands(), name) {
		return nil, false
	}
	for _, c := range commands {
		if c.Name != name {
			continue
		}
		out := map[string]bool{}
		for _, f := range c.Flags {
			_, isBool := f.(*cli.BoolFlag)
			for _, n := range f.Names() {
				out[n] = isBool
			}
		}
		return out, true
	}
	return nil, false
}

func runAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("run takes one RECIPE.yaml argument")
	}
	path := c.Args().First()
	src, err := safefs.ReadConfig(path)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return err
	}
	outDir, err := outDirFlag(c)
	if err != nil {
		return err
	}
	r, err := pipeline.ParseRecipe(src, abs, flagSpec, pipeline.WithOutDir(outDir))
	if err != nil {
		return usageError{err.Error()}
	}
	if c.Bool("check") {
		fmt.Fprintf(os.Stderr, "recipe %s: %d steps, valid\n", path, len(r.Steps))
		return nil
	}
	if p := c.String("ort-lib"); p != "" {
		// the library is loaded once per process: every step uses it
		if err := evalharness.Init(p); err != nil {
			return err
		}
	}
	r.Session = evalharness.SessionOptions{Library: c.String("ort-lib")}
	r.Log = os.Stderr
	rep, err := r.Run(c.Context, nil, version)
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		fmt.Fprint(os.Stderr, pipeline.RecipeMarkdown(rep))
	}
	return err
}
