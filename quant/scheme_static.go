package quant

import (
	"fmt"
	"math"

	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/transform"
)

// Int8Static quantizes weights to int8 and activations statically, from
// ranges measured on calibration data.
var Int8Static = &transform.Transform{
	Name: "quantize/int8-static",
	Doc: schemeDoc("int8 weights and static int8 activations: QuantizeLinear/DequantizeLinear pairs on the inputs",
		"of quantized ops, ranges from activation histograms (minmax, percentile or entropy)."),
	Params: []*transform.Param{paramWeights, paramFormat, paramActivations, paramPerChannel, symmetricParam(true),
		paramCalibrate, paramPercentile, paramCalibSamples, paramExcludeOps, paramExclude},
	Needs: transform.NeedCalibration,
	Run:   runScheme,
}

// ActivationTensors returns the activation tensors whose histograms
// calibration needs: the data inputs of the MatMul, Gemm and Conv nodes
// whose weights the options select and, for static quantization
// (Activations "int8"), their outputs unless they are graph outputs (so that
// ONNX Runtime can fuse DequantizeLinear → op → QuantizeLinear into its
// integer kernels, as for the QDQ models of its own quantizer).
func ActivationTensors(m *onnxio.Model, o Options) ([]string, error) {
	f, ts, err := calibrationTargets(m, o)
	if err != nil {
		return nil, err
	}
	return activationTensors(f, o, ts), nil
}

func activationTensors(m *onnxio.Model, o Options, ts []target) []string {
	seen := map[string]bool{}
	var out []string
	for _, a := range activationPlan(m, o, ts) {
		if !seen[a.stats] {
			seen[a.stats] = true
			out = append(out, a.stats)
		}
	}
	return out
}

// actQDQ is an activation tensor to quantize and the tensor whose
// statistics give its range.
type actQDQ struct{ tensor, stats string }

// activationPlan lists the activations to quantize: inputs of the target
// nodes and, for static quantization, their outputs that are not graph
// outputs. An output read only by a Relu takes the Relu output's range:
// the negative values it then saturates to 0 are the ones Relu zeroes, so
// nothing is lost and no code is spent on them (ONNX Runtime's quantizer
// does the same).
func activationPlan(m *onnxio.Model, o Options, ts []target) []actQDQ {
	graphOut := map[string]bool{}
	for _, v := range m.Outputs() {
		graphOut[v.Name] = true
	}
	consumers := map[string][]onnxio.Node{}
	for _, n := range m.Nodes() {
		for _, in := range n.Inputs {
			consumers[in] = append(consumers[in], n)
		}
	}
	seen := map[string]bool{}
	var out []actQDQ
	add := func(a string, output bool) {
		if a == "" || seen[a] || graphOut[a] {
			return
		}
		seen[a] = true
		st := a
		if c := consumers[a]; output && len(c) == 1 && c[0].OpType == "Relu" && !graphOut[a] {
			st = c[0].Outputs[0]
		}
		out = append(out, actQDQ{tensor: a, stats: st})
	}
	for _, t := range ts {
		add(t.node.Inputs[0], false)
	}
	if o.Activations == "int8" {
		for _, t := range ts {
			add(t.node.Outputs[0], true)
		}
	}
	return out
}

// addActivationQDQ inserts one QuantizeLinear/DequantizeLinear pair (int8,
// per tensor) on each activation tensor of activationTensors; every
// consumer of the tensor then reads the dequantized value.
func addActivationQDQ(m *onnxio.Model, o Options, ts []target, rep *Report) error {
	p := o.Percentile
	if p == 0 {
		p = 99.999
	}
	for _, plan := range activationPlan(m, o, ts) {
		a := plan.tensor
		counts, edges, err := o.Stats.ActivationHistogram(plan.stats)
		if err != nil {
			return fmt.Errorf("%w: activation %s: %v", ErrCalibration, plan.stats, err)
		}
		lo, hi, err := ActivationRange(counts, edges, o.Calibrate, p)
		if err != nil {
			return fmt.Errorf("activation %s: %w", a, err)
		}
		if !finiteScale(lo, hi) {
			// ScaleZeroPoint would fall back to a scale of 1: a
			// silently useless quantizer
			return fmt.Errorf("%w: activation %s: calibration range [%g, %g] has no finite int8 scale (Inf, NaN or values near the float32 limit in the calibration activations)", ErrNonFinite, a, lo, hi)
		}
		s, z := ScaleZeroPoint(lo, hi, -128, 127, false)
		sName, zName := m.UniqueName(a+"_scale"), m.UniqueName(a+"_zero_point")
		st, err := onnxio.FromFloat32(sName, onnxio.Float, []int64{}, []float32{s})
		if err != nil {
			return err
		}
		zt, err := onnxio.NewTensor(zName, onnxio.Int8, []int64{}, []byte{byte(int8(z))})
		if err != nil {
			return err
		}
		if err := m.SetInitializer(st); err != nil {
			return err
		}
		if err := m.SetInitializer(zt); err != nil {
			return err
		}
		qOut, dqOut := m.UniqueName(a+"_quantized"), m.UniqueName(a+"_dequantized")
		m.RenameInput(a, dqOut) // before the pair exists: its Q keeps reading a
		nodes := []onnxio.Node{
			{Name: m.UniqueName(a + "_QuantizeLinear"), OpType: "QuantizeLinear", Inputs: []string{a, sName, zName}, Outputs: []string{qOut}},
			{Name: m.UniqueName(a + "_DequantizeLinear"), OpType: "DequantizeLinear", Inputs: []string{qOut, sName, zName}, Outputs: []string{dqOut}},
		}
		if err := m.InsertNodes(nodes...); err != nil {
			return err
		}
		desc := fmt.Sprintf("%s [%.4g, %.4g] scale %.4g zp %d", a, lo, hi, s, z)
		if plan.stats != a {
			desc += " (range of " + plan.stats + ")"
		}
		rep.Activations = append(rep.Activations, desc)
	}
	return nil
}

// finiteScale reports whether the range [lo, hi] gives a finite float32
// int8 scale.
func finiteScale(lo, hi float64) bool {
	if math.IsNaN(lo) || math.IsNaN(hi) || math.IsInf(lo, 0) || math.IsInf(hi, 0) {
		return false
	}
	s := float64(float32((math.Max(hi, 0) - math.Min(lo, 0)) / 255))
	return !math.IsInf(s, 0)
}
