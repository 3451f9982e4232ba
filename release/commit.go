package release

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/internal/display"
	"github.com/onnxpost/onnxpost/onnxio"
)

// Options says where and how Commit writes, and what it checks first.
type Options struct {
	// Output is the model's path, written only when the gate passes
	// (required).
	Output string
	// KeepRejected, when set, is where a candidate that fails the gate is
	// written instead ("" writes nothing on failure).
	KeepRejected string
	// Report is the JSON report's path; the Markdown report goes beside it
	// with the extension .md ("" writes no report files). Both are
	// prepared before the model is written, so a report that cannot be
	// written fails the commit with nothing written.
	Report string
	// External stores the model's tensors in an external data file.
	External bool

	// Data is the evaluation dataset; nil skips the evaluation (the
	// candidate is then only checked to load in ONNX Runtime).
	Data *evalharness.Dataset
	// DataName names Data in error messages (e.g. its path).
	DataName string
	// Gate is the accuracy gate (nil: none). Conditions need Data.
	// Without conditions, an output that turned NaN/Inf where the
	// reference's did not still fails.
	Gate *evalharness.Gate
	// Eval chooses outputs, metrics and batch; the gate's metrics are
	// added to Eval.Require.
	Eval evalharness.EvalOptions
	// Session opens the ONNX Runtime sessions.
	Session evalharness.SessionOptions

	// Command is the report's "command" key and the prefix of messages
	// (default "release").
	Command string
	// Extra holds the transform's own report keys (e.g. "sparsity"),
	// merged into the report; a key the evaluation already uses is
	// written as Command_key.
	Extra map[string]any
	// Provenance is recorded in the model's metadata (nil: nothing).
	Provenance *Provenance

	// Log receives warnings and notes (removed graph inputs, a load check
	// that could not run); nil discards them.
	Log io.Writer
}

// ErrGateFailed is wrapped by the error of a commit whose candidate failed
// the gate (a *GateError).
var ErrGateFailed = errors.New("gate failed")

// GateError is Commit's error when the candidate fails the gate: nothing
// was written to the output; the report was written, and the candidate
// went to Options.KeepRejected when set.
type GateError struct {
	// Failed lists the failed conditions.
	Failed string
	// Output is the path that was not written.
	Output string
}

func (e *GateError) Error() string { return e.Failed + "; " + e.Output + " not written" }

// Unwrap returns ErrGateFailed.
func (e *GateError) Unwrap() error { return ErrGateFailed }

// ErrOptions is wrapped by the errors of options Commit cannot use.
var ErrOptions = errors.New("release: invalid options")

// Check returns an error wrapping ErrOptions when o cannot be used: no
// output path, or gate conditions without data.
func (o *Options) Check() error {
	if o.Output == "" {
		return fmt.Errorf("%w: no output path", ErrOptions)
	}
	return o.checkGate()
}

// checkGate refuses gate conditions without data.
func (o *Options) checkGate() error {
	if o.Gate != nil && len(o.Gate.Conditions) > 0 && o.Data == nil {
		return fmt.Errorf("%w: the gate %q needs data to evaluate the candidate", ErrOptions, o.Gate.Expr)
	}
	return nil
}

func (o *Options) command() string {
	if o.Command == "" {
		return "release"
	}
	return o.Command
}

func (o *Options) log() io.Writer {
	if o.Log == nil {
		return io.Discard
	}
	return o.Log
}

