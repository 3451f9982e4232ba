package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/compress/sparsity"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/pipeline"
)

func init() {
	register(&cli.Command{
		Name:      "sparsify",
		Usage:     "prune MatMul, Gemm and Conv weights to an N:M pattern or an unstructured sparsity",
		ArgsUsage: "MODEL",
		Description: `Sets weights to exact zeros in their own dtype and layout, so the output runs
on any runtime (TensorRT reads 2:4 zeros from ordinary dense weights).

  --pattern N:M   at most N non-zeros in each group of M consecutive weights
                  along the reduction axis of each output unit: along K for
                  MatMul B [K,N] and Gemm B (transB-aware), along the input
                  channels for each (output channel, kernel position) of Conv.
                  Layers whose reduction size is not a multiple of M are
                  skipped and reported; if none fits, the command refuses.
  --sparsity S    unstructured: exactly floor(S·n) weights pruned per layer
                  (per output row for wanda, per column block for sparsegpt),
                  or over all layers with --scope global.

Methods: magnitude (|W|), wanda (|W|·‖X‖₂ from --calib activations, compared
within each output unit), sparsegpt (optimal brain surgeon with
H = XᵀX + λI, λ = --damp × mean diag, column blocks of --blocksize, also
updates the kept weights; needs --calib). Every output group is checked
against N:M by an independent verifier; the per-layer table (sparsity, N:M
check) is printed on stderr and stored under "sparsity" in the JSON report.

  onnxpost sparsify model.onnx -o out.onnx --pattern 2:4 --method wanda --calib val.npz
  onnxpost sparsify model.onnx -o out.onnx --sparsity 0.5 --scope global --data test.npz
  onnxpost sparsify model.onnx -o out.onnx --pattern 4:8 --method sparsegpt --calib val.npz --exclude 'head|fc3'`,
		Flags: append(append(commonFlags(), paramFlags(sparsity.Command)...),
			&cli.StringFlag{Name: "calib", Usage: "calibration `DATA` (.npz or test-data folder) for wanda and sparsegpt"},
			&cli.BoolFlag{Name: "quiet", Usage: "no per-layer table or progress on stderr"},
		),
		Action: sparsifyAction,
	})
}

func sparsifyAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("sparsify takes one MODEL, got %d arguments", c.NArg())
	}
	if c.String("o") == "" {
		return usagef("-o OUT.onnx is required")
	}
	opt, sel, err := sparsifyOptions(c)
	if err != nil {
		return err
	}
	model, err := onnxio.Load(c.Args().First())
	if err != nil {
		return err
	}
	ref := model.Derive()
	if err := spillLarge(c, model); err != nil {
		return err
	}
	if !opt.Method.NeedsCalibration() {
		// weights that subgraphs read are pruned in place (magnitude needs
		// no capture of their inputs)
		sel.Subgraphs = true
		if _, err := sparsity.HoistSubgraphWeights(model, sel); err != nil {
			return err
		}
	}
	layers, skipped, err := sparsity.Candidates(model, sel)
	if err != nil {
		return err
	}
	taken := map[string]bool{}
	for _, l := range layers {
		taken[l.Name] = true
	}
	unhandled := unhandledExcept(model, "sparsify", taken, computeRoles...)
	if len(layers) == 0 {
		why := slices.Clone(unhandled)
		for _, l := range skipped {
			why = append(why, l.Name+": "+l.Skipped)
		}
		if err := nothingToTransform(c, why); err != nil {
			return err
		}
		return finish(c, model, ref, map[string]any{"sparsity": map[string]any{"layers": []any{}, "unhandled": why}})
	}
	if !opt.Pattern.IsZero() {
		// refuse before any calibration run when M fits no selected layer
		layers, _, err := sparsity.Candidates(model, sel)
		if err != nil {
			return err
		}
		fits := false
		for _, l := range layers {
			if sh, err := sparsity.ShapeOf(l.Layout, l.Dims); err == nil && sh.Fits(opt.Pattern.M) {
				fits = true
			}
		}
		if !fits {
			return usagef("%v (M=%d)", sparsity.ErrNoLayerFits, opt.Pattern.M)
		}
	}
	var cal calib.Stats
	if opt.Method.NeedsCalibration() {
		cal, err = sparsifyCalibration(c, model, sel, opt.Method)
		if err != nil {
			return err
		}
	}
	rep, err := sparsity.PruneModel(c.Context, model, opt, sel, cal)
	if err != nil {
		if errors.Is(err, sparsity.ErrNoLayerFits) || errors.Is(err, sparsity.ErrNoCalibration) {
			return usagef("%v", err)
		}
		return err
	}
	if rep.NMViolations != 0 {
		return fmt.Errorf("internal error: %d groups violate %s after pruning", rep.NMViolations, rep.Pattern)
	}
	if !c.Bool("quiet") {
		writeSparsityTable(os.Stderr, rep)
	}
	why := slices.Clone(unhandled)
	for _, l := range rep.Layers {
		switch {
		case l.Skipped != "":
			why = append(why, l.Name+": "+l.Skipped)
		case l.Pruned == 0:
			why = append(why, l.Name+": no weight pruned")
		}
	}
	if err := requireChange(c, model, ref, true, why); err != nil {
		return err
	}
	b, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	if len(unhandled) > 0 {
		m["unhandled"] = unhandled
	}
	return finish(c, model, ref, map[string]any{"sparsity": m})
}

