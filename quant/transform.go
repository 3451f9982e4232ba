package quant

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/transform"
)

// The quantize command's parameters, shared by its schemes (one file per
// scheme: scheme_int8.go, scheme_dynamic.go, scheme_static.go,
// scheme_int4.go, fp16.go). Their names and defaults are the
// command line's flags.
var (
	paramWeights = &transform.Param{Name: "weights", Kind: transform.Enum, Default: "int8",
		Choices: []string{"int8", "int4", "fp16", "bf16"},
		Doc:     "weight `TYPE`: int8, int4, fp16 or bf16"}
	paramFormat = &transform.Param{Name: "format", Kind: transform.Enum, Choices: []string{"qdq", "matmulnbits"},
		Doc: "`FORMAT`: qdq (DequantizeLinear; default for int8) or matmulnbits (com.microsoft MatMulNBits; default for int4)"}
	paramBlock = &transform.Param{Name: "block", Kind: transform.Int, Default: "32",
		Validate: func(s string) error {
			if !ValidBlockSize(transform.Args{"b": s}.Int("b")) {
				return errors.New("want a power of two >= 16")
			}
			return nil
		},
		Doc: "int4 block size `B` along K (a power of two ≥ 16)"}
	paramMethod = &transform.Param{Name: "method", Kind: transform.Enum, Default: "rtn", Choices: []string{"rtn", "gptq"},
		Doc: "int4 `METHOD`: rtn (round to nearest) or gptq (needs calibration data)"}
	paramActivations = &transform.Param{Name: "activations", Kind: transform.Enum, Choices: []string{"dynamic", "int8"},
		Doc: "int8 activations: dynamic (quantized at run time, MatMulInteger) or int8 (static QDQ from calibration data)"}
	paramCalibSamples = &transform.Param{Name: "calib-samples", Kind: transform.Int, Default: "256", Range: transform.AtLeast(1),
		Doc: "use at most `N` calibration samples"}
	paramCalibrate = &transform.Param{Name: "calibrate", Kind: transform.Enum, Default: "minmax", Choices: []string{"minmax", "percentile", "entropy"},
		Doc: "activation range `METHOD`: minmax, percentile or entropy"}
	paramPercentile = &transform.Param{Name: "percentile", Kind: transform.Float, Default: "99.999", Range: transform.Between(50, 100, "(]"),
		Doc: "percentile `P` for the calibrate parameter percentile"}
	paramPerChannel = &transform.Param{Name: "per-channel", Kind: transform.Bool, Default: "true",
		Doc: "one scale per output channel (default true; false: one scale per tensor)"}
	paramExcludeOps = &transform.Param{Name: "exclude-ops", Kind: transform.List,
		Doc: "comma-separated op `TYPES` left in float (fp16/bf16: kept in fp32, replacing the default block list)"}
	paramExclude = &transform.Param{Name: "exclude", Kind: transform.String, Validate: transform.Regexp,
		Doc: "leave weights or nodes whose name matches `REGEX` in float"}
	paramActOrder = &transform.Param{Name: "act-order", Kind: transform.Bool, Default: "false",
		Doc: "GPTQ: quantize columns in order of decreasing diag(XᵀX) (block parameters computed up front)"}
	paramDamp = &transform.Param{Name: "damp", Kind: transform.Float, Default: "0.01", Range: transform.Above(0),
		Doc: "GPTQ damping `λ` (fraction of mean diag(XᵀX))"}
	paramAccuracyLevel = &transform.Param{Name: "accuracy-level", Kind: transform.Int, Default: "0", Range: transform.Between(0, 4, "[]"),
		Doc: "MatMulNBits accuracy_level `L` (0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8)"}
)

// symmetricParam declares the symmetric parameter with a scheme's default.
func symmetricParam(def bool) *transform.Param {
	return &transform.Param{Name: "symmetric", Kind: transform.Bool, Default: fmt.Sprint(def),
		Doc: "symmetric weights, no zero point (default: true for int8, false for int4 as ONNX Runtime's MatMulNBitsQuantizer)"}
}

