package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/internal/safefs"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/pipeline"
)

// commonFlags are the flags every transforming command takes
// (docs/ARCHITECTURE.md §3). Commands append their own flags to these.
func commonFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "o", Aliases: []string{"output"}, Usage: "write the result to `OUT.onnx` (required)"},
		&cli.StringFlag{Name: "data", Usage: "evaluate the candidate and the reference on `DATASET` (.npz or ONNX test-data folder)"},
		&cli.StringFlag{Name: "gate", Usage: "accuracy gate `EXPR`, e.g. \"accuracy_drop<=0.01,kl<=0.02\"; on failure nothing is written and the exit code is 3"},
		&cli.StringFlag{Name: "report", Usage: "write the JSON report to `FILE.json`"},
		&cli.Int64Flag{Name: "seed", Value: 0, Usage: "random seed (`N`) for seeded methods"},
		&cli.BoolFlag{Name: "json", Usage: "print the machine-readable result on stdout"},
		&cli.StringFlag{Name: "ep", Value: "cpu", Usage: "ONNX Runtime execution provider: cpu or cuda"},
		&cli.BoolFlag{Name: "external-data", Usage: "store the output's tensors in an external data file"},
		&cli.StringFlag{Name: "keep-rejected", Usage: "when the gate fails, write the candidate to `PATH` instead"},
		allowNoopFlag(),
		&cli.StringFlag{Name: "ort-lib", Usage: ortLibUsage},
		&cli.IntFlag{Name: "batch", Value: 64, Usage: "evaluation batch size"},
		threadsFlag(),
		&cli.StringFlag{Name: "output-name", Usage: "model output(s) `NAME[,NAME...]` measured with --data (default: the first floating-point output)"},
		&cli.StringFlag{Name: "metrics", Usage: "metrics `LIST` measured with --data (default: those that apply to the output's shape and to what the data holds)"},
	}
}

// evalOptions returns the evaluation options of the flags --output-name,
// --metrics and --batch; the gate's metrics are required besides
// (computed when the data allows).
func evalOptions(c *cli.Context, gate *evalharness.Gate) (evalharness.EvalOptions, error) {
	eo := evalharness.EvalOptions{Batch: c.Int("batch"), Outputs: evalharness.ParseOutputNames(c.String("output-name"))}
	if s := c.String("metrics"); s != "" {
		m, err := evalharness.ParseMetrics(s)
		if err != nil {
			return eo, usagef("--metrics: %v", err)
		}
		eo.Metrics = m
	}
	if gate != nil {
		eo.Require, _ = gate.Metrics()
	}
	return eo, nil
}

// gateNeeded reports whether the result must be checked: the gate has
// conditions, or a measured output turned NaN/Inf where the reference's
// did not (which fails even without conditions).
func gateNeeded(gate *evalharness.Gate, res *evalharness.Result) bool {
	return len(gate.Conditions) > 0 || len(res.NewNonfinite()) > 0
}

// sessionOptions returns the ONNX Runtime session options of the common
// flags --ep, --threads and --ort-lib.
func sessionOptions(c *cli.Context) (evalharness.SessionOptions, error) {
	ep := strings.ToLower(c.String("ep"))
	if ep != "cpu" && ep != "cuda" && ep != "" {
		return evalharness.SessionOptions{}, usagef("--ep must be cpu or cuda, got %q", c.String("ep"))
	}
	if err := checkThreads(c.Int("threads")); err != nil {
		return evalharness.SessionOptions{}, err
	}
	return evalharness.SessionOptions{EP: ep, Threads: c.Int("threads"), Library: c.String("ort-lib")}, nil
}

// loadDataset loads the dataset named by a flag (e.g. "data" or "calib");
// it returns nil when the flag is not set. It reads only the arrays that
// the command's model (its first argument) takes as inputs, and labels.
func loadDataset(c *cli.Context, flag string) (*evalharness.Dataset, error) {
	p := c.String(flag)
	if p == "" {
		return nil, nil
	}
	return loadDatasetFor(p, modelInputNames(c.Args().First()))
}

