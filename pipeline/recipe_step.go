package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/onnxpost/onnxpost/compress/lowrank"
	"github.com/onnxpost/onnxpost/compress/sparsity"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/merge"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/quant"
	"github.com/onnxpost/onnxpost/release"
	"github.com/onnxpost/onnxpost/transform"
)

// transformCommands are the registered commands whose recipe steps run
// through their transforms (runInProcess). The other commands a step
// may name (StepCommands: search, soup, fisher, eval) and merge steps
// with a config, Fisher files or data, or an alignment run through their
// library entry points (runCommand). Both pass the model from step to
// step in memory.
var transformCommands = map[string]bool{"merge": true, "quantize": true, "sparsify": true, "lowrank": true}

// inProcessKeys are the step keys, besides the command's declared
// parameters, that a transform step understands. A merge step that sets
// any other key (config, fisher, fisher-data, align, calib, out-dir,
// progress) runs through the merge command's entry points.
var inProcessKeys = map[string]bool{"seed": true, "data": true, "calib": true, "base": true, "batch": true,
	"threads": true, "ep": true, "output-name": true, "metrics": true, "quiet": true, "allow-noop": true,
	"external-data": true, "progress": true}

// viaTransform reports whether step i runs through the transform
// registry: its command is merge, quantize, sparsify or lowrank and
// every key it sets is a parameter of the command or one of
// inProcessKeys (a merge's calib excepted: it is align's data).
func (r *Recipe) viaTransform(i int) bool {
	s := r.Steps[i]
	c := CommandNamed(s.Command)
	if !transformCommands[s.Command] || c == nil {
		return false
	}
	for k := range s.Args {
		if c.Param(k) == nil && (!inProcessKeys[k] || s.Command == "merge" && k == "calib") {
			return false
		}
	}
	return true
}

// InProcess reports whether step i runs in this process, its model
// passed from the previous step in memory: through its transform
// (merge, quantize, sparsify, lowrank) or its command's library entry
// point (search, soup, fisher, eval, and merges with a config, Fisher
// files or data, or an alignment). It is false only for a command the
// library does not know (one a FlagSpec adds), which runs through the
// Run StepRunner with files.
func (r *Recipe) InProcess(i int) bool {
	_, ok := commandDecls[r.Steps[i].Command]
	return ok
}

// ErrNothingChanged is the error of an in-process step whose transform
// changed no weight, unless the step sets allow-noop (as the command
// line refuses a no-op without --allow-noop).
var ErrNothingChanged = errors.New("nothing to transform")

// stepPlan is an in-process step, prepared before any step runs.
type stepPlan struct {
	t    *transform.Transform
	args transform.Args
	// calib is the resolved calibration data path ("" for none).
	calib string
	// data is the resolved evaluation data path ("" for none).
	data string
	gate *evalharness.Gate
	seed int64
	so   evalharness.SessionOptions
	eo   evalharness.EvalOptions
	co   CalibOptions
}

// plan checks in-process step i and returns what running it takes:
// the transform its values select, their bound Args, the calibration
// it needs (an error when the step gives no calib, or gives one that is
// not used) and the evaluation options.
func (r *Recipe) plan(i int) (*stepPlan, error) {
	if !r.viaTransform(i) {
		p := &stepPlan{}
		return p, r.planEval(i, p)
	}
	s := r.Steps[i]
	c := CommandNamed(s.Command)
	values := map[string]any{}
	for k, v := range s.Args {
		if c.Param(k) != nil {
			values[k] = v
		}
	}
	t, args, err := c.Check(values)
	if err != nil {
		return nil, err
	}
	p := &stepPlan{t: t, args: args}
	str := func(k string) string { return transform.Text(s.Args[k]) }
	if v := str("calib"); v != "" {
		p.calib = r.Path(v)
	}
	needCalib := t.Needs&transform.NeedCalibration != 0
	if s.Command == "merge" {
		needCalib = false // fisher's Fishers come from files or data: such a step runs through runCommand
	}
	if s.Command == "lowrank" {
		needCalib = args.Bool("whiten")
	}
	if s.Command == "quantize" {
		needCalib = args.String("activations") == "int8" || args.String("method") == "gptq"
	}
	switch {
	case needCalib && p.calib == "":
		return nil, fmt.Errorf("%s needs calibration data: calib", t.Name)
	case !needCalib && p.calib != "":
		return nil, fmt.Errorf("%s reads no calibration data: remove calib", t.Name)
	}
	if s.Command == "merge" && args.String("method") == string(merge.Fisher) {
		return nil, Usagef("merge/fisher needs fisher or fisher-data")
	}
	if err := r.planEval(i, p); err != nil {
		return nil, err
	}
	p.co = CalibOptions{Session: p.so, Batch: p.eo.Batch, Samples: int64(args.Int("calib-samples"))}
	return p, nil
}

