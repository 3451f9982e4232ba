package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/compress/lowrank"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

func init() {
	flags := append(append(commonFlags(), paramFlags(lowrank.Command)...),
		&cli.StringFlag{Name: "calib", Usage: "calibration `DATA` (.npz or test-data folder) for --whiten"},
	)
	register(&cli.Command{
		Name:      "lowrank",
		Usage:     "low-rank factorization of MatMul/Gemm (SVD) and Conv (channel- or spatial-wise) weights",
		ArgsUsage: "MODEL",
		Description: `Replaces weight matrices by products of two thin factors from their
truncated SVD: W ≈ (U_r√Σ_r)(√Σ_r V_rᵀ).

  MatMul, Gemm  two MatMul/Gemm nodes (bias, alpha/beta/transA/transB kept
                on the right node); a following Add stays after the second.
  channel       Conv k×k with r filters, then 1×1 Conv to the outputs.
  spatial       Conv kh×1 with r filters, then 1×kw Conv (pads, strides and
                dilations split by axis).

Exactly one rank rule: --energy E, --rank-ratio R, --rank K or --params-ratio P.
A layer whose rank would not save parameters (r ≥ mn/(m+n)) is left alone
and reported. By default Convs with stride 1 and a kernel other than 1×1 are
factorized, except the first (TRP's rule); --include REGEX selects layers by
node or weight name and takes any Conv it names. --calib DATA --whiten makes
the SVD data-aware (SVD-LLM whitening; svd and channel schemes).

The per-layer table (rank, energy kept, parameters before and after) is
printed on stderr and stored under "layers" in the JSON report.

  onnxpost lowrank mlp.onnx -o mlp_lr.onnx --energy 0.9 --data test.npz
  onnxpost lowrank cnn.onnx -o cnn_lr.onnx --scheme spatial --rank-ratio 0.5
  onnxpost lowrank model.onnx -o out.onnx --params-ratio 0.5 --calib val.npz --whiten`,
		Flags:  flags,
		Action: lowrankAction,
	})
}

func lowrankAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("lowrank takes one MODEL, got %d arguments", c.NArg())
	}
	if c.String("o") == "" {
		return usagef("-o OUT.onnx is required")
	}
	if _, _, err := checkParams(c, lowrank.Command); err != nil {
		return err
	}
	opt, err := lowrankOptions(c)
	if err != nil {
		return err
	}
	model, err := onnxio.Load(c.Args().First())
	if err != nil {
		return err
	}
	ref := model.Clone()
	if c.Bool("whiten") {
		calib, err := lowrankCalibration(c, model, opt)
		if err != nil {
			return lowrankError(err)
		}
		opt.Calib = calib
	}
	rep, err := lowrank.Apply(c.Context, model, opt)
	if err != nil {
		return lowrankError(err)
	}
	if err := rep.WriteTable(os.Stderr); err != nil {
		return err
	}
	unhandled := unhandledWeights(ref, "lowrank", computeRoles...)
	why := slices.Clone(unhandled)
	for _, l := range rep.Layers {
		if !l.Factorized {
			why = append(why, l.Weight+": "+l.Reason)
		}
	}
	if err := requireChange(c, model, ref, rep.Factorized > 0, why); err != nil {
		return err
	}
	b, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	report := map[string]any{}
	if err := json.Unmarshal(b, &report); err != nil {
		return err
	}
	if len(unhandled) > 0 {
		report["unhandled"] = unhandled
	}
	return finish(c, model, ref, report)
}

