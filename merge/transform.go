package merge

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/transform"
)

// The merge command's parameters. Which of them a method's transform
// takes follows the method's own declaration (Method.Params: weight,
// density, lambda, t...), so the transforms add no second list.
var (
	paramMethod = &transform.Param{Name: "method", Kind: transform.String,
		Validate: func(s string) error {
			if _, err := ParseMethod(s); err != nil {
				return errors.New(strings.TrimPrefix(err.Error(), ErrOptions.Error()+": "))
			}
			return nil
		},
		Doc: "merge `METHOD`: linear, task-arithmetic, ties, dare, dare-ties, slerp, fisher, or one of mergekit's (model_stock, della, ...; see above)"}
	paramWeights = &transform.Param{Name: "weights", Kind: transform.List, Elem: transform.Float,
		Doc: "per-model weights `W1,W2,...` (default all 1)"}
	paramLambda = &transform.Param{Name: "lambda", Kind: transform.Float, Default: "1",
		Doc: "scale `L` of the merged delta"}
	paramTrimScope = &transform.Param{Name: "trim-scope", Kind: transform.Enum, Default: string(TrimGlobal),
		Choices: []string{string(TrimGlobal), string(TrimTensor)},
		Doc:     "TIES trim `SCOPE`: global (the paper's) or tensor (mergekit's)"}
	paramT = &transform.Param{Name: "t", Kind: transform.Float, Range: transform.Between(0, 1, "[]"),
		Doc: "SLERP interpolation parameter `T` in [0,1] (0: first model)"}
	paramFisherFloor = &transform.Param{Name: "fisher-floor", Kind: transform.Float, Range: transform.AtLeast(0),
		Default: strconv.FormatFloat(DefaultFisherFloor, 'g', -1, 64),
		Doc:     "floor `F` applied to Fisher values"}
	paramFisherNormalize = &transform.Param{Name: "fisher-normalize", Kind: transform.Bool, Default: "false",
		Doc: "divide each model's coefficient by the L2 norm of its Fisher"}
	paramNoNormalize = &transform.Param{Name: "no-normalize", Kind: transform.Bool, Default: "false",
		Doc: "linear: weighted sum instead of weighted average"}
	paramInclude = &transform.Param{Name: "include", Kind: transform.String, Validate: transform.Regexp,
		Doc: "merge only tensors whose name matches `REGEX`"}
	paramExclude = &transform.Param{Name: "exclude", Kind: transform.String, Validate: transform.Regexp,
		Doc: "do not merge tensors whose name matches `REGEX` (they keep the base's or first model's values)"}
)

// densityParam declares the density parameter with the method's default.
func densityParam(def string) *transform.Param {
	return &transform.Param{Name: "density", Kind: transform.List, Elem: transform.Float, Range: transform.Between(0, 1, "(]"), Default: def,
		Doc: "fraction `D` of each delta kept, or D1,D2,... per model (TIES default 0.2, DARE 0.5)"}
}

// paramParam declares the param parameter (NAME=VALUE), checked against the method's
// own parameters (SetParam).
func paramParam(m Method) *transform.Param {
	return &transform.Param{Name: "param", Kind: transform.List, Repeated: true,
		Validate: func(s string) error {
			o := Options{Method: m}
			for _, kv := range strings.Split(s, ",") {
				name, value, ok := strings.Cut(strings.TrimSpace(kv), "=")
				if !ok {
					return fmt.Errorf("%q: want NAME=VALUE", kv)
				}
				if err := o.SetParam(name, value); err != nil {
					return errors.New(strings.TrimPrefix(err.Error(), ErrOptions.Error()+": "))
				}
			}
			return nil
		},
		Doc: "set the method's parameter `NAME=VALUE` (mergekit's names, e.g. gamma=0.05, rescale=false; repeatable)"}
}

// methodTransform declares the transform of method m from the method's
// declared parameters.
func methodTransform(m Method) *transform.Transform {
	declares := func(name string) (ParamSpec, bool) {
		p, err := paramSpec(m, name)
		return p, err == nil
	}
	ps := []*transform.Param{paramMethod}
	if _, ok := declares("weight"); ok {
		ps = append(ps, paramWeights)
	}
	if d, ok := declares("density"); ok {
		ps = append(ps, densityParam(d.Default))
	}
	if _, ok := declares("lambda"); ok {
		ps = append(ps, paramLambda)
	}
	needs := transform.NeedModels
	switch m {
	case Linear:
		ps = append(ps, paramNoNormalize)
	case TIES:
		ps = append(ps, paramTrimScope)
	case SLERP:
		ps = append(ps, paramT)
	case Fisher:
		ps = append(ps, paramFisherFloor, paramFisherNormalize)
		needs |= transform.NeedCalibration
	}
	if len(m.Params()) > 0 {
		ps = append(ps, paramParam(m))
	}
	ps = append(ps, paramInclude, paramExclude)
	doc := m.Doc()
	if doc == "" {
		doc = nativeDocs[m]
	}
	if m.NeedsBase() || mergekitMethods[m].base == baseRequired {
		needs |= transform.NeedBase
	}
	t := &transform.Transform{Name: "merge/" + string(m), Doc: doc, Params: ps, Needs: needs, Run: runMerge}
	if m == SLERP {
		t.Check = func(a transform.Args) error {
			if !a.Has("t") {
				return errors.New("slerp needs t (0 gives the first model, 1 the second)")
			}
			return nil
		}
	}
	return t
}

