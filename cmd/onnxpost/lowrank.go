package main

import (
	"encoding/json"
	"errors"
	"os"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/compress/lowrank"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/pipeline"
)

func init() {
	flags := append(append(commonFlags(), paramFlags(lowrank.Command)...),
		&cli.StringFlag{Name: "calib", Usage: "calibration `DATA` (.npz or test-data folder) for --whiten"},
	)
	register(&cli.Command{
		Name:      "lowrank",
		Usage:     "low-rank factorization of MatMul/Gemm (SVD) and Conv (channel- or spatial-wise) weights",
		ArgsUsage: "MODEL",
		Description: `Replaces weight matrices by products of two thin factors from their
truncated SVD: W ≈ (U_r√Σ_r)(√Σ_r V_rᵀ).

  MatMul, Gemm  two MatMul/Gemm nodes (bias, alpha/beta/transA/transB kept
                on the right node); a following Add stays after the second.
  channel       Conv k×k with r filters, then 1×1 Conv to the outputs.
  spatial       Conv kh×1 with r filters, then 1×kw Conv (pads, strides and
                dilations split by axis).

Exactly one rank rule: --energy E, --rank-ratio R, --rank K or --params-ratio P.
A layer whose rank would not save parameters (r ≥ mn/(m+n)) is left alone
and reported. By default Convs with stride 1 and a kernel other than 1×1 are
factorized, except the first (TRP's rule); --include REGEX selects layers by
node or weight name and takes any Conv it names. --calib DATA --whiten makes
the SVD data-aware (SVD-LLM whitening; svd and channel schemes).

The per-layer table (rank, energy kept, parameters before and after) is
printed on stderr and stored under "layers" in the JSON report.

  onnxpost lowrank mlp.onnx -o mlp_lr.onnx --energy 0.9 --data test.npz
  onnxpost lowrank cnn.onnx -o cnn_lr.onnx --scheme spatial --rank-ratio 0.5
  onnxpost lowrank model.onnx -o out.onnx --params-ratio 0.5 --calib val.npz --whiten`,
		Flags:  flags,
		Action: lowrankAction,
	})
}

func lowrankAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("lowrank takes one MODEL, got %d arguments", c.NArg())
	}
	if c.String("o") == "" {
		return usagef("-o OUT.onnx is required")
	}
	opt, err := lowrankOptions(c)
	if err != nil {
		return err
	}
	model, err := onnxio.Load(c.Args().First())
	if err != nil {
		return err
	}
	ref := model.Derive()
	if c.Bool("whiten") {
		calib, err := lowrankCalibration(c, model, opt)
		if err != nil {
			return lowrankError(err)
		}
		opt.Calib = calib
	}
	rep, err := lowrank.Apply(c.Context, model, opt)
	if err != nil {
		return lowrankError(err)
	}
	if err := rep.WriteTable(os.Stderr); err != nil {
		return err
	}
	unhandled := unhandledWeights(ref, "lowrank", computeRoles...)
	why := slices.Clone(unhandled)
	for _, l := range rep.Layers {
		if !l.Factorized {
			why = append(why, l.Weight+": "+l.Reason)
		}
	}
	if err := requireChange(c, model, ref, rep.Factorized > 0, why); err != nil {
		return err
	}
	b, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	report := map[string]any{}
	if err := json.Unmarshal(b, &report); err != nil {
		return err
	}
	if len(unhandled) > 0 {
		report["unhandled"] = unhandled
	}
	return finish(c, model, ref, report)
}

// lowrankOptions turns the flags into lowrank.Options (usage errors for bad
// combinations and values).
func lowrankOptions(c *cli.Context) (lowrank.Options, error) {
	_, args, err := checkParams(c, lowrank.Command)
	if err != nil {
		return lowrank.Options{}, err
	}
	opt, err := lowrank.OptionsFromArgs(args, uint64(c.Int64("seed")))
	if err != nil {
		return opt, usagef("%v", err)
	}
	if c.Bool("whiten") != (c.String("calib") != "") {
		return opt, usagef("--whiten and --calib DATA go together")
	}
	return opt, nil
}

// lowrankError maps option and unsupported-layer errors to usage errors.
func lowrankError(err error) error {
	if errors.Is(err, lowrank.ErrOption) || errors.Is(err, lowrank.ErrUnsupported) {
		return usagef("%v", err)
	}
	return err
}

// lowrankCalibration loads --calib and captures XᵀX of the inputs of the
// layers Apply will decompose (pipeline.LowrankCalibration).
func lowrankCalibration(c *cli.Context, model *onnxio.Model, opt lowrank.Options) (calib.Stats, error) {
	return branchStats(c, func() (calib.Stats, error) {
		ds, co, err := calibData(c)
		if err != nil {
			return nil, err
		}
		return pipeline.LowrankCalibration(c.Context, model, ds, opt, co)
	})
}
