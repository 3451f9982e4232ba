package pipeline

import (
	"context"
	"fmt"
	"os"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/release"
)

// EvalRequest is what Eval measures: a model (in memory, or a file) on
// a dataset, against a reference model file when one is given.
type EvalRequest struct {
	// Model is the model in memory; nil reads the file at Path.
	Model *onnxio.Model
	// Path is the model's file (read when Model is nil) and its name in
	// the result.
	Path string
	// RefPath is the reference model's file ("" for none).
	RefPath string
	// Data is the dataset.
	Data *evalharness.Dataset
	// Session opens the ONNX Runtime sessions.
	Session evalharness.SessionOptions
	// Options are the evaluation options (EvalOptionsFromFlags).
	Options evalharness.EvalOptions
	// Gate is checked on the result (nil or no conditions: only the
	// non-finite outputs check of evalharness.Gate).
	Gate *evalharness.Gate
}

// EvalOptionsFromFlags returns the options of the eval command's flags
// metrics, batch, output-name, warmup, timed-runs, shard and
// save-outputs, requiring the gate's metrics; bad values are usage errors.
func EvalOptionsFromFlags(f Flags, gate *evalharness.Gate) (evalharness.EvalOptions, error) {
	eo := evalharness.EvalOptions{Batch: f.Int("batch"), Outputs: evalharness.ParseOutputNames(f.String("output-name")),
		Warmup: f.Int("warmup"), MinTimedRuns: f.Int("timed-runs"), KeepOutputs: f.String("save-outputs") != ""}
	if s := f.String("metrics"); s != "" {
		m, err := evalharness.ParseMetrics(s)
		if err != nil {
			return eo, Usagef("metrics: %v", err)
		}
		eo.Metrics = m
	}
	if s := f.String("shard"); s != "" {
		sh, err := evalharness.ParseShard(s)
		if err != nil {
			return eo, Usagef("shard: %v", err)
		}
		eo.Shard = sh
	}
	if gate != nil {
		eo.Require, _ = gate.Metrics()
	}
	return eo, nil
}

// Eval runs the eval command's measurement: the model (and the reference)
// in ONNX Runtime over the data, the model's name, size and parameter
// count in the result, and the gate checked when it has conditions or a
// measured output turned NaN/Inf where the reference's did not (a failed
// gate is in res.Gate, not an error). names are the model's outputs in
// the order of res.Outputs (for WriteEvalOutputs).
func Eval(ctx context.Context, req EvalRequest) (res *evalharness.Result, names []string, err error) {
	var cand evalharness.SessionRunner
	if req.Model != nil {
		cand, err = evalharness.OpenModel(req.Model, nil, req.Session)
	} else {
		cand, err = evalharness.OpenSession(evalharness.OpenRequest{Path: req.Path}, req.Session)
	}
	if err != nil {
		return nil, nil, err
	}
	defer cand.Close()
	var ref evalharness.Runner
	if req.RefPath != "" {
		rs, err := evalharness.OpenSession(evalharness.OpenRequest{Path: req.RefPath}, req.Session)
		if err != nil {
			return nil, nil, fmt.Errorf("reference: %w", err)
		}
		defer rs.Close()
		ref = rs
	}
	res, err = evalharness.Evaluate(ctx, cand, ref, req.Data, req.Options)
	if err != nil {
		return nil, nil, err
	}
	res.Model = req.Path
	if req.RefPath != "" && res.Reference != nil {
		res.Reference.Model = req.RefPath
	}
	m := req.Model
	if m == nil {
		if st, err := os.Stat(req.Path); err == nil {
			res.Bytes = st.Size()
		}
		m, _ = onnxio.LoadLazy(req.Path) // weights stay in the file
	} else if b, err := m.Bytes(); err == nil {
		res.Bytes = int64(len(b))
	}
	if m != nil {
		if p, err := release.Params(m); err == nil {
			res.Params = p
		}
	}
	gate := req.Gate
	if gate == nil {
		gate = &evalharness.Gate{}
	}
	if len(gate.Conditions) > 0 || len(res.NewNonfinite()) > 0 {
		gate.CheckResult(res)
	}
	for _, o := range cand.Outputs() {
		names = append(names, o.Name)
	}
	return res, names, nil
}

// WriteEvalOutputs writes the model's outputs kept by Eval
// (EvalOptions.KeepOutputs) to the .npz file at path, one array per
// output name.
func WriteEvalOutputs(path string, names []string, res *evalharness.Result) error {
	arrays := map[string]*evalharness.Array{}
	for i, n := range names {
		if i < len(res.Outputs) {
			arrays[n] = res.Outputs[i]
		}
	}
	return evalharness.WriteNPZ(path, arrays)
}