// planEval fills p with what evaluating step i takes: its data (the
// step's data key, else its data, else the recipe's), gate, seed,
// session (ep, threads) and evaluation options (batch, output-name,
// metrics).
func (r *Recipe) planEval(i int, p *stepPlan) error {
	s := r.Steps[i]
	str := func(k string) string { return transform.Text(s.Args[k]) }
	var err error
	data := str("data")
	if data == "" {
		data = s.Data
	}
	if data == "" {
		data = r.Data
	}
	if data != "" {
		p.data = r.Path(data)
	}
	if p.gate, err = evalharness.ParseGate(s.Gate); err != nil {
		return err
	}
	if r.Seed != nil {
		p.seed = *r.Seed
	}
	if v, ok := s.Args["seed"]; ok {
		if p.seed, err = strconv.ParseInt(transform.Text(v), 10, 64); err != nil {
			return fmt.Errorf("seed %q is not an integer", transform.Text(v))
		}
	}
	intArg := func(k string, def int) (int, error) {
		v, ok := s.Args[k]
		if !ok {
			return def, nil
		}
		n, err := strconv.Atoi(transform.Text(v))
		if err != nil {
			return 0, fmt.Errorf("%s %q is not an integer", k, transform.Text(v))
		}
		return n, nil
	}
	batch, err := intArg("batch", 64)
	if err != nil {
		return err
	}
	threads, err := intArg("threads", 0)
	if err != nil {
		return err
	}
	ep := str("ep")
	if ep != "" && ep != "cpu" && ep != "cuda" {
		return fmt.Errorf("ep must be cpu or cuda, got %q", ep)
	}
	p.so = evalharness.SessionOptions{EP: ep, Threads: threads, Library: r.Session.Library}
	p.eo = evalharness.EvalOptions{Batch: batch, Outputs: evalharness.ParseOutputNames(str("output-name"))}
	if m := str("metrics"); m != "" {
		if p.eo.Metrics, err = evalharness.ParseMetrics(m); err != nil {
			return fmt.Errorf("metrics: %v", err)
		}
	}
	return nil
}

// stepOutcome is what an in-process step hands on: the model, the
// reference it is evaluated against, and its report.
type stepOutcome struct {
	model *onnxio.Model
	// result is the step's JSON result (release.Report's keys).
	result map[string]any
}

