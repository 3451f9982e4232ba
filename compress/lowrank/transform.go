package lowrank

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/transform"
)

// ruleParam declares a rank rule's parameter, validated by Rule.Validate.
func ruleParam(name string, kind transform.Kind, k RuleKind, doc string) *transform.Param {
	return &transform.Param{Name: name, Kind: kind, Doc: doc, Validate: func(s string) error {
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err == nil {
			err = Rule{Kind: k, Value: v}.Validate()
		}
		return err
	}}
}

// The lowrank command's parameters; their names and defaults are the
// command line's flags.
var (
	paramScheme = &transform.Param{Name: "scheme", Kind: transform.Enum, Default: "auto",
		Choices: []string{SchemeSVD.String(), SchemeChannel.String(), SchemeSpatial.String(), SchemeAuto.String()},
		Doc:     "`SCHEME`: svd (MatMul/Gemm), channel or spatial (Conv), auto (svd for dense layers, the smaller of channel/spatial per Conv)"}
	paramEnergy    = ruleParam("energy", transform.Float, ByEnergy, "keep the smallest rank whose Σσ² reaches fraction `E` in (0,1] of the layer's")
	paramRankRatio = ruleParam("rank-ratio", transform.Float, ByRankRatio, "keep rank ⌊`R`·min(m,n)⌋ (at least 1), R in (0,1]")
	paramRank      = ruleParam("rank", transform.Int, ByRank, "keep rank `K` (capped at min(m,n))")
	paramParams    = ruleParam("params-ratio", transform.Float, ByParamsRatio, "whole-model budget: the factorized layers keep fraction `P` of their parameters, ranks chosen jointly (greedy on normalized σ² per parameter)")
	paramWhiten    = &transform.Param{Name: "whiten", Kind: transform.Bool, Default: "false",
		Doc: "data-aware SVD: whiten by the Cholesky factor of each layer input's XᵀX (SVD-LLM); needs calibration data"}
	paramDamp = &transform.Param{Name: "damp", Kind: transform.Float, Default: strconv.FormatFloat(DefaultDamp, 'g', -1, 64), Range: transform.AtLeast(0),
		Doc: "relative damping `λ` of XᵀX for the whiten parameter: λ·mean(diag XᵀX) is added to the diagonal (0: none unless the Cholesky factorization needs it)"}
	paramCalibSamples = &transform.Param{Name: "calib-samples", Kind: transform.Int, Default: "256", Range: transform.AtLeast(0),
		Doc: "use at most `N` calibration samples"}
	paramInclude = &transform.Param{Name: "include", Kind: transform.String, Validate: transform.Regexp,
		Doc: "factorize only layers whose node or weight name matches `REGEX` (also takes Convs the default leaves out: first, strided, 1×1)"}
	paramExclude = &transform.Param{Name: "exclude", Kind: transform.String, Validate: transform.Regexp,
		Doc: "leave layers whose node or weight name matches `REGEX`"}
	paramSVD = &transform.Param{Name: "svd", Kind: transform.Enum, Default: "auto", Choices: []string{"exact", "randomized", "auto"},
		Doc: "SVD `METHOD`: exact, randomized (when the rank is known in advance; iterates until the kept energy converges, else exact), auto (exact unless the randomized SVD is predicted ≥3× faster)"}
	paramOversample = &transform.Param{Name: "oversample", Kind: transform.Int, Default: "10", Range: transform.AtLeast(1),
		Doc: "randomized SVD oversampling"}
	paramPowerIters = &transform.Param{Name: "power-iters", Kind: transform.Int, Default: "2", Range: transform.AtLeast(0),
		Doc: "randomized SVD power iterations (at least; more until converged)"}
	paramForce = &transform.Param{Name: "force", Kind: transform.Bool, Default: "false",
		Doc: "factorize even layers whose rank saves no parameters (exactness checks at full rank)"}
)

