package main

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/compress/search"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/pipeline"
)

func init() {
	register(&cli.Command{
		Name:      "search",
		Usage:     "EvoPress-style search of per-layer compression levels under an exact budget",
		ArgsUsage: "MODEL",
		Description: `Searches one compression level per layer so that the global budget is met
exactly and the mean KL divergence between the dense model's and the
candidate's outputs on calibration data is minimal (EvoPress: level-switch
mutation, (1+λ) selection over stages of growing random calibration
subsets, the parent rejoining only at the last stage).

Every layer (MatMul/Gemm/Conv weight) gets a ladder of levels whose adjacent
steps zero the same number of weights in every layer, so moving one layer up
and another down keeps the budget exact. Candidates run in one ONNX Runtime
session with the searched weights fed as inputs. The report compares the
searched allocation with the uniform one and a per-layer-error allocation at
the same budget.

  onnxpost search model.onnx --space sparsity --target 0.7 \
      --calib calib.npz --data test.npz -o pruned.onnx --report search.json

Spaces: sparsity (fraction of zeros over the searched layers' weights).
rank, bits and drop are not implemented yet.`,
		Flags: append(commonFlags(),
			&cli.StringFlag{Name: "space", Value: "sparsity", Usage: "what to search: sparsity"},
			&cli.Float64Flag{Name: "target", Usage: "budget: for sparsity, the fraction of zeros over the searched weights", Required: true},
			&cli.StringFlag{Name: "calib", Usage: "calibration `DATASET` for the KL fitness (required)"},
			&cli.IntFlag{Name: "generations", Value: 50, Usage: "generations of the (1+λ) loop"},
			&cli.IntFlag{Name: "offspring", Value: 16, Usage: "offspring λ per generation"},
			&cli.StringFlag{Name: "selection", Value: "4:1", Usage: "survivors per stage, `A:B:...:1`"},
			&cli.StringFlag{Name: "tokens", Value: "32:256", Usage: "calibration samples per stage, `A:B:...` (one per selection stage)"},
			&cli.IntFlag{Name: "levels", Value: 8, Usage: "ladder steps on each side of the uniform level"},
			&cli.StringFlag{Name: "method", Value: "magnitude", Usage: "how each level is pruned: magnitude"},
			&cli.StringFlag{Name: "include", Usage: "only layers whose weight or node name matches `REGEX`"},
			&cli.StringFlag{Name: "exclude", Usage: "skip layers whose weight or node name matches `REGEX`"},
			&cli.StringFlag{Name: "cache-dir", Value: defaultCacheDir(), Usage: "level database cache `DIR` (\"\" for none)"},
			&cli.StringFlag{Name: "plots", Usage: "write PNG plots (fitness, levels) into `DIR`"},
		),
		Action: searchAction,
	})
}

func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "onnxpost", "levels")
	}
	return ""
}

func parseInts(flag, s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ":") {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || v <= 0 {
			return nil, usagef("--%s: %q is not a list of positive integers A:B:...", flag, s)
		}
		out = append(out, v)
	}
	return out, nil
}

func optRegexp(c *cli.Context, flag string) (*regexp.Regexp, error) {
	s := c.String(flag)
	if s == "" {
		return nil, nil
	}
	re, err := regexp.Compile(s)
	if err != nil {
		return nil, usagef("--%s: %v", flag, err)
	}
	return re, nil
}

func searchAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("search takes one MODEL argument")
	}
	if c.String("o") == "" {
		return usagef("-o OUT.onnx is required")
	}
	if c.String("space") != "sparsity" {
		return usagef("--space %q is not implemented; use --space sparsity", c.String("space"))
	}
	if c.String("calib") == "" {
		return usagef("search needs --calib DATASET (the KL fitness runs on it)")
	}
	t := c.Float64("target")
	if !(t > 0 && t < 1) {
		return usagef("--target %v: a sparsity target is a fraction of zeros in (0, 1)", t)
	}
	if c.String("method") != "magnitude" {
		return usagef("--method %q: only magnitude levels are implemented", c.String("method"))
	}
	sel, err := parseInts("selection", c.String("selection"))
	if err != nil {
		return err
	}
	tok, err := parseInts("tokens", c.String("tokens"))
	if err != nil {
		return err
	}
	if len(sel) != len(tok) {
		return usagef("--selection has %d stages but --tokens %d", len(sel), len(tok))
	}
	if sel[len(sel)-1] != 1 {
		return usagef("--selection must end with 1 survivor")
	}
	inc, err := optRegexp(c, "include")
	if err != nil {
		return err
	}
	exc, err := optRegexp(c, "exclude")
	if err != nil {
		return err
	}
	so, err := sessionOptions(c)
	if err != nil {
		return err
	}
	m, err := onnxio.Load(c.Args().First())
	if err != nil {
		return err
	}
	calib, err := loadDataset(c, "calib")
	if err != nil {
		return err
	}
	opt := pipeline.SparsitySearch{
		Target: t, Levels: c.Int("levels"), Include: inc, Exclude: exc, CacheDir: c.String("cache-dir"),
		Batch: c.Int("batch"), Session: so,
		Search: search.Options{
			Generations: c.Int("generations"), Offspring: c.Int("offspring"), Survivors: sel, Samples: tok,
			Rand: rand.New(rand.NewSource(c.Int64("seed"))),
		},
		Log: func(format string, args ...any) { fmt.Fprintf(os.Stderr, "search: "+format+"\n", args...) },
	}
	gens := c.Int("generations")
	opt.Search.Progress = func(gen int, _ []int, f float64) {
		if isTerminal(os.Stderr) {
			fmt.Fprintf(os.Stderr, "\rsearch: generation %d/%d  KL %.5f ", gen+1, gens, f)
			if gen+1 == gens {
				fmt.Fprintln(os.Stderr)
			}
		}
	}
	out, rep, err := pipeline.RunSparsitySearch(context.Background(), m, calib, opt)
	if err != nil {
		return err
	}
	if dir := c.String("plots"); dir != "" {
		if err := pipeline.PlotSearch(dir, rep); err != nil {
			return err
		}
	}
	fmt.Fprint(os.Stderr, pipeline.SearchMarkdown(rep))
	out.SetMetadata("onnxpost.search", fmt.Sprintf("space=sparsity target=%g seed=%d kl=%.6f uniform_kl=%.6f", t, c.Int64("seed"), rep.Searched.KL, rep.Uniform.KL))
	return finish(c, out, m, map[string]any{"search": rep})
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
