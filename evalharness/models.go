package evalharness

import (
	"context"
	"fmt"
	"strings"

	"github.com/onnxpost/onnxpost/onnxio"
)

// SessionFromModel creates a session from an in-memory model (its tensors
// inlined, external data read in).
func SessionFromModel(m *onnxio.Model, opt SessionOptions) (*Session, error) {
	b, err := m.Bytes()
	if err != nil {
		return nil, err
	}
	return NewSession(b, opt)
}

// EvaluateModels opens sessions for cand and ref (ref may be nil) with
// OpenModel (so.Open, or ONNX Runtime), runs Evaluate and closes them.
func EvaluateModels(ctx context.Context, cand, ref *onnxio.Model, ds *Dataset, so SessionOptions, eo EvalOptions) (*Result, error) {
	cs, err := OpenModel(cand, nil, so)
	if err != nil {
		return nil, fmt.Errorf("candidate model: %w", err)
	}
	defer cs.Close()
	var rr Runner
	if ref != nil {
		rs, err := OpenModel(ref, nil, so)
		if err != nil {
			return nil, fmt.Errorf("reference model: %w", err)
		}
		defer rs.Close()
		rr = rs
	}
	return Evaluate(ctx, cs, rr, ds, eo)
}

// DefaultMetrics returns an explicit metric list for [N, C] class scores:
// accuracy with labels, agreement, kl and cosine with a reference, plus the
// plain metrics the gate names, keeping only those that the data and the
// presence of a reference allow. Evaluate chooses its defaults by output
// shape when EvalOptions.Metrics is empty (gates go to EvalOptions.Require);
// this list suits callers that know their output holds class scores.
func DefaultMetrics(g *Gate, haveLabels, haveRef bool) []string {
	var out []string
	seen := map[string]bool{}
	add := func(m string) {
		if seen[m] || labelMetrics[m] && !haveLabels || refMetrics[m] && !haveRef {
			return
		}
		seen[m] = true
		out = append(out, m)
	}
	if haveLabels {
		add(MetricAccuracy)
	}
	if haveRef {
		add(MetricAgreement)
		add(MetricKL)
		add(MetricCosine)
	}
	if g != nil {
		names, _ := g.Metrics()
		for _, m := range names {
			if !strings.Contains(m, ".") { // OUTPUT.metric goes to EvalOptions.Require
				add(m)
			}
		}
	}
	return out
}

// MapAbove is the size of external data above which OpenModel opens a model from a file that refers to its
// data (mapped by ONNX Runtime) rather than from a serialized copy. Tests
// lower it to take that path on small models.
var MapAbove int64 = 256 << 20
