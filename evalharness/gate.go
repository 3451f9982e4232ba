package evalharness

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrGate reports a gate expression that does not parse.
var ErrGate = errors.New("evalharness: bad gate expression")

// Condition is one comparison of a gate, e.g. accuracy_drop<=0.01.
type Condition struct {
	// Metric is a metric name (see AllMetrics, plus latency_p50_ms,
	// latency_p90_ms), optionally followed by "_drop" for the reference's
	// value minus the candidate's or "_ratio" for the candidate's divided
	// by the reference's, and optionally preceded by "OUTPUT." for a named
	// output's metric.
	Metric string
	// Op is one of <=, >=, <, >, ==.
	Op string
	// Value is the threshold.
	Value float64
}

// String formats the condition as it is written in a gate expression.
func (c Condition) String() string {
	return c.Metric + c.Op + strconv.FormatFloat(c.Value, 'g', -1, 64)
}

// Gate is a conjunction of conditions: every one must hold.
type Gate struct {
	// Expr is the expression the gate was parsed from.
	Expr string
	// Conditions are the parsed conditions, in expression order.
	Conditions []Condition
}

// gateMetrics are the metric names a gate may test (before an optional
// _drop suffix).
var gateMetrics = map[string]bool{
	MetricAccuracy: true, MetricTop5: true, MetricAgreement: true, MetricKL: true,
	MetricCosine: true, MetricMSE: true, MetricMaxAbs: true, MetricLatencyP50: true,
	MetricLatencyP90: true, MetricThroughput: true, MetricPSNR: true, MetricPerplexity: true,
	MetricTokenAcc: true,
}

// splitCondMetric splits a condition's metric into the output prefix
// ("OUTPUT." or ""), the base metric name and the suffix ("_drop",
// "_ratio" or "").
func splitCondMetric(m string) (prefix, base, suffix string) {
	if k := strings.LastIndexByte(m, '.'); k > 0 {
		prefix, m = m[:k+1], m[k+1:]
	}
	for _, s := range []string{"_drop", "_ratio"} {
		if b, ok := strings.CutSuffix(m, s); ok {
			return prefix, b, s
		}
	}
	return prefix, m, ""
}

// ParseGate parses comma-separated conditions such as
// "accuracy_drop<=0.01,kl<=0.02,agreement>=0.99". An empty expression gives
// a gate with no conditions, which always passes.
func ParseGate(expr string) (*Gate, error) {
	g := &Gate{Expr: strings.TrimSpace(expr)}
	if g.Expr == "" {
		return g, nil
	}
	for _, part := range strings.Split(g.Expr, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("%w: empty condition in %q", ErrGate, expr)
		}
		i := strings.IndexAny(part, "<>=!")
		if i <= 0 {
			return nil, fmt.Errorf("%w: %q is not METRIC<=VALUE (operators: <= >= < > ==)", ErrGate, part)
		}
		metric := strings.TrimSpace(part[:i])
		prefix := ""
		if k := strings.LastIndexByte(metric, '.'); k > 0 {
			prefix, metric = metric[:k+1], metric[k+1:]
		}
		metric = prefix + strings.ToLower(metric)
		rest := part[i:]
		var op string
		for _, o := range []string{"<=", ">=", "==", "<", ">"} {
			if strings.HasPrefix(rest, o) {
				op = o
				break
			}
		}
		if op == "" {
			return nil, fmt.Errorf("%w: %q has an unknown operator (use <= >= < > ==)", ErrGate, part)
		}
		vs := strings.TrimSpace(rest[len(op):])
		v, err := strconv.ParseFloat(vs, 64)
		if err != nil || math.IsNaN(v) {
			return nil, fmt.Errorf("%w: %q: %q is not a number", ErrGate, part, vs)
		}
		_, base, _ := splitCondMetric(metric)
		if !gateMetrics[base] {
			return nil, fmt.Errorf("%w: %q: unknown metric %q (known: accuracy, top5, agreement, kl, cosine, mse, max_abs, psnr, perplexity, token_accuracy, latency_p50_ms, latency_p90_ms, throughput; X_drop for the reference's X minus the candidate's, X_ratio for the candidate's X over the reference's; OUTPUT.X for a named output)", ErrGate, part, metric)
		}
		if prefix != "" && (base == MetricLatencyP50 || base == MetricLatencyP90 || base == MetricThroughput) {
			return nil, fmt.Errorf("%w: %q: %s is measured per model, not per output", ErrGate, part, base)
		}
		g.Conditions = append(g.Conditions, Condition{Metric: metric, Op: op, Value: v})
	}
	return g, nil
}

// Metrics returns the metric names that evaluating the gate needs (for
// EvalOptions.Metrics), and whether it needs a reference.
func (g *Gate) Metrics() (names []string, needRef bool) {
	seen := map[string]bool{}
	for _, c := range g.Conditions {
		prefix, base, suffix := splitCondMetric(c.Metric)
		if suffix != "" || refMetrics[base] {
			needRef = true
		}
		if base == MetricLatencyP50 || base == MetricLatencyP90 {
			base = MetricLatency
		}
		if !seen[prefix+base] {
			seen[prefix+base] = true
			names = append(names, prefix+base)
		}
	}
	return names, needRef
}