// sparsifyOptions turns the flags into sparsity options (usage errors for
// bad values and combinations).
func sparsifyOptions(c *cli.Context) (sparsity.Options, sparsity.Selection, error) {
	_, args, err := checkParams(c, sparsity.Command)
	if err != nil {
		return sparsity.Options{}, sparsity.Selection{}, err
	}
	opt, sel, err := sparsity.OptionsFromArgs(args)
	if err != nil {
		return opt, sel, usagef("%v", err)
	}
	scope := sparsity.Scope(strings.ToLower(c.String("scope")))
	switch {
	case c.IsSet("pattern") && c.IsSet("scope"):
		return opt, sel, usagef("--scope applies to --sparsity only")
	case opt.Method.NeedsCalibration() && c.String("calib") == "":
		return opt, sel, usagef("--method %s needs calibration data: --calib DATA", opt.Method)
	case opt.Method == sparsity.SparseGPT && scope == sparsity.ScopeGlobal:
		return opt, sel, usagef("--scope global applies to magnitude and wanda; sparsegpt chooses its mask block by block")
	case c.Bool("sequential") && (!opt.Method.NeedsCalibration() || (opt.Pattern.IsZero() && scope == sparsity.ScopeGlobal)):
		return opt, sel, usagef("--sequential applies to wanda and sparsegpt with a per-layer selection")
	}
	if !c.Bool("quiet") {
		opt.Progress = os.Stderr
	}
	return opt, sel, nil
}

// writeSparsityTable prints the per-layer report.
func writeSparsityTable(w io.Writer, rep sparsity.Report) {
	what := rep.Pattern
	if what == "" {
		what = strconv.FormatFloat(rep.Sparsity, 'g', -1, 64) + " unstructured (" + string(rep.Scope) + ")"
	}
	fmt.Fprintf(w, "sparsify: %s, %s\n", rep.Method, what)
	fmt.Fprintf(w, "  %-32s %-6s %-16s %9s %9s %8s  %s\n", "weight", "layout", "shape", "params", "pruned", "zeros", "check")
	for _, l := range rep.Layers {
		shape := strings.Trim(strings.Join(strings.Fields(fmt.Sprint(l.Shape)), "x"), "[]")
		if l.Skipped != "" {
			fmt.Fprintf(w, "  %-32s %-6s %-16s %9d %9s %8s  skipped: %s\n", l.Name, l.Layout, shape, l.Params, "-", "-", l.Skipped)
			continue
		}
		check := ""
		if l.NM != nil {
			check = fmt.Sprintf("%s ok (%d groups)", l.NM.Pattern, l.NM.Groups)
			if !l.NM.OK() {
				check = fmt.Sprintf("%s: %d of %d groups violate", l.NM.Pattern, l.NM.Violations, l.NM.Groups)
			}
		}
		fmt.Fprintf(w, "  %-32s %-6s %-16s %9d %9d %7.1f%%  %s\n", l.Name, l.Layout, shape, l.Params, l.Pruned, 100*l.ZeroFraction, check)
	}
	fmt.Fprintf(w, "  total: %d of %d weights zero (%.1f%%), %d layers skipped\n", rep.Zeros, rep.Params, 100*rep.ZeroFraction, rep.Skipped)
	if h := rep.TensorRT; h != nil {
		fmt.Fprintf(w, "  TensorRT: %d layers satisfy 2:4; enable sparse kernels with trt_sparsity_enable=1 and trt_fp16_enable=1 (TensorRT EP) or trtexec %s\n", h.Layers2x4, h.Trtexec)
	}
}

// sparsifyCalibration loads --calib and captures what method reads of
// the layers sel picks (pipeline.SparsityCalibration); with --sequential,
// each layer's input on the model pruned so far
// (pipeline.SequentialSparsityCalibration).
func sparsifyCalibration(c *cli.Context, model *onnxio.Model, sel sparsity.Selection, method sparsity.Method) (calib.Stats, error) {
	return branchStats(c, func() (calib.Stats, error) {
		ds, co, err := calibData(c)
		if err != nil {
			return nil, err
		}
		if c.Bool("sequential") {
			return pipeline.SequentialSparsityCalibration(c.Context, model, ds, co), nil
		}
		return pipeline.SparsityCalibration(c.Context, model, ds, sel, method, co)
	})
}

// calibData loads --calib and returns the calibration options of
// --calib-samples, --batch and the session flags.
func calibData(c *cli.Context) (*evalharness.Dataset, pipeline.CalibOptions, error) {
	if err := c.Context.Err(); err != nil {
		return nil, pipeline.CalibOptions{}, err
	}
	ds, err := loadDataset(c, "calib")
	if err != nil {
		return nil, pipeline.CalibOptions{}, fmt.Errorf("--calib: %w", err)
	}
	so, err := sessionOptions(c)
	if err != nil {
		return nil, pipeline.CalibOptions{}, err
	}
	return ds, pipeline.CalibOptions{Session: so, Batch: c.Int("batch"), Samples: int64(c.Int("calib-samples")),
		MaxGramBytes: gramBudget, MaxBatchBytes: batchBudget}, nil
}
