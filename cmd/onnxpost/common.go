package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/internal/jsonout"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/release"
)

// commonFlags are the flags every transforming command takes
// (docs/ARCHITECTURE.md). Commands append their own flags to these.
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

// finish is the single path every transforming command ends with: the
// flags become release.Options and release.Commit does the work (see its
// doc and docs/ARCHITECTURE.md). cand is the transformed model; ref is the
// model it was derived from (the command's input, or the base model of a
// merge), or nil when there is none; report holds command-specific results
// (e.g. {"method": "ties", "density": 0.2, "layers": [...]}), merged into the
// JSON result and report under their own keys (nil is fine).
//
// The flags: -o, --keep-rejected, --report, --external-data, --data (with
// --output-name, --metrics, --batch), --gate (a gate without --data is a
// usage error), --ep, --threads, --ort-lib. Provenance (onnxpost version,
// command line, SHA-256 of the model files given as arguments) goes into
// cand's metadata. A failed gate returns a gateError (exit code 3) after the
// report was written. Then the JSON result is printed on stdout with
// --json, otherwise a short summary on stderr.
//
// The JSON result has the keys of release.Report: "model", "samples",
// "metrics", "reference", "gate", "params", "bytes", "command", "output"
// (the path written, "" when rejected), "outputs" (the model outputs
// measured), "stats", "nonfinite" and the report's keys.
// The command's flags must include commonFlags().
func finish(c *cli.Context, cand, ref *onnxio.Model, report map[string]any) error {
	opt, err := commitOptions(c, report)
	if err != nil {
		return err
	}
	rep, err := release.Commit(c.Context, cand, ref, opt)
	var ge *release.GateError
	if err != nil && !errors.As(err, &ge) {
		return err
	}
	doc, jerr := rep.JSON()
	if jerr != nil {
		return jerr
	}
	printResult(c, rep.Result, doc, rep.Passed, rep.Written, rep.Output)
	if ge != nil {
		return gateError{msg: ge.Error()}
	}
	return nil
}

// commitOptions turns the common flags into release.Options (usage errors
// for bad values) and loads --data.
func commitOptions(c *cli.Context, report map[string]any) (release.Options, error) {
	opt := release.Options{
		Output:       c.String("o"),
		KeepRejected: c.String("keep-rejected"),
		Report:       c.String("report"),
		External:     c.Bool("external-data"),
		DataName:     c.String("data"),
		Command:      c.Command.Name,
		Extra:        report,
		Log:          os.Stderr,
	}
	if opt.Output == "" {
		return opt, usagef("-o OUT.onnx is required")
	}
	gate, err := evalharness.ParseGate(c.String("gate"))
	if err != nil {
		return opt, usagef("--gate: %v", err)
	}
	if len(gate.Conditions) > 0 && c.String("data") == "" {
		return opt, usagef("--gate needs --data to evaluate the candidate")
	}
	opt.Gate = gate
	if opt.Session, err = sessionOptions(c); err != nil {
		return opt, err
	}
	if opt.Data, err = loadDataset(c, "data"); err != nil {
		return opt, err
	}
	if opt.Data != nil {
		if opt.Eval, err = evalOptions(c, gate); err != nil {
			return opt, err
		}
	}
	if opt.Provenance, err = cliProvenance(c); err != nil {
		return opt, err
	}
	return opt, nil
}

// cliProvenance is the provenance a command records: the tool version,
// its command line and the SHA-256 of the files among its arguments (nil
// in the branch run of a merged decoder, whose arguments are temporary
// files: the joined model records the command's).
func cliProvenance(c *cli.Context) (*release.Provenance, error) {
	if c.Context.Value(branchRunKey{}) != nil {
		return nil, nil
	}
	var files []string
	for _, a := range c.Args().Slice() {
		if st, err := os.Stat(a); err == nil && st.Mode().IsRegular() {
			files = append(files, a)
		}
	}
	ins, err := release.HashInputs(files...)
	if err != nil {
		return nil, err
	}
	return &release.Provenance{
		Version: version,
		Command: strings.Join(append([]string{"onnxpost", c.Command.Name}, c.Args().Slice()...), " "),
		Inputs:  ins,
	}, nil
}

// publish commits the report prepared by prepareReport (JSON and
// Markdown) and prints the result: the JSON document on stdout with --json,
// else a short summary on stderr.
func publish(c *cli.Context, rep *release.PendingReport, res *evalharness.Result, doc []byte, passed bool, written, out string) error {
	if err := rep.CommitJSON(doc); err != nil {
		if written != "" {
			return fmt.Errorf("%w (after %s was written)", err, written)
		}
		return err
	}
	printResult(c, res, doc, passed, written, out)
	return nil
}

// printResult prints the JSON document on stdout with --json, else a short
// summary on stderr.
func printResult(c *cli.Context, res *evalharness.Result, doc []byte, passed bool, written, out string) {
	if c.Bool("json") {
		os.Stdout.Write(doc)
	} else {
		printSummary(os.Stderr, res, passed, written, out)
	}
}

// prepareReport prepares the report files at path (release.PrepareReport).
func prepareReport(path string) (*release.PendingReport, error) {
	return release.PrepareReport(path)
}

// resultJSON merges the evaluation result, the command name, the output
// path and the command's report into one indented JSON document
// (release.Report.JSON).
func resultJSON(command string, res *evalharness.Result, out string, passed bool, written string, report map[string]any) ([]byte, error) {
	rep := &release.Report{Command: command, Result: res, Output: out, Written: written, Passed: passed, Extra: report}
	return rep.JSON()
}

// marshalJSON encodes v as indented JSON without HTML escaping (gate
// expressions keep their < and >), ending with a newline; NaN and Inf are
// written as null (jsonout.Marshal).
func marshalJSON(v any) ([]byte, error) { return jsonout.Marshal(v) }

// modelParams counts the elements of the model's parameter tensors
// (release.Params).
func modelParams(m *onnxio.Model) (int64, error) { return release.Params(m) }

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