// loadDatasetFor loads the dataset at path reading only the arrays named
// in inputs, and labels (every array when inputs is nil).
func loadDatasetFor(path string, inputs []string) (*evalharness.Dataset, error) {
	return evalharness.LoadDatasetFor(path, evalharness.DatasetOptions{Inputs: inputs})
}

// modelInputNames returns the input names of the model file at path, read
// without loading its tensors, or nil when they cannot be read (the
// dataset is then read whole and the model's own load reports the error).
func modelInputNames(path string) []string {
	if path == "" {
		return nil
	}
	sig, err := onnxio.ReadSignature(path)
	if err != nil {
		return nil
	}
	return valueNames(sig.Inputs)
}

// valueNames returns the names of vs, or nil when there are none.
func valueNames(vs []onnxio.ValueInfo) []string {
	var names []string
	for _, v := range vs {
		names = append(names, v.Name)
	}
	return names
}

// finish is the single path every transforming command ends with
// (docs/ARCHITECTURE.md §1, §3, §4). cand is the transformed model; ref is the
// model it was derived from (the command's input, or the base model of a
// merge), or nil when there is none; report holds command-specific results
// (e.g. {"method": "ties", "density": 0.2, "layers": [...]}), merged into the
// JSON result and report under their own keys (nil is fine).
//
// finish, in order:
//  1. drops graph inputs that named rewritten weights (dropStaleInputs) and
//     records provenance (onnxpost version and command line) in cand's
//     metadata_props;
//  2. with --data, evaluates cand and ref with ONNX Runtime (--ep,
//     --threads, --ort-lib, --batch) on the outputs --output-name names
//     (default: the first floating-point output): --metrics, else the
//     metrics that apply to each output's shape and to the data, plus
//     what --gate needs; without --data, checks that cand loads in
//     ONNX Runtime (checkLoads);
//  3. checks --gate (a gate without --data is a usage error); an output
//     that turned NaN/Inf where ref's did not fails it even without
//     conditions;
//  4. when the gate passes (or there is none) saves cand to -o atomically,
//     with external data when --external-data is set; when it fails, writes
//     nothing there, saves cand to --keep-rejected if given, and returns a
//     gateError (exit code 3);
//  5. writes the JSON result to --report (also when the gate failed);
//  6. prints the JSON result on stdout with --json, otherwise a short
//     summary on stderr.
//
// The JSON result has the keys of docs/ARCHITECTURE.md §4 ("model", "samples",
// "metrics", "reference", "gate", "params", "bytes") plus "command",
// "output" (the path written, "" when rejected), "outputs" (the model
// outputs measured), "stats", "nonfinite" and the report's keys.
// The command's flags must include commonFlags().
func finish(c *cli.Context, cand, ref *onnxio.Model, report map[string]any) error {
	out := c.String("o")
	if out == "" {
		return usagef("-o OUT.onnx is required")
	}
	gate, err := evalharness.ParseGate(c.String("gate"))
	if err != nil {
		return usagef("--gate: %v", err)
	}
	if len(gate.Conditions) > 0 && c.String("data") == "" {
		return usagef("--gate needs --data to evaluate the candidate")
	}
	so, err := sessionOptions(c)
	if err != nil {
		return err
	}
	if err := dropStaleInputs(c, cand, ref); err != nil {
		return err
	}
	cand.SetMetadata("onnxpost.version", version)
	cand.SetMetadata("onnxpost.command", strings.Join(append([]string{"onnxpost", c.Command.Name}, c.Args().Slice()...), " "))

	res := &evalharness.Result{Model: out, Metrics: map[string]float64{}}
	if ds, err := loadDataset(c, "data"); err != nil {
		return err
	} else if ds != nil {
		eo, err := evalOptions(c, gate)
		if err != nil {
			return err
		}
		r, err := evalharness.EvaluateModels(c.Context, cand, ref, ds, so, eo)
		if err != nil {
			return fmt.Errorf("evaluating on %s: %w", c.String("data"), err)
		}
		r.Model = out
		res = r
	} else if err := checkLoads(c, cand, so); err != nil {
		return err
	}
	if params, err := modelParams(cand); err == nil {
		res.Params = params
	}
	passed := true
	if gateNeeded(gate, res) {
		passed = gate.CheckResult(res).Passed
	}
	// The report is prepared before the model is committed: a report that
	// cannot be written fails the command with nothing written.
	rep, err := prepareReport(c.String("report"))
	if err != nil {
		return err
	}
	defer rep.abort()
	written := ""
	saveOpts := &onnxio.SaveOptions{Context: c.Context}
	if c.Bool("external-data") {
		saveOpts.External = onnxio.ExternalAlways
	}
	// a cancelled command writes nothing; the save itself checks the
	// context between tensors and removes its temporaries
	if err := c.Context.Err(); err != nil {
		return err
	}
	switch {
	case passed:
		if err := cand.Save(out, saveOpts); err != nil {
			return fmt.Errorf("writing %s: %w", out, err)
		}
		written = out
	case c.String("keep-rejected") != "":
		kr := c.String("keep-rejected")
		if err := cand.Save(kr, saveOpts); err != nil {
			return fmt.Errorf("writing the rejected candidate to %s: %w", kr, err)
		}
		written = kr
	}
	if written != "" {
		res.Bytes = fileBytes(written, saveOpts)
	}
	doc, err := resultJSON(c.Command.Name, res, out, passed, written, report)
	if err != nil {
		return err
	}
	if err := publish(c, rep, res, doc, passed, written, out); err != nil {
		return err
	}
	if !passed {
		return gateError{msg: res.Gate.Failed() + "; " + out + " not written"}
	}
	return nil
}

