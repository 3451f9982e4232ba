package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/release"
)

// allowNoopFlag is --allow-noop of the transforming commands.
func allowNoopFlag() cli.Flag {
	return &cli.BoolFlag{Name: "allow-noop", Usage: "write the copy even when no weight was changed (otherwise that is an error: nothing to transform)"}
}

// errNothing is the error of a transforming command that changed no
// weight (exit code 1).
var errNothing = errors.New("nothing to transform")

// requireChange returns an error wrapping errNothing when the command
// changed no weight: changed is false (the command's own count of rewritten
// layers is zero) or cand's graph is the same as ref's. reasons (one line
// per candidate layer, "name: why") are listed in the message. With
// --allow-noop it only warns.
func requireChange(c *cli.Context, cand, ref *onnxio.Model, changed bool, reasons []string) error {
	if changed && (cand == nil || ref == nil || !cand.SameGraph(ref)) {
		return nil
	}
	return nothingToTransform(c, reasons)
}

// nothingToTransform is requireChange's outcome once no change is known.
func nothingToTransform(c *cli.Context, reasons []string) error {
	why := "no candidate layer"
	if len(reasons) > 0 {
		why = strings.Join(reasons, "\n  ")
	}
	if c.Bool("allow-noop") {
		fmt.Fprintf(os.Stderr, "%s: warning: nothing to transform (--allow-noop writes the unchanged copy):\n  %s\n", c.Command.Name, why)
		return nil
	}
	return fmt.Errorf("%w: no weight changed (--allow-noop writes the unchanged copy):\n  %s", errNothing, why)
}

// checkLoads creates (and closes) an ONNX Runtime session on cand, so
// that a model ONNX Runtime rejects is never written. When the library
// cannot be found and none was named (--ort-lib, $ONNXPOST_ORT_LIB), the
// check cannot run: the command warns and writes.
func checkLoads(c *cli.Context, cand *onnxio.Model, so evalharness.SessionOptions) error {
	return loadCheck(os.Stderr, c.Command.Name, cand, so, filepath.Dir(c.String("o")))
}

// loadCheck is checkLoads without the CLI context (release.CheckLoads);
// warnings go to w, a large candidate is saved for the check inside dir.
func loadCheck(w io.Writer, command string, cand *onnxio.Model, so evalharness.SessionOptions, dir string) error {
	return release.CheckLoads(cand, so, filepath.Join(dir, "candidate.onnx"), command, w)
}

// unhandledWeights lists, as "name: why" lines, the weights of m that a
// command rewriting main-graph tensors in place does not transform: those
// held or read inside If/Loop/Scan subgraphs and sparse initializers
// (onnxio.Weight.Special), float ones only: given the command's output, it
// lists what the command left. Only weights of the roles the command
// transforms are listed (all float weights when roles is empty). The lines
// are printed on stderr as "skipped ..." and belong in the command's
// report and in its nothing-to-transform reasons.
func unhandledWeights(m *onnxio.Model, command string, roles ...string) []string {
	return unhandledExcept(m, command, nil, roles...)
}

// unhandledExcept is unhandledWeights leaving out the weights named in
// handled (those the command transforms after all).
func unhandledExcept(m *onnxio.Model, command string, handled map[string]bool, roles ...string) []string {
	ws, err := m.AllWeights()
	if err != nil {
		return nil
	}
	var out []string
	for _, w := range ws {
		if w.Stored == "" && w.Scope == "" && !w.Sparse || !w.DType.IsFloat() {
			continue
		}
		if w.DType != onnxio.Float && slices.Contains(w.Via, "Cast") {
			continue // stored in half precision by the command, cast back for its reader
		}
		if len(roles) > 0 && !slices.Contains(roles, w.Role) || handled[w.Name] {
			continue
		}
		line := fmt.Sprintf("%s: %s; %s does not rewrite it", w.Name, w.Special(), command)
		fmt.Fprintf(os.Stderr, "skipped %s\n", line)
		out = append(out, line)
	}
	return out
}

// computeRoles are the roles of the weights quantize, lowrank and sparsify
// transform.
var computeRoles = []string{onnxio.RoleMatMulB, onnxio.RoleGemmB, onnxio.RoleConvW, onnxio.RoleConvTransposeW}

// largeModel is the tensor size above which a transforming command keeps
// the tensors it rewrites in a spill file (onnxio's Spill) rather than in
// memory. (Variables so that tests take the large-model paths on small
// models.)
var largeModel int64 = 256 << 20

// gramBudget bounds the Gram matrices a calibration holds at once
// (evalharness.CaptureOptions.MaxGramBytes): two of the largest of a
// 1 B-parameter decoder (its MLP down projection, 5632² float64s).
var gramBudget int64 = 512 << 20

// batchBudget bounds the activations one calibration batch fetches
// (evalharness.CaptureOptions.MaxBatchBytes): long sequences and large
// images lower the batch instead of growing the capture's memory with
// them (the library's default, which the real-model figures in
// docs/BENCHMARKS.md were measured with).
var batchBudget int64 = evalharness.DefaultMaxBatchBytes

// largeGCPercent is the garbage collector's target on large models, unless
// GOGC is set: the transforms allocate a few large buffers per layer, and
// the default (100) would let the heap grow to twice what is live.
const largeGCPercent = 25

// spillMin is the smallest rewritten tensor kept in the spill file.
var spillMin int64 = 1 << 20

// spillLarge makes a large model (over largeModel) keep the tensors the
// command rewrites, from 1 MiB up, in a spill file in the output's folder
// (unlinked at once, so nothing is left there), so that rewriting a
// multi-gigabyte model holds about one tensor at a time; it also makes the
// garbage collector keep the heap closer to what is live (largeGCPercent).
func spillLarge(c *cli.Context, m *onnxio.Model) error {
	out := c.String("o")
	if out == "" || m.TensorBytes() <= largeModel {
		return nil
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(largeGCPercent)
	}
	return m.Spill(filepath.Dir(out), spillMin)
}