// GateResult is the outcome of checking a gate; it is the "gate" object
// of the JSON result.
type GateResult struct {
	// Expr is the gate expression.
	Expr string `json:"expr"`
	// Passed is true when every condition holds.
	Passed bool `json:"passed"`
	// Conditions details each condition.
	Conditions []ConditionResult `json:"conditions,omitempty"`
}

// ConditionResult is the outcome of one condition.
type ConditionResult struct {
	// Condition is the condition as written.
	Condition string `json:"condition"`
	// Value is the measured value (absent when it could not be measured).
	Value *float64 `json:"value,omitempty"`
	// Passed is true when the condition holds.
	Passed bool `json:"passed"`
	// Reason explains a condition that could not be evaluated.
	Reason string `json:"reason,omitempty"`
}

// Failed returns a one-line description of the failed conditions.
func (r *GateResult) Failed() string {
	var parts []string
	for _, c := range r.Conditions {
		if c.Passed {
			continue
		}
		switch {
		case c.Reason != "":
			parts = append(parts, c.Condition+" ("+c.Reason+")")
		default:
			parts = append(parts, fmt.Sprintf("%s (measured %.6g)", c.Condition, *c.Value))
		}
	}
	return strings.Join(parts, ", ")
}

// Check evaluates the gate on a candidate's metrics and the reference's
// (ref may be nil). A condition whose metric was not measured fails, with
// a reason; a NaN or ±Inf value fails every condition that reads it.
func (g *Gate) Check(cand, ref map[string]float64) *GateResult {
	r := &GateResult{Expr: g.Expr, Passed: true}
	for _, c := range g.Conditions {
		cr := ConditionResult{Condition: c.String()}
		v, reason := lookup(c.Metric, cand, ref)
		switch {
		case reason != "":
			cr.Reason = reason
		case !finite(v):
			cr.Reason = "measured " + formatNonfinite(v) + ": a non-finite value fails every condition"
		default:
			cr.Value = &v
			cr.Passed = compare(v, c.Op, c.Value)
		}
		r.Passed = r.Passed && cr.Passed
		r.Conditions = append(r.Conditions, cr)
	}
	return r
}

// CheckResult evaluates the gate on an evaluation result and stores the
// outcome in res.Gate. Besides the gate's conditions, a measured output
// whose candidate values hold NaN or ±Inf where the reference's do not
// fails the gate (Result.NewNonfinite).
func (g *Gate) CheckResult(res *Result) *GateResult {
	var ref map[string]float64
	if res.Reference != nil {
		ref = res.Reference.Metrics
	}
	cand := map[string]float64(res.Metrics)
	if len(res.OutputNames) <= 1 && res.Output != "" {
		// with one output measured, OUTPUT.metric is the plain metric
		cand, ref = qualify(cand, res.Output), qualify(ref, res.Output)
	}
	res.Gate = g.Check(cand, ref)
	measured := map[string]bool{res.Output: true}
	for _, n := range res.OutputNames {
		measured[n] = true
	}
	for i, c := range g.Conditions {
		if prefix, _, _ := splitCondMetric(c.Metric); prefix != "" && !measured[strings.TrimSuffix(prefix, ".")] {
			res.Gate.Conditions[i].Reason = fmt.Sprintf("output %q was not measured (name it in EvalOptions.Outputs)", strings.TrimSuffix(prefix, "."))
		}
	}
	for _, name := range res.NewNonfinite() {
		res.Gate.Passed = false
		res.Gate.Conditions = append(res.Gate.Conditions, ConditionResult{
			Condition: "finite(" + name + ")",
			Reason:    fmt.Sprintf("output %q holds %d NaN/Inf values where the reference's holds none", name, res.Stats[name].Nonfinite),
		})
	}
	return res.Gate
}

// qualify returns m plus every plain metric under "output.metric".
func qualify(m map[string]float64, output string) map[string]float64 {
	if m == nil {
		return nil
	}
	out := make(map[string]float64, 2*len(m))
	for k, v := range m {
		out[k] = v
		if !strings.Contains(k, ".") {
			out[output+"."+k] = v
		}
	}
	return out
}

func lookup(metric string, cand, ref map[string]float64) (float64, string) {
	prefix, base, suffix := splitCondMetric(metric)
	key := prefix + base
	if suffix != "" {
		c, okc := cand[key]
		r, okr := ref[key]
		switch {
		case !okc:
			return 0, key + " was not measured (needs evaluation data" + labelHint(base) + ")"
		case !okr:
			return 0, "the reference's " + key + " was not measured (needs a reference model)"
		case suffix == "_ratio":
			return c / r, ""
		}
		return r - c, ""
	}
	v, ok := cand[key]
	if !ok {
		if refMetrics[base] {
			return 0, key + " was not measured (needs evaluation data and a reference model)"
		}
		return 0, key + " was not measured (needs evaluation data" + labelHint(base) + ")"
	}
	return v, ""
}

func labelHint(m string) string {
	switch {
	case labelMetrics[m]:
		return " with labels"
	case tokenMetrics[m]:
		return " with next-token targets"
	}
	return ""
}

func compare(v float64, op string, t float64) bool {
	switch op {
	case "<=":
		return v <= t
	case ">=":
		return v >= t
	case "<":
		return v < t
	case ">":
		return v > t
	case "==":
		return v == t
	}
	return false
}