// publish commits the report prepared by prepareReport (JSON and
// Markdown) and prints the result: the JSON document on stdout with --json,
// else a short summary on stderr.
func publish(c *cli.Context, rep *pendingReport, res *evalharness.Result, doc []byte, passed bool, written, out string) error {
	if err := rep.commit(doc); err != nil {
		if written != "" {
			return fmt.Errorf("%w (after %s was written)", err, written)
		}
		return err
	}
	if c.Bool("json") {
		os.Stdout.Write(doc)
	} else {
		printSummary(os.Stderr, res, passed, written, out)
	}
	return nil
}

// pendingReport is a report whose files (JSON and Markdown) are prepared
// as temporary files beside their destinations before anything else is
// committed, and renamed into place by commit. A nil *pendingReport (no
// --report) commits nothing.
type pendingReport struct {
	json, md *safefs.Pending
}

// prepareReport creates the temporary files of the report at path (and of
// its Markdown sibling); it fails when either cannot be written. path ""
// gives a nil report.
func prepareReport(path string) (*pendingReport, error) {
	if path == "" {
		return nil, nil
	}
	mdPath := strings.TrimSuffix(path, filepath.Ext(path)) + ".md"
	if mdPath == path {
		mdPath = path + ".md"
	}
	j, err := safefs.Prepare(path)
	if err != nil {
		return nil, fmt.Errorf("writing the report: %w", err)
	}
	md, err := safefs.Prepare(mdPath)
	if err != nil {
		j.Abort()
		return nil, fmt.Errorf("writing the report: %w", err)
	}
	return &pendingReport{json: j, md: md}, nil
}

// commit renders the Markdown and renames both files into place.
func (r *pendingReport) commit(doc []byte) error {
	if r == nil {
		return nil
	}
	md, err := pipeline.ResultMarkdown(doc)
	if err != nil {
		return fmt.Errorf("rendering the report: %w", err)
	}
	if err := r.json.Commit(doc); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	if err := r.md.Commit([]byte(md)); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	return nil
}

// abort removes whatever commit did not rename into place.
func (r *pendingReport) abort() {
	if r != nil {
		r.json.Abort()
		r.md.Abort()
	}
}

