package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/pipeline"
	"github.com/onnxpost/onnxpost/release"
)

func init() {
	register(&cli.Command{
		Name:      "eval",
		Usage:     "measure a model on a dataset with ONNX Runtime; with --ref, its fidelity to a reference",
		ArgsUsage: "MODEL",
		Description: `Runs MODEL with ONNX Runtime over DATASET in batches and prints its metrics.

DATASET is a .npz whose arrays are named after the model inputs, plus an
optional integer "labels" array, or an ONNX test-data folder
(test_data_set_*/input_*.pb, output_*.pb; the expected outputs then serve as
the reference when --ref is not given). The first axis is the sample axis.

Metrics by output shape: [N, C] class scores take accuracy, top5 (need
labels), agreement, kl (mean KL(ref||model) of softmax), cosine, mse,
max_abs (need --ref); [N, T, V] token scores take perplexity and
token_accuracy (next-token targets: an [N, T] "labels" array, else input_ids
shifted by one; masked by attention_mask) and agreement, kl, cosine, mse,
max_abs; any other shape takes cosine, mse, max_abs, psnr. latency (p50/p90
ms per batch after warm-up), throughput (samples/s); "all". Default: the
metrics that apply to the output's shape and to what the data holds; with
neither labels nor --ref, output statistics and latency. Metrics use the
first floating-point output unless --output-name names others
(several: metrics.NAME.METRIC; gates may say NAME.METRIC).

--gate checks conditions on the result (e.g. "accuracy_drop<=0.01,kl<=0.02";
X_drop is the reference's X minus the model's, X_ratio the model's over the
reference's); on failure the exit code is 3. A NaN or Inf metric fails every
condition that reads it, and an output that holds NaN/Inf where the
reference's does not fails the gate.

  onnxpost eval model.onnx --data test.npz
  onnxpost eval pruned.onnx --data test.npz --ref model.onnx --metrics accuracy,kl,agreement,latency
  onnxpost eval model.onnx --data test.npz --json --gate "accuracy>=0.9"`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data", Usage: "`DATASET` (.npz or ONNX test-data folder)", Required: true},
			&cli.StringFlag{Name: "ref", Usage: "reference model `REF.onnx` for fidelity metrics"},
			&cli.StringFlag{Name: "metrics", Usage: "comma-separated `LIST` of metrics (accuracy,top5,agreement,kl,cosine,mse,max_abs,psnr,perplexity,token_accuracy,latency,throughput or all)"},
			&cli.IntFlag{Name: "batch", Value: 64, Usage: "samples per run (`N`)"},
			&cli.BoolFlag{Name: "json", Usage: "print the JSON result (docs/ARCHITECTURE.md §4) on stdout"},
			&cli.StringFlag{Name: "gate", Usage: "conditions `EXPR` that must hold, else exit code 3"},
			&cli.StringFlag{Name: "report", Usage: "also write the JSON result to `FILE.json`"},
			&cli.StringFlag{Name: "ep", Value: "cpu", Usage: "ONNX Runtime execution provider: cpu or cuda"},
			threadsFlag(),
			&cli.StringFlag{Name: "ort-lib", Usage: ortLibUsage},
			&cli.StringFlag{Name: "output-name", Usage: "model output(s) `NAME[,NAME...]` the metrics use (default: the first floating-point output)"},
			&cli.StringFlag{Name: "save-outputs", Usage: "write the model's outputs over the dataset to `FILE.npz`"},
			&cli.IntFlag{Name: "warmup", Value: 3, Usage: "untimed runs (`N`) before timing latency/throughput"},
			&cli.StringFlag{Name: "shard", Usage: "evaluate part `I/N` (0-based) of the dataset; combine the reports with eval-merge"},
			&cli.IntFlag{Name: "timed-runs", Value: 20, Usage: "time at least `N` batch runs (the data is cycled through again, timing only)"},
		},
		Action: evalAction,
	})
	register(&cli.Command{
		Name:      "eval-merge",
		Usage:     "combine the JSON reports of `eval --shard i/n` into the result of the whole dataset",
		ArgsUsage: "REPORT.json...",
		Description: `Each shard of a large evaluation runs as its own job (Kubernetes Indexed
Job, Slurm job array), e.g. for i in 0..7:

  onnxpost eval model.onnx --data big.npz --ref base.onnx --shard $i/8 --report shard-$i.json

then one step merges them exactly (sums of the per-sample statistics;
latency percentiles over all timed runs) and may check a gate:

  onnxpost eval-merge shard-*.json --gate "accuracy_drop<=0.01" --json`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the JSON result on stdout"},
			&cli.StringFlag{Name: "gate", Usage: "conditions `EXPR` that must hold, else exit code 3"},
			&cli.StringFlag{Name: "report", Usage: "write the merged JSON result to `FILE.json`"},
		},
		Action: evalMergeAction,
	})
}

func evalMergeAction(c *cli.Context) error {
	if c.NArg() == 0 {
		return usagef("eval-merge needs the shards' REPORT.json files")
	}
	gate, err := evalharness.ParseGate(c.String("gate"))
	if err != nil {
		return usagef("--gate: %v", err)
	}
	var parts []*evalharness.Result
	for _, p := range c.Args().Slice() {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var r evalharness.Result
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: not an eval report: %w", p, err)
		}
		parts = append(parts, &r)
	}
	res, err := evalharness.MergeResults(parts)
	if err != nil {
		return err
	}
	return evalOutput(c, res, gate)
}

func evalAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("eval takes exactly one MODEL, got %d arguments", c.NArg())
	}
	path := c.Args().First()
	gate, err := evalharness.ParseGate(c.String("gate"))
	if err != nil {
		return usagef("--gate: %v", err)
	}
	so, err := sessionOptions(c)
	if err != nil {
		return err
	}
	ds, err := loadDatasetFor(c.String("data"), modelInputNames(path))
	if err != nil {
		return err
	}
	eo, err := pipeline.EvalOptionsFromFlags(c, gate)
	if err != nil {
		return err
	}
	res, names, err := pipeline.Eval(c.Context, pipeline.EvalRequest{Path: path, RefPath: c.String("ref"), Data: ds, Session: so, Options: eo, Gate: gate})
	if err != nil {
		return err
	}
	// the report is prepared before --save-outputs is written, so an
	// unwritable report leaves nothing behind
	rep, err := prepareReport(c.String("report"))
	if err != nil {
		return err
	}
	defer rep.Abort()
	if p := c.String("save-outputs"); p != "" {
		if err := pipeline.WriteEvalOutputs(p, names, res); err != nil {
			return fmt.Errorf("--save-outputs: %w", err)
		}
	}
	return evalOutputTo(c, res, gate, rep)
}

// evalOutput checks the gate, writes --report, and prints the result as
// JSON (--json) or a table.
func evalOutput(c *cli.Context, res *evalharness.Result, gate *evalharness.Gate) error {
	rep, err := prepareReport(c.String("report"))
	if err != nil {
		return err
	}
	defer rep.Abort()
	return evalOutputTo(c, res, gate, rep)
}

// evalOutputTo is evalOutput with the report already prepared.
func evalOutputTo(c *cli.Context, res *evalharness.Result, gate *evalharness.Gate, rep *release.PendingReport) error {
	if res.Gate == nil && gateNeeded(gate, res) {
		gate.CheckResult(res)
	}
	doc, err := marshalJSON(res)
	if err != nil {
		return err
	}
	if err := rep.CommitJSON(doc); err != nil {
		return err
	}
	if c.Bool("json") {
		os.Stdout.Write(doc)
	} else {
		printEvalTable(os.Stdout, res)
	}
	if res.Gate != nil && !res.Gate.Passed {
		return gateError{msg: res.Gate.Failed()}
	}
	return nil
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// printEvalTable prints the result as an aligned table.
func printEvalTable(w io.Writer, res *evalharness.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "model\t%s\n", displayName(res.Model))
	if res.Reference != nil {
		fmt.Fprintf(tw, "reference\t%s\n", displayName(res.Reference.Model))
	}
	outs := displayNames(res.OutputNames)
	if outs == "" {
		outs = displayName(res.Output)
	}
	fmt.Fprintf(tw, "samples\t%d (batch %d, output %s)\n", res.Samples, res.Batch, outs)
	if res.Note != "" {
		fmt.Fprintf(tw, "note\t%s\n", res.Note)
	}
	if len(res.Nonfinite) > 0 {
		fmt.Fprintf(tw, "non-finite\t%s\n", displayNames(res.Nonfinite))
	}
	if res.Params > 0 {
		fmt.Fprintf(tw, "params\t%d\n", res.Params)
	}
	fmt.Fprintln(tw)
	keys := make([]string, 0, len(res.Metrics))
	for k := range res.Metrics {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if res.Reference != nil {
		fmt.Fprintln(tw, "metric\tmodel\treference")
	} else {
		fmt.Fprintln(tw, "metric\tmodel")
	}
	for _, k := range keys {
		line := fmt.Sprintf("%s\t%s", k, fmtMetric(res.Metrics[k]))
		if res.Reference != nil {
			if v, ok := res.Reference.Metrics[k]; ok {
				line += "\t" + fmtMetric(v)
			}
		}
		fmt.Fprintln(tw, line)
	}
	if len(res.Stats) > 0 {
		fmt.Fprintln(tw, "\noutput\tshape\tmin\tmax\tmean\tstd\tnon-finite")
		for _, name := range res.OutputNames {
			st := res.Stats[name]
			if st == nil {
				continue
			}
			fmt.Fprintf(tw, "%s\t%v\t%s\t%s\t%s\t%s\t%d\n", name, st.Shape, fmtPtr(st.Min), fmtPtr(st.Max), fmtPtr(st.Mean), fmtPtr(st.Std), st.Nonfinite)
		}
	}
	if res.Gate != nil {
		state := "passed"
		if !res.Gate.Passed {
			state = "FAILED: " + res.Gate.Failed()
		}
		fmt.Fprintf(tw, "\ngate\t%s: %s\n", res.Gate.Expr, state)
	}
	tw.Flush()
}

func fmtPtr(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmtMetric(*v)
}

func fmtMetric(v float64) string {
	return fmt.Sprintf("%.6g", v)
}