// runInProcess runs in-process step i on prev (the previous step's model;
// nil for a step with inputs): loads its inputs and base, captures the
// calibration its transform needs, runs the transform, then evaluates
// and gates the result when the step has data (release.Evaluate). A
// failed gate returns the outcome with a *release.GateError.
func (r *Recipe) runInProcess(ctx context.Context, i int, p *stepPlan, prev *onnxio.Model) (*stepOutcome, error) {
	s := r.Steps[i]
	in := transform.Input{Args: p.args, Seed: p.seed}
	var ref *onnxio.Model
	paths := make([]string, len(s.Inputs))
	for j, x := range s.Inputs {
		paths[j] = r.Path(x)
	}
	if s.Command == "merge" {
		base := ""
		if b := transform.Text(s.Args["base"]); b != "" {
			base = merge.ModelPath(r.Path(b))
		}
		for j := range paths {
			paths[j] = merge.ModelPath(paths[j])
		}
		var mi merge.Inputs
		var srcs []merge.Source
		var err error
		if len(paths) > 0 {
			var sources func() ([]merge.Source, error)
			if mi, sources, _, err = openMerge(base, paths); err != nil {
				return nil, err
			}
			if srcs, err = sources(); err != nil {
				return nil, err
			}
		} else {
			if base != "" {
				bi, bs, err := merge.LoadInputs(base, nil)
				if err != nil {
					return nil, err
				}
				mi.Base, srcs = bi.Base, bs
			}
			mi.Models = []*onnxio.Model{prev}
		}
		in.Models, in.Base, in.Options = mi.Models, mi.Base, srcs
		ref = mi.Base
		if ref == nil {
			ref = mi.Models[0]
		}
	} else {
		m := prev
		if len(paths) > 0 {
			if len(paths) != 1 {
				return nil, Usagef("%s takes one model, got %d inputs", s.Command, len(paths))
			}
			var err error
			if m, err = onnxio.Load(paths[0]); err != nil {
				return nil, err
			}
		}
		in.Models = []*onnxio.Model{m}
		ref = m
	}
	var cal transform.Calibrate
	if p.calib != "" {
		// (errors, calibration's too, pass through transformUsage below)
		cal = func(ctx context.Context, m *onnxio.Model) (any, error) { return r.calibrate(ctx, s.Command, p, m) }
	}
	if s.Command == "merge" {
		// the options' checks that need the number of models, before the
		// merge runs (usage errors, as the command's)
		o, err := merge.OptionsFromArgs(p.args, len(in.Models))
		if err == nil {
			err = o.Validate(len(in.Models), in.Base != nil)
		}
		if err != nil {
			return nil, Usagef("%v", strings.TrimPrefix(err.Error(), "merge: invalid options: "))
		}
	}
	// an If-merged decoder is transformed branch by branch; merged
	// decoders to merge are prepared branch by branch (openMerge)
	var cand *onnxio.Model
	var rep any
	merged, err := transform.Merged(in)
	if err == nil && merged && s.Command == "merge" {
		cand, rep, err = mergeBranches(ctx, merge.Inputs{Models: in.Models, Base: in.Base}, func(ctx context.Context, _ string, bi merge.Inputs) (*onnxio.Model, any, error) {
			bin := in
			bin.Models, bin.Base = bi.Models, bi.Base
			return p.t.Run(ctx, bin)
		})
	} else if err == nil {
		cand, rep, err = transform.Apply(ctx, p.t, in, cal)
	}
	if err != nil {
		return nil, transformUsage(s.Command, err)
	}
	if s.Command != "merge" && cand.SameGraph(in.Models[0]) {
		if b, _ := strconv.ParseBool(transform.Text(s.Args["allow-noop"])); !b {
			return nil, fmt.Errorf("%w: %s changed no weight (allow-noop: true keeps the unchanged model)", ErrNothingChanged, p.t.Name)
		}
		r.logf("%s: warning: nothing to transform (allow-noop keeps the unchanged model)\n", p.t.Name)
	}
	extra, err := stepExtra(s.Command, rep)
	if err != nil {
		return nil, err
	}
	var inputs []*onnxio.Model
	if s.Command == "merge" {
		inputs = in.Models
	}
	return r.evaluateStep(ctx, i, p, cand, ref, extra, inputs, paths)
}