// Commit is the gate-and-commit step. cand is the transformed model, ref
// the model it was derived from (nil when there is none); cand's graph
// inputs and metadata are updated, ref is only read. In order, Commit:
//
//  1. drops cand's graph inputs that named weights the transform rewrote
//     (onnxio.DropStaleWeightInputs) and records opt.Provenance in cand's
//     metadata;
//  2. with opt.Data, evaluates cand and ref with ONNX Runtime; without,
//     checks that cand loads in ONNX Runtime (CheckLoads);
//  3. checks opt.Gate; an output that turned NaN/Inf where ref's did not
//     fails it even without conditions;
//  4. prepares the report files (opt.Report), so an unwritable report
//     fails before anything is written;
//  5. when the gate passes (or there is none) saves cand to opt.Output
//     atomically; when it fails, writes nothing there and saves cand to
//     opt.KeepRejected when set;
//  6. commits the report (JSON and Markdown), also when the gate failed.
//
// The report is returned whenever the gate was checked: with a nil error
// when it passed, with a *GateError (wrapping ErrGateFailed) when it did
// not. A cancelled ctx writes nothing; the save checks it between tensors.
func Commit(ctx context.Context, cand, ref *onnxio.Model, opt Options) (*Report, error) {
	if err := opt.Check(); err != nil {
		return nil, err
	}
	if ref != nil && cand != ref {
		removed, err := onnxio.DropStaleWeightInputs(cand, ref)
		if err != nil {
			return nil, err
		}
		for _, name := range removed {
			fmt.Fprintf(opt.log(), "%s: removed graph input %s: it was the weight %s, which was rewritten (callers can no longer override it)\n", opt.command(), display.Name(name), display.Name(name))
		}
	}
	if err := opt.Provenance.Record(cand); err != nil {
		return nil, err
	}
	res, passed, err := evaluate(ctx, cand, ref, opt, true)
	if err != nil {
		return nil, err
	}
	pending, err := PrepareReport(opt.Report)
	if err != nil {
		return nil, err
	}
	defer pending.Abort()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	so := &onnxio.SaveOptions{Context: ctx}
	if opt.External {
		so.External = onnxio.ExternalAlways
	}
	rep := &Report{Command: opt.command(), Result: res, Output: opt.Output, Passed: passed, Extra: opt.Extra}
	switch {
	case passed:
		w, err := cand.SaveFile(opt.Output, so)
		if err != nil {
			return nil, fmt.Errorf("writing %s: %w", opt.Output, err)
		}
		rep.Written, rep.Saved = opt.Output, &w
	case opt.KeepRejected != "":
		w, err := cand.SaveFile(opt.KeepRejected, so)
		if err != nil {
			return nil, fmt.Errorf("writing the rejected candidate to %s: %w", opt.KeepRejected, err)
		}
		rep.Written, rep.Saved = opt.KeepRejected, &w
	}
	if rep.Saved != nil {
		res.Bytes = rep.Saved.Bytes()
	}
	if err := pending.Commit(rep); err != nil {
		if rep.Written != "" {
			return nil, fmt.Errorf("%w (after %s was written)", err, rep.Written)
		}
		return nil, err
	}
	if !passed {
		return rep, &GateError{Failed: res.Gate.Failed(), Output: opt.Output}
	}
	return rep, nil
}

// Evaluate is Commit without the write, for a candidate that is not
// released yet (a recipe's intermediate step): with opt.Data it
// evaluates cand and ref with ONNX Runtime and checks opt.Gate as Commit
// does; without data it only counts cand's parameters (no load check:
// the model is not written, the commit that writes it checks). cand and
// ref are only read; opt.Output, KeepRejected, Report, External and
// Provenance are not used, and nothing is written. The report's Passed
// says whether the gate passed; a failed gate also returns a *GateError
// (wrapping ErrGateFailed) with the report.
func Evaluate(ctx context.Context, cand, ref *onnxio.Model, opt Options) (*Report, error) {
	if err := opt.checkGate(); err != nil {
		return nil, err
	}
	res, passed, err := evaluate(ctx, cand, ref, opt, false)
	if err != nil {
		return nil, err
	}
	rep := &Report{Command: opt.command(), Result: res, Output: opt.Output, Passed: passed, Extra: opt.Extra}
	if !passed {
		return rep, &GateError{Failed: res.Gate.Failed(), Output: opt.Output}
	}
	return rep, nil
}

// evaluate evaluates cand against ref on opt.Data (or, with loadCheck and
// no data, checks that cand loads), counts cand's parameters and checks
// the gate: Commit's steps 2 and 3.
func evaluate(ctx context.Context, cand, ref *onnxio.Model, opt Options, loadCheck bool) (*evalharness.Result, bool, error) {
	res := &evalharness.Result{Model: opt.Output, Metrics: map[string]float64{}}
	if opt.Data != nil {
		eo := opt.Eval
		if opt.Gate != nil {
			eo.Require, _ = opt.Gate.Metrics()
		}
		r, err := evalharness.EvaluateModels(ctx, cand, ref, opt.Data, opt.Session, eo)
		if err != nil {
			return nil, false, fmt.Errorf("evaluating on %s: %w", opt.DataName, err)
		}
		r.Model = opt.Output
		res = r
	} else if loadCheck {
		if err := CheckLoads(cand, opt.Session, opt.Output, opt.command(), opt.log()); err != nil {
			return nil, false, err
		}
	}
	if n, err := Params(cand); err == nil {
		res.Params = n
	}
	gate := opt.Gate
	if gate == nil {
		gate = &evalharness.Gate{}
	}
	passed := true
	if len(gate.Conditions) > 0 || len(res.NewNonfinite()) > 0 {
		passed = gate.CheckResult(res).Passed
	}
	return res, passed, nil
}