// Transform is the low-rank factorization: truncated SVD of MatMul/Gemm
// weights, channel- or spatial-wise factorization of Conv weights.
var Transform = &transform.Transform{
	Name: "lowrank/svd",
	Doc: "Replaces weight matrices by products of two thin factors from their truncated SVD, W ≈ (U_r√Σ_r)(√Σ_r V_rᵀ): " +
		"two MatMul/Gemm nodes, or two Convs (channel: k×k then 1×1; spatial: kh×1 then 1×kw), the rank by exactly one rule " +
		"(energy, rank-ratio, rank, params-ratio); data-aware (SVD-LLM whitening) with whiten and calibration.",
	Params: []*transform.Param{paramScheme, paramEnergy, paramRankRatio, paramRank, paramParams, paramWhiten, paramDamp,
		paramCalibSamples, paramInclude, paramExclude, paramSVD, paramOversample, paramPowerIters, paramForce},
	Check: func(a transform.Args) error {
		n := 0
		for _, k := range []string{"energy", "rank-ratio", "rank", "params-ratio"} {
			if a.Has(k) {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("give exactly one of energy, rank-ratio, rank, params-ratio (got %d)", n)
		}
		if a.Bool("whiten") && a.String("scheme") == SchemeSpatial.String() {
			return errors.New("whiten supports the svd, channel and auto schemes, not spatial")
		}
		return nil
	},
	Run: run,
}

// Command is the lowrank command.
var Command = &transform.Command{Name: "lowrank", Transforms: []*transform.Transform{Transform}}

// OptionsFromArgs returns the Options that validated parameter values
// describe (Calib is left to the caller); seed seeds the randomized SVD.
func OptionsFromArgs(a transform.Args, seed uint64) (Options, error) {
	var opt Options
	scheme, err := ParseScheme(a.String("scheme"))
	if err != nil {
		return opt, err
	}
	opt.Scheme = scheme
	for _, r := range []struct {
		name string
		kind RuleKind
	}{{"energy", ByEnergy}, {"rank-ratio", ByRankRatio}, {"rank", ByRank}, {"params-ratio", ByParamsRatio}} {
		if a.Has(r.name) {
			opt.Rule = Rule{Kind: r.kind, Value: a.Float(r.name)}
		}
	}
	if opt.Include, err = a.Regexp("include"); err != nil {
		return opt, err
	}
	if opt.Exclude, err = a.Regexp("exclude"); err != nil {
		return opt, err
	}
	if d := a.Float("damp"); d == 0 {
		opt.Damp = -1 // no damping unless the Cholesky factorization needs it
	} else {
		opt.Damp = d
	}
	if opt.Method, err = ParseMethod(a.String("svd")); err != nil {
		return opt, err
	}
	opt.Randomized = RandomizedOptions{Oversample: a.Int("oversample"), PowerIters: a.Int("power-iters"), Seed: seed}
	if opt.Randomized.PowerIters == 0 {
		opt.Randomized.PowerIters = -1
	}
	opt.Force = a.Bool("force")
	return opt, nil
}

// run factorizes a clone of the model (Apply edits in place).
func run(ctx context.Context, in transform.Input) (*onnxio.Model, any, error) {
	if len(in.Models) != 1 {
		return nil, nil, fmt.Errorf("%w: lowrank takes one model, got %d", ErrOption, len(in.Models))
	}
	opt, err := OptionsFromArgs(in.Args, uint64(in.Seed))
	if err != nil {
		return nil, nil, err
	}
	if in.Args.Bool("whiten") && !transform.As(&opt.Calib, in.Calibration) {
		return nil, nil, fmt.Errorf("%w: whiten needs input Gram matrices (the type of Options.Calib), got %T", ErrOption, in.Calibration)
	}
	m := in.Models[0].Clone()
	rep, err := Apply(ctx, m, opt)
	if err != nil {
		return nil, nil, err
	}
	return m, rep, nil
}