// resultJSON merges the evaluation result, the command name, the output
// path and the command's report into one indented JSON document.
func resultJSON(command string, res *evalharness.Result, out string, passed bool, written string, report map[string]any) ([]byte, error) {
	b, err := json.Marshal(res)
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if _, ok := m["params"]; !ok {
		m["params"] = res.Params
	}
	if _, ok := m["bytes"]; !ok {
		m["bytes"] = res.Bytes
	}
	for k, v := range report {
		if _, taken := m[k]; taken {
			k = command + "_" + k
		}
		m[k] = v
	}
	m["command"] = command
	if passed {
		m["output"] = written
	} else {
		m["output"] = ""
		if written != "" {
			m["rejected_output"] = written
		}
	}
	return marshalJSON(m)
}

// marshalJSON encodes v as indented JSON without HTML escaping (gate
// expressions keep their < and >), ending with a newline.
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		// A NaN or Inf somewhere in a command's report: write it as null
		// rather than fail after the model was written.
		var uv *json.UnsupportedValueError
		if !errors.As(err, &uv) {
			return nil, fmt.Errorf("encoding JSON: %w", err)
		}
		buf.Reset()
		if err := enc.Encode(jsonSafe(v)); err != nil {
			return nil, fmt.Errorf("encoding JSON: %w", err)
		}
	}
	return buf.Bytes(), nil
}

// modelParams counts the elements of the model's parameter tensors; the
// packed weights of MatMulNBits nodes count as their K×N logical weights,
// quantization scales and zero points do not count. Weights in subgraphs,
// sparse initializers and already-quantized weights count (AllWeights), and
// MatMulNBits nodes inside subgraphs too, each packed weight once.
func modelParams(m *onnxio.Model) (int64, error) {
	ws, err := m.AllWeights()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, w := range ws {
		if w.Role != onnxio.RoleQuantParam {
			n += w.Params()
		}
	}
	packed := map[string]bool{} // one packed weight read by both branches of an If counts once
	var count func(nd onnxio.Node)
	count = func(nd onnxio.Node) {
		if nd.OpType == "MatMulNBits" && len(nd.Inputs) > 1 && !packed[nd.Inputs[1]] {
			packed[nd.Inputs[1]] = true
			n += nd.Int("K", 0) * nd.Int("N", 0)
		}
	}
	for _, nd := range m.Nodes() {
		count(nd)
		for _, sn := range onnxio.SubgraphNodes(nd) {
			count(sn)
		}
	}
	return n, nil
}

// fileBytes returns the size of a written model plus the external data
// files it references.
func fileBytes(path string, so *onnxio.SaveOptions) int64 {
	n, err := onnxio.DiskSize(path)
	if err != nil {
		return 0
	}
	return n
}

// printSummary writes a few human-readable lines about the result.
func printSummary(w io.Writer, res *evalharness.Result, passed bool, written, out string) {
	var parts []string
	if res.Samples > 0 {
		keys := make([]string, 0, len(res.Metrics))
		for k := range res.Metrics {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			s := fmt.Sprintf("%s %.6g", k, res.Metrics[k])
			if res.Reference != nil {
				if rv, ok := res.Reference.Metrics[k]; ok {
					s += fmt.Sprintf(" (reference %.6g)", rv)
				}
			}
			parts = append(parts, s)
		}
		fmt.Fprintf(w, "evaluated output %s on %d samples: %s\n", strings.Join(res.OutputNames, ","), res.Samples, strings.Join(parts, ", "))
		if len(res.Nonfinite) > 0 {
			fmt.Fprintf(w, "non-finite (NaN/Inf): %s\n", strings.Join(res.Nonfinite, ", "))
		}
	}
	if res.Gate != nil {
		state := "passed"
		if !passed {
			state = "FAILED: " + res.Gate.Failed()
		}
		expr := res.Gate.Expr
		if expr == "" {
			expr = "(finite outputs)"
		}
		fmt.Fprintf(w, "gate %s: %s\n", expr, state)
	}
	switch {
	case passed:
		fmt.Fprintf(w, "wrote %s (%d parameters, %d bytes)\n", written, res.Params, res.Bytes)
	case written != "":
		fmt.Fprintf(w, "%s not written; rejected candidate kept in %s\n", out, written)
	}
}