// evaluateStep is the end of every in-process step that makes a model:
// with data, the inputs (those given: a merge's models, each alone, for
// the report's input_metrics; labels are their paths, "-" for one in
// memory) and the candidate are evaluated, the candidate against ref,
// and gated (release.Evaluate, which writes nothing); the outcome holds
// the candidate and the step's JSON result (the command's keys, extra
// among them). A failed gate returns the outcome with a
// *release.GateError.
func (r *Recipe) evaluateStep(ctx context.Context, i int, p *stepPlan, cand, ref *onnxio.Model, extra map[string]any, inputs []*onnxio.Model, labels []string) (*stepOutcome, error) {
	s := r.Steps[i]
	opt := release.Options{Gate: p.gate, Eval: p.eo, Session: p.so, Command: s.Command, Extra: extra}
	var err error
	if p.data != "" {
		opt.DataName = p.data
		if opt.Data, err = evalharness.LoadDatasetFor(p.data, evalharness.DatasetOptions{Inputs: inputNames(cand)}); err != nil {
			return nil, fmt.Errorf("data: %w", err)
		}
	}
	if opt.Data != nil && len(inputs) > 0 {
		// every input alone on the data, so the report shows the merge
		// beside its inputs (the command's input_metrics)
		var rows []map[string]any
		for j, m := range inputs {
			eo := p.eo
			eo.NoDefaultLatency = true
			res, err := evalharness.EvaluateModels(ctx, m, nil, opt.Data, p.so, eo)
			if err != nil {
				return nil, fmt.Errorf("evaluating input %d: %w", j+1, err)
			}
			label := "-"
			if j < len(labels) {
				label = labels[j]
			}
			rows = append(rows, map[string]any{"model": label, "metrics": res.Metrics})
		}
		extra["input_metrics"] = rows
	}
	erep, err := release.Evaluate(ctx, cand, ref, opt)
	if erep == nil {
		return nil, err
	}
	if erep.Result != nil && erep.Result.Bytes == 0 {
		// the size the model would have on disk with inline tensors
		// ("bytes", as the command reports its output's)
		if b, err := cand.Bytes(); err == nil {
			erep.Result.Bytes = int64(len(b))
		}
	}
	doc, jerr := erep.JSON()
	if jerr != nil {
		return nil, jerr
	}
	out := &stepOutcome{model: cand}
	if uerr := json.Unmarshal(doc, &out.result); uerr != nil {
		return nil, uerr
	}
	return out, err
}

// transformUsage marks the errors of a transform's run that its command
// reports as usage errors (exit code 2): quantize's invalid options and
// block sizes, sparsify's pattern that fits no layer and missing
// calibration, lowrank's invalid options and unsupported layers.
func transformUsage(command string, err error) error {
	for _, e := range map[string][]error{
		"quantize": {quant.ErrOptions, quant.ErrBlockSize},
		"sparsify": {sparsity.ErrNoLayerFits, sparsity.ErrNoCalibration},
		"lowrank":  {lowrank.ErrOption, lowrank.ErrUnsupported},
	}[command] {
		if errors.Is(err, e) {
			return Usage(err)
		}
	}
	return err
}

// calibrate loads the step's calib data (only the arrays the model
// reads) and captures what its transform needs (QuantCalibration,
// SparsityCalibration or SequentialSparsityCalibration,
// LowrankCalibration), as the command line does.
func (r *Recipe) calibrate(ctx context.Context, command string, p *stepPlan, model *onnxio.Model) (any, error) {
	ds, err := evalharness.LoadDatasetFor(p.calib, evalharness.DatasetOptions{Inputs: inputNames(model)})
	if err != nil {
		return nil, fmt.Errorf("calib: %w", err)
	}
	switch command {
	case "quantize":
		opt, err := quant.OptionsFromArgs(p.args)
		if err != nil {
			return nil, err
		}
		// capture identifies consumers by node name (Quantize names its
		// copy the same way)
		model.EnsureNodeNames()
		return QuantCalibration(ctx, model, ds, opt, p.co)
	case "sparsify":
		opt, sel, err := sparsity.OptionsFromArgs(p.args)
		if err != nil {
			return nil, err
		}
		if p.args.Bool("sequential") {
			return SequentialSparsityCalibration(ctx, model, ds, p.co), nil
		}
		return SparsityCalibration(ctx, model, ds, sel, opt.Method, p.co)
	case "lowrank":
		opt, err := lowrank.OptionsFromArgs(p.args, uint64(p.seed))
		if err != nil {
			return nil, err
		}
		return LowrankCalibration(ctx, model, ds, opt, p.co)
	}
	return nil, fmt.Errorf("%s takes no calibration data", command)
}

// stepExtra shapes a transform's report as the command's JSON result
// holds it: sparsify's under "sparsity", the others' keys at the top
// level.
func stepExtra(command string, rep any) (map[string]any, error) {
	b, err := json.Marshal(rep)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	switch command {
	case "sparsify":
		return map[string]any{"sparsity": v}, nil
	}
	if m, ok := v.(map[string]any); ok {
		return m, nil
	}
	return map[string]any{"report": v}, nil
}

// inputNames returns the model's graph input names.
func inputNames(m *onnxio.Model) []string {
	var names []string
	for _, in := range m.Inputs() {
		names = append(names, in.Name)
	}
	return names
}