// lowrankOptions turns the flags into lowrank.Options (usage errors for bad
// combinations and values).
func lowrankOptions(c *cli.Context) (lowrank.Options, error) {
	var opt lowrank.Options
	scheme, err := lowrank.ParseScheme(c.String("scheme"))
	if err != nil {
		return opt, usagef("--scheme: %v", err)
	}
	opt.Scheme = scheme
	var rules []lowrank.Rule
	if c.IsSet("energy") {
		rules = append(rules, lowrank.Rule{Kind: lowrank.ByEnergy, Value: c.Float64("energy")})
	}
	if c.IsSet("rank-ratio") {
		rules = append(rules, lowrank.Rule{Kind: lowrank.ByRankRatio, Value: c.Float64("rank-ratio")})
	}
	if c.IsSet("rank") {
		rules = append(rules, lowrank.Rule{Kind: lowrank.ByRank, Value: float64(c.Int("rank"))})
	}
	if c.IsSet("params-ratio") {
		rules = append(rules, lowrank.Rule{Kind: lowrank.ByParamsRatio, Value: c.Float64("params-ratio")})
	}
	if len(rules) != 1 {
		return opt, usagef("give exactly one of --energy, --rank-ratio, --rank, --params-ratio (got %d)", len(rules))
	}
	opt.Rule = rules[0]
	if err := opt.Rule.Validate(); err != nil {
		return opt, usagef("%v", err)
	}
	for _, f := range []struct {
		name string
		dst  **regexp.Regexp
	}{{"include", &opt.Include}, {"exclude", &opt.Exclude}} {
		if s := c.String(f.name); s != "" {
			re, err := regexp.Compile(s)
			if err != nil {
				return opt, usagef("--%s: %v", f.name, err)
			}
			*f.dst = re
		}
	}
	if c.Bool("whiten") != (c.String("calib") != "") {
		return opt, usagef("--whiten and --calib DATA go together")
	}
	if c.Bool("whiten") && scheme == lowrank.SchemeSpatial {
		return opt, usagef("--whiten supports the svd, channel and auto schemes, not spatial")
	}
	if d := c.Float64("damp"); d < 0 {
		return opt, usagef("--damp must be >= 0")
	} else if d == 0 {
		opt.Damp = -1 // no damping unless the Cholesky factorization needs it
	} else {
		opt.Damp = d
	}
	if opt.Method, err = lowrank.ParseMethod(c.String("svd")); err != nil {
		return opt, usagef("--svd: %v", err)
	}
	if c.Int("oversample") < 1 {
		return opt, usagef("--oversample must be >= 1")
	}
	if c.Int("power-iters") < 0 {
		return opt, usagef("--power-iters must be >= 0")
	}
	opt.Randomized = lowrank.RandomizedOptions{Oversample: c.Int("oversample"), PowerIters: c.Int("power-iters"), Seed: uint64(c.Int64("seed"))}
	if c.Int("power-iters") == 0 {
		opt.Randomized.PowerIters = -1
	}
	opt.Force = c.Bool("force")
	return opt, nil
}

// lowrankError maps option and unsupported-layer errors to usage errors.
func lowrankError(err error) error {
	if errors.Is(err, lowrank.ErrOption) || errors.Is(err, lowrank.ErrUnsupported) {
		return usagef("%v", err)
	}
	return err
}

// lowrankCalibration runs the model over --calib (at most --calib-samples
// samples) with evalharness.Capture, accumulating XᵀX of the inputs of the
// layers Apply will decompose.
func lowrankCalibration(c *cli.Context, model *onnxio.Model, opt lowrank.Options) (lowrank.Calibration, error) {
	opt.Calib = pendingCalibration{}
	names, err := lowrank.Candidates(model, opt)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return pendingCalibration{}, nil
	}
	ds, err := loadDataset(c, "calib")
	if err != nil {
		return nil, fmt.Errorf("--calib: %w", err)
	}
	if n := int64(c.Int("calib-samples")); n > 0 && ds.N > n {
		ds = ds.Head(n)
	}
	so, err := sessionOptions(c)
	if err != nil {
		return nil, err
	}
	st, err := evalharness.Capture(c.Context, model, ds, evalharness.CaptureOptions{Grams: names, Batch: c.Int("batch"), Session: so})
	if err != nil {
		return nil, fmt.Errorf("calibration on %s: %w", c.String("calib"), err)
	}
	return st, nil
}

// pendingCalibration stands for a calibration not captured yet (or not
// needed: no layer selected).
type pendingCalibration struct{}

func (pendingCalibration) InputGram(weight string) ([]float64, int, int64, error) {
	return nil, 0, 0, fmt.Errorf("no calibration captured for %s", weight)
}