// Command is the quantize command: its schemes, chosen by the weights,
// activations and method parameters.
var Command = &transform.Command{
	Name:       "quantize",
	Transforms: []*transform.Transform{Int8, Int8Dynamic, Int8Static, Int4, Int4GPTQ, Float16, BFloat16},
	Choose: func(a transform.Args) (*transform.Transform, error) {
		switch w, act := a.String("weights"), a.String("activations"); {
		case w == "int8" && act == "":
			return Int8, nil
		case w == "int8" && act == "dynamic":
			return Int8Dynamic, nil
		case w == "int8" && act == "int8":
			return Int8Static, nil
		case act != "":
			return nil, fmt.Errorf("activations %q: activation quantization applies to int8 weights, not %s", act, w)
		case w == "int4" && a.String("method") == "gptq":
			return Int4GPTQ, nil
		case w == "int4":
			return Int4, nil
		case w == "fp16":
			return Float16, nil
		case w == "bf16":
			return BFloat16, nil
		}
		return nil, fmt.Errorf("weights %q: want int8, int4, fp16 or bf16", a.String("weights"))
	},
}

// OptionsFromArgs returns the Options that validated parameter values
// (transform.Command.Check) describe. Calibration and Stats are left to
// the caller.
func OptionsFromArgs(a transform.Args) (Options, error) {
	o := Options{
		Weights:       a.String("weights"),
		Format:        a.String("format"),
		BlockSize:     a.Int("block"),
		Activations:   a.String("activations"),
		Percentile:    a.Float("percentile"),
		ActOrder:      a.Bool("act-order"),
		Damp:          a.Float("damp"),
		AccuracyLevel: a.Int("accuracy-level"),
		PerTensor:     a.Has("per-channel") && !a.Bool("per-channel"),
	}
	if o.Weights == "int4" {
		o.Method = a.String("method")
	}
	if a.Has("symmetric") {
		o.Symmetry = SymmetryOf(a.Bool("symmetric"))
	}
	if a.Has("calibrate") {
		m, err := ParseCalibMethod(a.String("calibrate"))
		if err != nil {
			return o, fmt.Errorf("%w: %v", ErrOptions, err)
		}
		o.Calibrate = m
	}
	for _, op := range a.List("exclude-ops") {
		if op != "" {
			o.ExcludeOps = append(o.ExcludeOps, op)
		}
	}
	if s := a.String("exclude"); s != "" {
		re, err := regexp.Compile(s)
		if err != nil {
			return o, fmt.Errorf("%w: exclude: %v", ErrOptions, err)
		}
		o.Exclude = re
	}
	return o, nil
}

// runScheme is the Run of every quantize transform: Quantize on a copy
// (Quantize never edits its argument), with the calibration the scheme
// needs from in.Calibration (a Calibration for GPTQ, an ActivationStats
// for static activations).
func runScheme(ctx context.Context, in transform.Input) (*onnxio.Model, any, error) {
	if len(in.Models) != 1 {
		return nil, nil, fmt.Errorf("%w: quantize takes one model, got %d", ErrOptions, len(in.Models))
	}
	o, err := OptionsFromArgs(in.Args)
	if err != nil {
		return nil, nil, err
	}
	if o.Method == "gptq" && !transform.As(&o.Calibration, in.Calibration) {
		return nil, nil, fmt.Errorf("%w: GPTQ needs input Gram matrices (the type of Options.Calibration), got %T", ErrCalibration, in.Calibration)
	}
	if o.Activations == "int8" && !transform.As(&o.Stats, in.Calibration) {
		return nil, nil, fmt.Errorf("%w: static activations need histograms (the type of Options.Stats), got %T", ErrCalibration, in.Calibration)
	}
	q, rep, err := Quantize(ctx, in.Models[0], o)
	if err != nil {
		return nil, nil, err
	}
	return q, rep, nil
}

// schemeDoc joins a scheme's summary and details.
func schemeDoc(lines ...string) string { return strings.Join(lines, " ") }
