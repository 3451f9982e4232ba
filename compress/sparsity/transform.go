package sparsity

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/transform"
)

// The sparsify command's parameters; their names and defaults are the
// command line's flags.
var (
	paramPattern = &transform.Param{Name: "pattern", Kind: transform.Pattern,
		Validate: func(s string) error { _, err := ParsePattern(s); return err },
		Doc:      "N:M pattern, e.g. 2:4 or 4:8 (0 < N < M)"}
	paramSparsity = &transform.Param{Name: "sparsity", Kind: transform.Float, Range: transform.Between(0, 1, "[)"),
		Doc: "unstructured fraction `S` in [0,1) of weights pruned"}
	paramMethod = &transform.Param{Name: "method", Kind: transform.Enum, Default: string(Magnitude),
		Choices: []string{string(Magnitude), string(Wanda), string(SparseGPT)},
		Doc:     "criterion `METHOD`: magnitude, wanda, sparsegpt"}
	paramScope = &transform.Param{Name: "scope", Kind: transform.Enum, Default: string(ScopeLayer),
		Choices: []string{string(ScopeLayer), string(ScopeGlobal)},
		Doc:     "unstructured threshold `SCOPE`: layer or global (magnitude, wanda)"}
	paramCalibSamples = &transform.Param{Name: "calib-samples", Kind: transform.Int, Default: "256", Range: transform.AtLeast(0),
		Doc: "use at most `N` calibration samples (0: all)"}
	paramDamp = &transform.Param{Name: "damp", Kind: transform.Float, Default: strconv.FormatFloat(DefaultDamp, 'g', -1, 64), Range: transform.AtLeast(0),
		Doc: "sparsegpt dampening `λ` as a fraction of the mean diagonal of XᵀX"}
	paramBlockSize = &transform.Param{Name: "blocksize", Kind: transform.Int, Default: strconv.Itoa(DefaultBlockSize), Range: transform.AtLeast(1),
		Doc: "sparsegpt column block `B` (a multiple of M)"}
	paramInclude = &transform.Param{Name: "include", Kind: transform.String, Validate: transform.Regexp,
		Doc: "prune only weights whose weight or node name matches `REGEX`"}
	paramExclude = &transform.Param{Name: "exclude", Kind: transform.String, Validate: transform.Regexp,
		Doc: "leave weights whose weight or node name matches `REGEX`"}
	paramSequential = &transform.Param{Name: "sequential", Kind: transform.Bool, Default: "false",
		Doc: "capture each layer's inputs on the model pruned so far (layers in graph order, one calibration run per layer), as the SparseGPT and Wanda reference code do; default: all layers from the dense model's activations"}
)

// MagnitudeTransform prunes by |W| to an N:M pattern or an unstructured
// sparsity.
var MagnitudeTransform = &transform.Transform{
	Name: "sparsify/magnitude",
	Doc: "Prunes MatMul, Gemm and Conv weights by |W| to an N:M pattern along the reduction axis " +
		"or to an unstructured sparsity (per layer or global scope).",
	Params: []*transform.Param{paramMethod, paramPattern, paramSparsity, paramScope, paramInclude, paramExclude},
	Check:  checkArgs,
	Run:    runPrune,
}

// WandaTransform prunes by |W|·‖X‖₂ from calibration activations.
var WandaTransform = &transform.Transform{
	Name: "sparsify/wanda",
	Doc: "Prunes MatMul, Gemm and Conv weights by |W_ij|·‖X_j‖₂ (Wanda), compared within each output unit, " +
		"to an N:M pattern or an unstructured sparsity; ‖X_j‖ from each layer input's XᵀX on calibration data.",
	Params: []*transform.Param{paramMethod, paramPattern, paramSparsity, paramScope, paramCalibSamples, paramSequential, paramInclude, paramExclude},
	Needs:  transform.NeedCalibration,
	Check:  checkArgs,
	Run:    runPrune,
}

// SparseGPTTransform prunes by SparseGPT's optimal brain surgeon update.
var SparseGPTTransform = &transform.Transform{
	Name: "sparsify/sparsegpt",
	Doc: "Prunes MatMul, Gemm and Conv weights by SparseGPT (optimal brain surgeon with H = XᵀX + λI in column blocks, " +
		"updating the kept weights) to an N:M pattern or an unstructured sparsity.",
	Params: []*transform.Param{paramMethod, paramPattern, paramSparsity, paramCalibSamples, paramDamp, paramBlockSize, paramSequential, paramInclude, paramExclude},
	Needs:  transform.NeedCalibration,
	Check:  checkArgs,
	Run:    runPrune,
}

