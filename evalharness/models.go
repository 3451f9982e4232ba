package evalharness

import (
	"context"
	"fmt"
	"os"
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

// EvaluateModels opens sessions for cand and ref (ref may be nil), runs
// Evaluate and closes them.
func EvaluateModels(ctx context.Context, cand, ref *onnxio.Model, ds *Dataset, so SessionOptions, eo EvalOptions) (*Result, error) {
	cs, err := SessionFromModel(cand, so)
	if err != nil {
		return nil, fmt.Errorf("candidate model: %w", err)
	}
	defer cs.Close()
	var rr Runner
	if ref != nil {
		rs, err := SessionFromModel(ref, so)
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

// MapAbove is the size of external data above which
// SessionFromModelOutputs opens a model from a file that refers to its
// data (mapped by ONNX Runtime) rather than from a serialized copy. Tests
// lower it to take that path on small models.
var MapAbove int64 = 256 << 20

// SessionFromModelOutputs creates a session of m restricted to the named
// outputs (all when empty). A model keeping more than 256 MB in external
// data files is opened from a hidden model file written beside it that
// refers to those files (onnxio's WriteReferencing; removed once the
// session is open), with weight pre-packing off: ONNX Runtime then maps the
// weights from the data files instead of receiving a serialized copy, so
// opening and running a multi-gigabyte model costs little anonymous memory.
// Other models, and models whose folder cannot take the file, are
// serialized in memory as SessionFromModel does.
func SessionFromModelOutputs(m *onnxio.Model, outputs []string, opt SessionOptions) (*Session, error) {
	if m.ExternalBytes() > MapAbove {
		if p, err := m.WriteReferencing(); err == nil {
			defer os.Remove(p)
			o := opt
			o.NoPrepack = true
			return NewSessionFromFileOutputs(p, outputs, o)
		}
	}
	b, err := m.Bytes()
	if err != nil {
		return nil, err
	}
	return NewSessionOutputs(b, outputs, opt)
}
