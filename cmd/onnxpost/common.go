package main

import (
	"github.com/urfave/cli/v2"
)

// commonFlags are the flags every transforming command takes
// (ARCHITECTURE.md §3). Commands append their own flags to these.
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
		&cli.StringFlag{Name: "ort-lib", Usage: "path of libonnxruntime.so (default: $ONNXPOST_ORT_LIB, then .cache/onnxruntime, then system paths)"},
		&cli.IntFlag{Name: "batch", Value: 64, Usage: "evaluation batch size"},
		&cli.IntFlag{Name: "threads", Value: 0, Usage: "ONNX Runtime intra-op threads (0: its default)"},
	}
}