// Command is the sparsify command: one transform per method.
var Command = &transform.Command{
	Name:       "sparsify",
	Transforms: []*transform.Transform{MagnitudeTransform, WandaTransform, SparseGPTTransform},
	Choose: func(a transform.Args) (*transform.Transform, error) {
		switch Method(a.String("method")) {
		case Magnitude:
			return MagnitudeTransform, nil
		case Wanda:
			return WandaTransform, nil
		case SparseGPT:
			return SparseGPTTransform, nil
		}
		return nil, fmt.Errorf("method %q: want magnitude, wanda or sparsegpt", a.String("method"))
	},
}

// checkArgs checks the combinations: exactly one of pattern and sparsity,
// scope with sparsity only, a SparseGPT block that is a multiple of M.
func checkArgs(a transform.Args) error {
	if a.Has("pattern") == a.Has("sparsity") {
		return errors.New("give exactly one of pattern N:M and sparsity S")
	}
	if a.Has("pattern") && a.String("scope") == string(ScopeGlobal) {
		return errors.New("scope applies to sparsity only")
	}
	if a.String("method") == string(SparseGPT) && a.Has("pattern") {
		p, _ := ParsePattern(a.String("pattern"))
		if b := a.Int("blocksize"); b%p.M != 0 {
			return fmt.Errorf("blocksize %d is not a multiple of M=%d", b, p.M)
		}
	}
	return nil
}

// OptionsFromArgs returns the Options and Selection that validated
// parameter values describe.
func OptionsFromArgs(a transform.Args) (Options, Selection, error) {
	var sel Selection
	opt := Options{Method: Method(a.String("method")), Scope: Scope(a.String("scope")), Damp: a.Float("damp"), BlockSize: a.Int("blocksize")}
	if opt.Method == "" {
		opt.Method = Magnitude
	}
	if a.Has("pattern") {
		p, err := ParsePattern(a.String("pattern"))
		if err != nil {
			return opt, sel, err
		}
		opt.Pattern = p
	} else {
		opt.Sparsity = a.Float("sparsity")
	}
	var err error
	if sel.Include, err = a.Regexp("include"); err != nil {
		return opt, sel, err
	}
	if sel.Exclude, err = a.Regexp("exclude"); err != nil {
		return opt, sel, err
	}
	return opt, sel, nil
}

// runPrune prunes a clone of the model (PruneModel edits in place) and
// returns the clone and the Report. Magnitude pruning also prunes the
// weights If/Loop/Scan subgraphs read (HoistSubgraphWeights first).
func runPrune(ctx context.Context, in transform.Input) (*onnxio.Model, any, error) {
	if len(in.Models) != 1 {
		return nil, nil, fmt.Errorf("sparsity: sparsify takes one model, got %d", len(in.Models))
	}
	opt, sel, err := OptionsFromArgs(in.Args)
	if err != nil {
		return nil, nil, err
	}
	m := in.Models[0].Clone()
	if !opt.Method.NeedsCalibration() {
		// weights that subgraphs read are pruned too (magnitude needs no
		// capture of their inputs), as the command line prunes them
		sel.Subgraphs = true
		if _, err := HoistSubgraphWeights(m, sel); err != nil {
			return nil, nil, err
		}
	}
	rep, err := pruneWith(ctx, m, opt, sel, in.Calibration, PruneModel)
	if err != nil {
		return nil, nil, err
	}
	return m, rep, nil
}

// pruneWith calls prune (PruneModel) with v as its calibration argument,
// whatever interface that argument is declared as.
func pruneWith[C any](ctx context.Context, m *onnxio.Model, opt Options, sel Selection, v any,
	prune func(context.Context, *onnxio.Model, Options, Selection, C) (Report, error)) (Report, error) {
	var c C
	if opt.Method.NeedsCalibration() && !transform.As(&c, v) {
		return Report{}, fmt.Errorf("sparsity: %s needs input Gram matrices (the calibration PruneModel takes), got %T", opt.Method, v)
	}
	return prune(ctx, m, opt, sel, c)
}
