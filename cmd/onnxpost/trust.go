package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/evalharness"
)

// ortLibUsage is the usage text of every --ort-lib flag.
const ortLibUsage = "path of libonnxruntime.so (default: $ONNXPOST_ORT_LIB, then lib/ beside the executable or a make build's .cache/onnxruntime, then system paths; never the working directory)"

// threadsUsage is the usage text of every --threads flag.
const threadsUsage = "ONNX Runtime intra-op threads (0: its default; at most 4 per CPU, at least 64 allowed; see SECURITY.md)"

// checkThreads refuses a --threads value above the ceiling (a usage error
// naming the limit).
func checkThreads(n int) error {
	if err := evalharness.CheckThreads(n); err != nil {
		return usagef("--%v", err)
	}
	return nil
}

// cliMessage phrases a library error in the CLI's words (cliWords with
// words): a missing ONNX Runtime library gets the flag and make target
// that install or name it.
func cliMessage(err error, words func(string) string) string {
	msg := cliWords(err, words)
	switch {
	case errors.Is(err, evalharness.ErrNoLibrary):
		return fmt.Sprintf("%s\n  pass --ort-lib PATH, set %s, or run `make ort` in the source tree", msg, evalharness.LibraryEnv)
	case errors.Is(err, evalharness.ErrNoCUDA):
		return fmt.Sprintf("%s\n  pass --ort-lib with a GPU build of ONNX Runtime, or use --ep cpu", msg)
	}
	return msg
}

// threadsFlag is the --threads flag of every command that runs ONNX
// Runtime; its value is checked against the ceiling as soon as it is
// parsed, before the command does any work.
func threadsFlag() cli.Flag {
	return &cli.IntFlag{Name: "threads", Value: 0, Usage: threadsUsage,
		Action: func(_ *cli.Context, n int) error { return checkThreads(n) }}
}

// outDirFlag returns --out-dir as an absolute path, or "" when it is not
// given; the folder must exist (a usage error otherwise).
func outDirFlag(c *cli.Context) (string, error) {
	d := c.String("out-dir")
	if d == "" {
		return "", nil
	}
	st, err := os.Stat(d)
	if err != nil || !st.IsDir() {
		return "", usagef("--out-dir %s: not an existing folder", d)
	}
	return filepath.Abs(d)
}
