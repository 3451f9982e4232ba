package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/pipeline"
	"github.com/onnxpost/onnxpost/quant"
)

func init() {
	flags := append(append(commonFlags(), paramFlags(quant.Command)...),
		&cli.StringFlag{Name: "calib", Usage: "calibration `DATA` (.npz or test-data folder) for --activations int8 and --method gptq"},
	)
	register(&cli.Command{
		Name:      "quantize",
		Usage:     "int8 (QDQ, dynamic, static), int4 (MatMulNBits or blocked QDQ; RTN or GPTQ), fp16/bf16",
		ArgsUsage: "MODEL",
		Description: `Quantizes the weights of MatMul, Gemm and Conv (and optionally activations):

  --weights int8   DequantizeLinear on int8 initializers feeding the original ops
                   (per channel: MatMul B axis 1, Gemm B axis 0 with transB,
                   Conv W axis 0), with ONNX Runtime's scale rules;
                   --activations dynamic: DynamicQuantizeLinear + MatMulInteger
                   for MatMul/Gemm (ONNX Runtime's quantize_dynamic pattern);
                   --activations int8 --calib DATA: QuantizeLinear/DequantizeLinear
                   pairs on the inputs of quantized ops, ranges by --calibrate.
  --weights int4   4-bit blocks along K for MatMul and Gemm: com.microsoft
                   MatMulNBits (default) or --format qdq (opset-21 blocked
                   DequantizeLinear); --method gptq --calib DATA uses XᵀX of each
                   layer's input (damping --damp, optional --act-order).
  --weights fp16|bf16  initializers and compute in half precision, model inputs
                   and outputs kept float32 through Casts, an op block list kept
                   in fp32; weights with values beyond ±65504 (BatchNorm
                   statistics) and weights matching --exclude stay float32
                   with their consumers (reported), Resize/Upsample scales
                   are never converted, If/Loop/Scan nodes and what their
                   subgraphs read stay float32; Constant values beyond
                   ±65504 are clamped and counted.

Weights that If/Loop/Scan subgraphs read (held there or in the main graph)
are quantized by --weights int8 (weight-only) and fp16/bf16 through a
main-graph DequantizeLinear or Cast that keeps the weight's name; the other
modes list them as skipped. On opset 11/12 models, per-channel int8 first
converts the model to opset 13. A run that changes no weight exits 1
("nothing to transform", with the reason per weight) unless --allow-noop.
Models that already hold quantization ops are refused. The report lists per
layer the scale summary and ‖W−Ŵ‖/‖W‖, and the weight bytes before and after.

  onnxpost quantize mlp.onnx -o mlp_int8.onnx --data test.npz
  onnxpost quantize mlp.onnx -o mlp_dyn.onnx --activations dynamic
  onnxpost quantize mlp.onnx -o mlp_q4.onnx --weights int4 --block 32 --method gptq --calib val.npz
  onnxpost quantize mlp.onnx -o mlp_s8.onnx --activations int8 --calib val.npz --calibrate percentile
  onnxpost quantize mlp.onnx -o mlp_fp16.onnx --weights fp16`,
		Flags:  flags,
		Action: quantizeAction,
	})
}

func quantizeAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("quantize takes one MODEL, got %d arguments", c.NArg())
	}
	if c.String("o") == "" {
		return usagef("-o OUT.onnx is required")
	}
	opt, err := quantizeOptions(c)
	if err != nil {
		return err
	}
	needCalib := opt.Activations == "int8" || opt.Method == "gptq"
	if needCalib && c.String("calib") == "" {
		what := "--activations int8"
		if opt.Method == "gptq" {
			what = "--method gptq"
		}
		return usagef("%s needs calibration data: --calib DATA", what)
	}
	if !needCalib && c.String("calib") != "" {
		return usagef("--calib is used by --activations int8 and --method gptq only")
	}
	model, err := onnxio.Load(c.Args().First())
	if err != nil {
		return err
	}
	if q := quant.QuantizedOps(model); len(q) > 0 {
		return fmt.Errorf("%s is already quantized (%s); quantize the float model", c.Args().First(), strings.Join(q, ", "))
	}
	if err := spillLarge(c, model); err != nil {
		return err
	}
	if needCalib {
		// Capture identifies consumers by node name: name unnamed nodes
		// first (Quantize names its copy the same way).
		model.EnsureNodeNames()
		acts, err := quantCapture(c, model, opt)
		if err != nil {
			return err
		}
		opt.Calibration, opt.Stats = acts, acts
	}
	cand, rep, err := quant.Quantize(c.Context, model, opt)
	if err != nil {
		if errors.Is(err, quant.ErrOptions) || errors.Is(err, quant.ErrBlockSize) {
			return usagef("%v", err)
		}
		return err
	}
	writeQuantTable(os.Stderr, rep)
	roles := computeRoles
	if opt.Weights == "fp16" || opt.Weights == "bf16" {
		roles = nil
	}
	unhandled := unhandledWeights(cand, "quantize", roles...)
	why := slices.Clone(unhandled)
	for _, sk := range rep.Skipped {
		why = append(why, sk.Name+": "+sk.Reason)
	}
	if err := requireChange(c, cand, model, len(rep.Layers) > 0, why); err != nil {
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
	if st, err := os.Stat(c.Args().First()); err == nil {
		report["input_bytes"] = st.Size()
	}
	return finish(c, cand, model, report)
}

// quantizeOptions turns the flags into quant.Options; bad values and
// combinations are usage errors.
func quantizeOptions(c *cli.Context) (quant.Options, error) {
	_, args, err := checkParams(c, quant.Command)
	if err != nil {
		return quant.Options{}, err
	}
	if args.String("weights") != "int4" && c.IsSet("method") && !strings.EqualFold(c.String("method"), "rtn") {
		return quant.Options{}, usagef("--method %s applies to --weights int4", c.String("method"))
	}
	if c.IsSet("calibrate") && args.String("activations") != "int8" {
		return quant.Options{}, usagef("--calibrate applies to --activations int8")
	}
	opt, err := quant.OptionsFromArgs(args)
	if err != nil {
		return opt, usagef("%v", err)
	}
	// Checks that need no calibration data; the calibration interfaces are
	// wired after loading the model.
	check := opt
	if opt.Activations == "int8" {
		check.Stats = calib.None
	}
	if opt.Method == "gptq" {
		check.Calibration = calib.None
	}
	if err := check.Validate(); err != nil {
		return opt, usagef("%v", err)
	}
	return opt, nil
}

// quantCapture loads --calib and captures what the options need
// (pipeline.QuantCalibration).
func quantCapture(c *cli.Context, model *onnxio.Model, opt quant.Options) (*evalharness.Stats, error) {
	return branchStats(c, func() (*evalharness.Stats, error) {
		ds, co, err := calibData(c)
		if err != nil {
			return nil, err
		}
		return pipeline.QuantCalibration(c.Context, model, ds, opt, co)
	})
}

// writeQuantTable prints the per-layer table of a quantization report.
func writeQuantTable(w io.Writer, rep *quant.Report) {
	fmt.Fprintf(w, "quantize: %s\n", rep.Mode)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "weight\top\tshape\tscheme\tscales\tscale min/mean/max\t‖W−Ŵ‖/‖W‖")
	for _, l := range rep.Layers {
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%d\t%.3g/%.3g/%.3g\t%.4f\n", l.Weight, l.Op, l.Shape, l.Scheme, l.Scales, l.ScaleMin, l.ScaleMean, l.ScaleMax, l.RelError)
	}
	tw.Flush()
	for _, s := range rep.Skipped {
		fmt.Fprintf(w, "skipped %s: %s\n", s.Name, s.Reason)
	}
	for _, a := range rep.Activations {
		fmt.Fprintf(w, "activation %s\n", a)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if rep.Clamped > 0 {
		fmt.Fprintf(w, "%d values clamped to ±65504\n", rep.Clamped)
	}
	fmt.Fprintf(w, "weights: %d → %d bytes (%.2f×), mean ‖W−Ŵ‖/‖W‖ %.4f\n", rep.WeightBytesBefore, rep.WeightBytesAfter,
		float64(rep.WeightBytesBefore)/float64(max(rep.WeightBytesAfter, 1)), rep.MeanRelError)
}