// nativeDocs define the methods of options.go (Method.Doc defines
// mergekit's).
var nativeDocs = map[Method]string{
	Linear:         "Weighted average Σ wᵢθᵢ / Σ wᵢ of the models (a weighted sum with no-normalize).",
	TaskArithmetic: "Task arithmetic: base + λ Σ wᵢ(θᵢ − base).",
	TIES:           "TIES: trim each task vector to its largest |τ| (density), elect a sign per entry by the summed mass, average the agreeing entries: base + λ·merged.",
	DARE:           "DARE: drop each task-vector entry with probability 1 − density, rescale by 1/density, sum the weighted deltas: base + λ·merged.",
	DARETIES:       "DARE drops and rescaling, then TIES's sign election and disjoint mean.",
	SLERP:          "Spherical linear interpolation of two models (or of the base and one model) at t.",
	Fisher:         "Fisher-weighted average: Σ wᵢFᵢθᵢ / Σ wᵢFᵢ per entry, with diagonal Fishers floored at fisher-floor.",
}

// Command is the merge command: one transform per method, in Methods'
// order.
var Command = func() *transform.Command {
	c := &transform.Command{Name: "merge"}
	byMethod := map[Method]*transform.Transform{}
	for _, m := range Methods {
		t := methodTransform(m)
		byMethod[m] = t
		c.Transforms = append(c.Transforms, t)
	}
	c.Choose = func(a transform.Args) (*transform.Transform, error) {
		if !a.Has("method") {
			return nil, fmt.Errorf("method is required (%s)", strings.Join(methodStrings(), ", "))
		}
		m, err := ParseMethod(a.String("method"))
		if err != nil {
			return nil, err
		}
		return byMethod[m], nil
	}
	return c
}()

func methodStrings() []string {
	s := make([]string, len(Methods))
	for i, m := range Methods {
		s[i] = string(m)
	}
	return s
}

// OptionsFromArgs returns the Options that validated parameter values
// describe for n models (a single weight applies to every model).
func OptionsFromArgs(a transform.Args, n int) (Options, error) {
	m, err := ParseMethod(a.String("method"))
	if err != nil {
		return Options{}, err
	}
	o := Options{Method: m, TrimScope: TrimScope(a.String("trim-scope")), FisherNormalize: a.Bool("fisher-normalize"), NoNormalize: a.Bool("no-normalize")}
	floats := func(name string) []float64 {
		var out []float64
		for _, s := range a.List(name) {
			v, _ := strconv.ParseFloat(s, 64)
			out = append(out, v)
		}
		return out
	}
	if w := floats("weights"); len(w) == 1 && n > 1 {
		for range n {
			o.Weights = append(o.Weights, w[0])
		}
	} else {
		o.Weights = w
	}
	if d := floats("density"); len(d) == 1 {
		o.Density = d[0]
	} else {
		o.Densities = d
	}
	if a.Has("lambda") {
		l := a.Float("lambda")
		o.Lambda = &l
	}
	if a.Has("t") {
		t := a.Float("t")
		o.T = &t
	}
	if a.Has("fisher-floor") {
		o.FisherFloor = a.Float("fisher-floor")
	}
	for _, kv := range a.List("param") {
		name, value, _ := strings.Cut(kv, "=")
		if err := o.SetParam(name, value); err != nil {
			return o, err
		}
	}
	if o.Include, err = a.Regexp("include"); err != nil {
		return o, err
	}
	if o.Exclude, err = a.Regexp("exclude"); err != nil {
		return o, err
	}
	return o, nil
}

// runMerge merges in.Models (deltas from in.Base when given) into a new
// model; Fisher takes the models' diagonal Fishers from in.Calibration
// ([]*onnxio.Model, one per model). When in.Options holds the inputs'
// []Source, the merge's provenance is recorded in the model's metadata
// (Merged), as the command line records it.
func runMerge(ctx context.Context, in transform.Input) (*onnxio.Model, any, error) {
	o, err := OptionsFromArgs(in.Args, len(in.Models))
	if err != nil {
		return nil, nil, err
	}
	o.Seed = in.Seed
	inputs := Inputs{Base: in.Base, Models: in.Models}
	if o.Method == Fisher {
		f, ok := in.Calibration.([]*onnxio.Model)
		if !ok {
			return nil, nil, fmt.Errorf("%w: fisher needs one diagonal Fisher per model ([]*onnxio.Model), got %T", ErrOptions, in.Calibration)
		}
		inputs.Fishers = f
	}
	mg, err := New(ctx, inputs, o, nil)
	if err != nil {
		return nil, nil, err
	}
	var out *onnxio.Model
	if srcs, ok := in.Options.([]Source); ok {
		out, err = mg.Merged(ctx, srcs)
	} else {
		out, err = mg.Model(ctx, nil)
	}
	if err != nil {
		return nil, nil, err
	}
	rep := &Report{Method: string(o.Method), Params: mg.opt.Params(), Tensors: len(mg.Plan()), Elements: mg.Elements(), Thresholds: mg.Thresholds()}
	if srcs, ok := in.Options.([]Source); ok {
		rep.Inputs = srcs
	}
	return out, rep, nil
}

// Report is the merge transform's report; its JSON keys are those the
// merge command's result holds.
type Report struct {
	// Method is the merge method.
	Method string `json:"method"`
	// Params are the method's parameters as recorded (Options.Params).
	Params map[string]string `json:"merge_params"`
	// Tensors is the number of tensors merged.
	Tensors int `json:"merged_tensors"`
	// Elements is the number of elements merged.
	Elements int64 `json:"merged_params"`
	// Thresholds are each model's global trim threshold on |τ| (TIES with
	// global scope), or nil.
	Thresholds []float64 `json:"trim_thresholds,omitempty"`
	// Inputs are the input files, when the caller gave them (Source).
	Inputs []Source `json:"inputs,omitempty"`
}
