package evalharness

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// EvalOptions configure Evaluate.
type EvalOptions struct {
	// Metrics lists the metrics to compute (see AllMetrics) for every
	// measured output; each must apply to the output's shape. Empty
	// selects those that apply to the output's shape and to what the
	// dataset holds: accuracy (labels) and agreement, kl, cosine
	// (reference) for [N, C] class scores; perplexity and token_accuracy
	// (next-token targets) and agreement, kl, cosine for [N, T, V] token
	// scores; cosine, mse, max_abs, psnr (reference) for any other shape;
	// latency when there is nothing to compare. Asking for a label metric
	// without labels, or a fidelity metric without a reference, is an
	// error.
	Metrics []string
	// Require lists metrics a gate reads ("metric" for the first output,
	// "OUTPUT.metric" for a named one), computed in addition to Metrics
	// when the data allows (a gate condition on a metric that could not be
	// measured then fails with a reason); one that does not apply to the
	// output's shape is an error.
	Require []string
	// Batch is the number of samples per run (default 64). A model whose
	// batch axis is fixed runs with that batch size instead.
	Batch int
	// Outputs names the model outputs measured; the unqualified metrics
	// are the first one's. Empty: Output, else the first output with a
	// floating-point type.
	Outputs []string
	// Output names the single output measured when Outputs is empty.
	Output string
	// Warmup is the number of untimed runs before timing (default 3; only
	// with latency or throughput).
	Warmup int
	// MinTimedRuns is the least number of timed batch runs for latency and
	// throughput (default 20): small datasets are cycled through again,
	// timing only.
	MinTimedRuns int
	// Shard evaluates one contiguous part of the dataset (see Shard); the
	// result then carries Sums, and MergeResults combines the shards.
	Shard Shard
	// KeepOutputs stores the candidate's outputs of every sample in
	// Result.Outputs (concatenated along the first axis).
	KeepOutputs bool
	// NoDefaultLatency leaves latency out of the defaults when there is
	// nothing to compare (for callers that only want the statistics).
	NoDefaultLatency bool
}

// ModelMetrics holds one model's metrics; it is the "reference" object of
// the JSON result.
type ModelMetrics struct {
	// Model names the model (a path, or a description).
	Model string `json:"model,omitempty"`
	// Metrics maps metric names to values.
	Metrics Metrics `json:"metrics"`
}

// Result is the outcome of an evaluation, serialized as the JSON result of
// docs/ARCHITECTURE.md §4.
type Result struct {
	// Model names the evaluated model.
	Model string `json:"model"`
	// Samples is the number of samples evaluated.
	Samples int64 `json:"samples"`
	// Metrics are the candidate's metrics; fidelity metrics (agreement,
	// kl, cosine, mse, max_abs, psnr) compare it with the reference.
	// Unqualified names are the first measured output's; with several
	// outputs, "OUTPUT.metric" holds each output's.
	Metrics Metrics `json:"metrics"`
	// Reference holds the reference's own metrics (accuracy, top5,
	// perplexity, token_accuracy, latency), when there is a reference.
	Reference *ModelMetrics `json:"reference,omitempty"`
	// Gate is the gate outcome, when a gate was checked.
	Gate *GateResult `json:"gate,omitempty"`
	// Params is the model's parameter count (set by the caller).
	Params int64 `json:"params,omitempty"`
	// Bytes is the model's size in bytes (set by the caller).
	Bytes int64 `json:"bytes,omitempty"`
	// Output is the (first) model output the metrics used.
	Output string `json:"output,omitempty"`
	// OutputNames lists every measured output, in order.
	OutputNames []string `json:"outputs,omitempty"`
	// Nonfinite names the metrics whose value is NaN or ±Inf (written as
	// null; "reference.X" for the reference's) and the outputs whose
	// candidate values hold NaN or ±Inf.
	Nonfinite []string `json:"nonfinite,omitempty"`
	// Stats summarize each measured output's values (finite min, max,
	// mean, std and the number of non-finite values).
	Stats map[string]*OutputStats `json:"stats,omitempty"`
	// Note explains what could not be measured, e.g. that there was
	// nothing to compare with.
	Note string `json:"note,omitempty"`
	// Batch is the batch size used.
	Batch int `json:"batch,omitempty"`
	// Shard is "i/n" for the result of one shard.
	Shard string `json:"shard,omitempty"`
	// Sums holds the additive statistics of a shard's result, for
	// MergeResults.
	Sums *Sums `json:"sums,omitempty"`
	// Outputs holds the candidate's outputs, in model output order, when
	// EvalOptions.KeepOutputs is set.
	Outputs []*Array `json:"-"`
}

// NewNonfinite returns the measured outputs whose candidate values hold NaN
// or ±Inf where the reference's do not (nil without a reference).
func (r *Result) NewNonfinite() []string {
	var out []string
	for _, name := range r.OutputNames {
		s := r.Stats[name]
		if s != nil && s.Nonfinite > 0 && s.RefNonfinite != nil && *s.RefNonfinite == 0 {
			out = append(out, name)
		}
	}
	return out
}

// ErrNeedsReference reports a metric that compares the candidate with a
// reference model asked for without one.
var ErrNeedsReference = errors.New("compares with a reference: pass a reference model")

// resolveMetrics checks an explicit metric list: every name known, labels
// present for label metrics, a reference for fidelity metrics, next-token
// targets for token metrics.
func resolveMetrics(req []string, haveLabels, haveTargets, haveRef bool) (map[string]bool, error) {
	want := map[string]bool{}
	for _, m := range req {
		if m == MetricLatencyP50 || m == MetricLatencyP90 {
			m = MetricLatency
		}
		known := false
		for _, k := range AllMetrics {
			known = known || k == m
		}
		switch {
		case !known:
			return nil, fmt.Errorf("evalharness: unknown metric %q", m)
		case labelMetrics[m] && !haveLabels:
			return nil, fmt.Errorf("evalharness: metric %s needs labels: add an integer %q array to the dataset", m, LabelsName)
		case tokenMetrics[m] && !haveTargets:
			return nil, fmt.Errorf("evalharness: metric %s needs next-token targets: an integer [N, T] %q array in the dataset, or a model input %q", m, LabelsName, "input_ids")
		case refMetrics[m] && !haveRef:
			return nil, fmt.Errorf("evalharness: metric %s %w", m, ErrNeedsReference)
		}
		want[m] = true
	}
	return want, nil
}

// batchSize returns the batch size for a runner (see Dataset.BatchSize).
func batchSize(r Runner, ds *Dataset, want int) (int64, error) {
	return ds.BatchSize(r.Inputs(), want)
}

// BatchSize returns the batch size to run a model with inputs on the
// dataset (after Check): the fixed size of the batch axis of its inputs
// when there is one (1 for a model exported with a fixed batch of 1),
// else want (64 when want ≤ 0), at most N.
func (d *Dataset) BatchSize(inputs []TensorInfo, want int) (int64, error) {
	n := d.N
	if want <= 0 {
		want = 64
	}
	b := int64(want)
	if in, fixed, ok := d.fixedBatch(inputs); ok {
		if n%fixed != 0 {
			return 0, fmt.Errorf("evalharness: model input %q has a fixed batch of %d, which does not divide the %d samples", in.Name, fixed, n)
		}
		return fixed, nil
	}
	if b > n {
		b = n
	}
	return b, nil
}

// fixedBatch returns the first of inputs whose batch axis has a fixed
// size, and that size.
func (d *Dataset) fixedBatch(inputs []TensorInfo) (TensorInfo, int64, bool) {
	for _, in := range inputs {
		ax, ok := d.axes[in.Name]
		if !ok {
			ax = 0
		}
		if ax >= 0 && len(in.Shape) > ax && in.Shape[ax] > 0 {
			return in, in.Shape[ax], true
		}
	}
	return TensorInfo{}, 0, false
}

// batchFixed reports whether one of inputs fixes the batch size.
func (d *Dataset) batchFixed(inputs []TensorInfo) bool {
	_, _, ok := d.fixedBatch(inputs)
	return ok
}

// DefaultOutput returns the index of the output metrics use by default:
// the first with a floating-point type (never an integer copy of an
// input).
func DefaultOutput(outs []TensorInfo) (int, error) {
	if len(outs) == 0 {
		return 0, fmt.Errorf("evalharness: the model has no outputs")
	}
	for i, o := range outs {
		if isFloat(o.DType) {
			return i, nil
		}
	}
	return 0, fmt.Errorf("evalharness: the model has no floating-point output to measure (outputs: %s)", describeOutputs(outs))
}

func describeOutputs(outs []TensorInfo) string {
	var parts []string
	for _, o := range outs {
		parts = append(parts, fmt.Sprintf("%s %v", o.Name, o.DType))
	}
	return strings.Join(parts, ", ")
}

// OutputIndices resolves output names (empty: DefaultOutput) to indices of
// outs; every named output must exist and have a floating-point type.
func OutputIndices(outs []TensorInfo, names []string) ([]int, error) {
	if len(names) == 0 {
		i, err := DefaultOutput(outs)
		if err != nil {
			return nil, err
		}
		return []int{i}, nil
	}
	var idx []int
	seen := map[string]bool{}
	for _, name := range names {
		if seen[name] {
			return nil, fmt.Errorf("evalharness: output %q named twice", name)
		}
		seen[name] = true
		k := -1
		for i, o := range outs {
			if o.Name == name {
				k = i
			}
		}
		switch {
		case k < 0:
			return nil, fmt.Errorf("evalharness: the model has no output %q (outputs: %s)", name, describeOutputs(outs))
		case !isFloat(outs[k].DType):
			return nil, fmt.Errorf("evalharness: output %q is %v; metrics need a floating-point output", name, outs[k].DType)
		}
		idx = append(idx, k)
	}
	return idx, nil
}

// ParseOutputNames splits a comma-separated list of output names.
func ParseOutputNames(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// restrict returns the batch restricted to the runner's inputs.
func restrict(r Runner, batch map[string]*Array) map[string]*Array {
	m := make(map[string]*Array, len(r.Inputs()))
	for _, in := range r.Inputs() {
		m[in.Name] = batch[in.Name]
	}
	return m
}

// feed returns the batch [i, j) restricted to the runner's inputs.
func feed(r Runner, ds *Dataset, i, j int64) map[string]*Array {
	return restrict(r, ds.Batch(i, j))
}

func hasInput(r Runner, name string) bool {
	for _, in := range r.Inputs() {
		if in.Name == name {
			return true
		}
	}
	return false
}

// maxTokenID returns the largest target id of the dataset's next-token
// targets (src from tokenSource; labels of -100 are ignored), or -1 when
// there are none.
func maxTokenID(ds *Dataset, src string) (int64, error) {
	var a *Array
	switch src {
	case LabelsName:
		a = ds.TokenLabels
	case "input_ids":
		a = ds.Inputs["input_ids"]
	}
	if a == nil {
		return -1, nil
	}
	v, err := a.Int64()
	if err != nil {
		return -1, err
	}
	hi := int64(-1)
	for _, x := range v {
		hi = max(hi, x)
	}
	return hi, nil
}

// tokenSource says where the next-token targets and the mask of token
// scores come from: the dataset's [N, T] labels, else the model's
// input_ids; the mask is the attention_mask input when the model has one.
func tokenSource(r Runner, ds *Dataset) (targets string, mask bool) {
	switch {
	case ds.TokenLabels != nil:
		targets = LabelsName
	case hasInput(r, "input_ids") && ds.Inputs["input_ids"] != nil && isInteger(ds.Inputs["input_ids"].DType):
		targets = "input_ids"
	}
	return targets, hasInput(r, "attention_mask") && ds.Inputs["attention_mask"] != nil
}

// tokens returns a batch's targets and mask as int64 ([n, T]).
func tokens(ds *Dataset, batch map[string]*Array, src string, useMask bool, i, j int64) (tokenBatch, error) {
	var tb tokenBatch
	var ta *Array
	switch src {
	case LabelsName:
		ta = ds.TokenLabels.Slice(i, j)
	case "input_ids":
		ta = batch["input_ids"]
	}
	if ta != nil {
		if len(ta.Shape) != 2 {
			return tb, fmt.Errorf("evalharness: next-token targets %q have shape %v, want [N, T]", src, ta.Shape)
		}
		v, err := ta.Int64()
		if err != nil {
			return tb, err
		}
		tb.targets, tb.t = v, ta.Shape[1]
	}
	if useMask {
		v, err := batch["attention_mask"].Int64()
		if err != nil {
			return tb, fmt.Errorf("evalharness: attention_mask: %w", err)
		}
		tb.mask = v
	}
	return tb, nil
}

// resolve fixes the output's kind and metric set from its first batch.
//
// maxTarget is the largest next-token target id of the dataset (-1 when it
// has none): a rank-3 output with fewer scores per position than that is
// not token scores over the vocabulary but per-position features (an
// encoder's [N, T, D] hidden states) and is compared as a whole, like any
// other shape.
func (a *outAcc) resolve(shape []int64, explicit map[string]bool, all bool, require []string, haveLabels, haveRef bool, tgtT, maxTarget int64) error {
	a.kind, a.shape, a.resolved = kindOf(shape), append([]int64(nil), shape...), true
	if a.kind == kindToken && tgtT == shape[1] && maxTarget >= shape[2] {
		for m := range explicit {
			if tokenMetrics[m] {
				return fmt.Errorf("evalharness: metric %s of output %q (shape %v): the dataset's token ids reach %d, beyond the output's %d values per position, so it does not hold scores over the vocabulary (it is compared as features: cosine, mse, max_abs, psnr)", m, a.name, shape, maxTarget, shape[2])
			}
		}
		a.kind = kindOther
	}
	a.Kind = a.kind.String()
	a.haveTargets = a.kind == kindToken && tgtT == shape[1]
	a.want = map[string]bool{}
	avail := func(m string) bool {
		return !(labelMetrics[m] && !haveLabels || refMetrics[m] && !haveRef || tokenMetrics[m] && !a.haveTargets)
	}
	if all {
		for _, m := range AllMetrics {
			if !timingMetrics[m] && applies(m, a.kind) && avail(m) {
				a.want[m] = true
			}
		}
		explicit = nil
	}
	for m := range explicit {
		if timingMetrics[m] {
			continue
		}
		if !applies(m, a.kind) {
			return shapeError(m, a.name, shape, a.kind)
		}
		if tokenMetrics[m] && !a.haveTargets {
			return fmt.Errorf("evalharness: metric %s of output %q (shape %v) needs next-token targets with %d positions: an integer [N, %d] %q array, or an input_ids input", m, a.name, shape, shape[1], shape[1], LabelsName)
		}
		a.want[m] = true
	}
	if len(explicit) == 0 && !all {
		var defaults []string
		switch a.kind {
		case kindClass:
			defaults = []string{MetricAccuracy, MetricAgreement, MetricKL, MetricCosine}
		case kindToken:
			defaults = []string{MetricPerplexity, MetricTokenAcc, MetricAgreement, MetricKL, MetricCosine}
		default:
			defaults = []string{MetricCosine, MetricMSE, MetricMaxAbs, MetricPSNR}
		}
		for _, m := range defaults {
			if avail(m) {
				a.want[m] = true
			}
		}
	}
	for _, m := range require {
		if timingMetrics[m] {
			continue
		}
		if !applies(m, a.kind) {
			return shapeError(m, a.name, shape, a.kind)
		}
		if avail(m) {
			a.want[m] = true
		}
	}
	a.Targets = a.haveTargets
	return nil
}

// coversAll reports whether req names every metric (ParseMetrics("all")).
func coversAll(req []string) bool {
	have := map[string]bool{}
	for _, m := range req {
		have[m] = true
	}
	for _, m := range AllMetrics {
		if !have[m] {
			return false
		}
	}
	return true
}

// requireFor returns the required metrics of output k (named name): the
// unqualified ones for the first output, "name.metric" for any.
func requireFor(req []string, name string, first bool) []string {
	var out []string
	for _, r := range req {
		if i := strings.LastIndexByte(r, '.'); i > 0 {
			if r[:i] == name {
				out = append(out, r[i+1:])
			}
			continue
		}
		if first {
			out = append(out, r)
		}
	}
	return out
}

// Evaluate runs cand (and ref, when not nil) over the dataset in batches and
// computes the requested metrics in float64 on each measured output.
// Without ref, a dataset with expected outputs (an ONNX test-data folder)
// serves as the reference for the fidelity metrics. ctx is checked before
// every batch.
func Evaluate(ctx context.Context, cand, ref Runner, ds *Dataset, opt EvalOptions) (*Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := ds.Check(cand.Inputs()); err != nil {
		return nil, err
	}
	datasetSamples := ds.N
	if opt.Shard.Count > 1 {
		lo, hi, err := opt.Shard.Range(ds.N)
		if err != nil {
			return nil, err
		}
		ds = ds.Range(lo, hi)
	}
	if ref != nil {
		if err := ds.Check(ref.Inputs()); err != nil {
			return nil, fmt.Errorf("reference model: %w", err)
		}
	}
	names := opt.Outputs
	if len(names) == 0 && opt.Output != "" {
		names = []string{opt.Output}
	}
	idx, err := OutputIndices(cand.Outputs(), names)
	if err != nil {
		return nil, err
	}
	if ref == nil && ds.Outputs != nil {
		resolveIndexed(ds.Outputs, cand.Outputs())
	}
	accs := make([]*outAcc, len(idx))
	haveExpected := false
	for k, oi := range idx {
		name := cand.Outputs()[oi].Name
		a := &outAcc{name: name, ci: oi, ri: -1}
		if ref != nil {
			ri, err := outputIndex(ref, name)
			if err != nil {
				if oi >= len(ref.Outputs()) {
					return nil, fmt.Errorf("evalharness: the reference has no output %q", name)
				}
				ri = oi
			}
			a.ri = ri
		} else if ds.Outputs != nil && ds.Outputs[name] != nil {
			haveExpected = true
		}
		accs[k] = a
	}
	haveRef := ref != nil || haveExpected
	haveLabels := ds.Labels != nil
	tgtSrc, useMask := tokenSource(cand, ds)
	maxTarget, err := maxTokenID(ds, tgtSrc)
	if err != nil {
		return nil, err
	}
	// every metric ("all" in EvalOptions.Metrics) means every one that applies to each
	// output and that the data allows
	all := coversAll(opt.Metrics)
	explicit := map[string]bool{MetricLatency: true, MetricThroughput: true}
	if !all {
		if explicit, err = resolveMetrics(opt.Metrics, haveLabels, tgtSrc != "", haveRef); err != nil {
			return nil, err
		}
	}
	// nothing to compare: no labels, no reference, and no output that may
	// hold token scores with next-token targets
	tokenable := false
	for _, a := range accs {
		sh := cand.Outputs()[a.ci].Shape
		tokenable = tokenable || tgtSrc != "" && (sh == nil || len(sh) == 3)
	}
	nothing := !haveLabels && !haveRef && !tokenable
	timing := explicit[MetricLatency] || explicit[MetricThroughput] || len(opt.Metrics) == 0 && nothing && !opt.NoDefaultLatency
	for _, r := range opt.Require {
		timing = timing || r == MetricLatency || r == MetricThroughput
	}
	timeWant := map[string]bool{MetricLatency: explicit[MetricLatency] || !explicit[MetricThroughput], MetricThroughput: explicit[MetricThroughput]}
	for _, r := range opt.Require {
		timeWant[r] = true
	}
	b, err := batchSize(cand, ds, opt.Batch)
	if err != nil {
		return nil, err
	}
	if ref != nil {
		rb, err := batchSize(ref, ds, int(b))
		if err != nil {
			return nil, fmt.Errorf("reference model: %w", err)
		}
		if rb != b {
			return nil, fmt.Errorf("evalharness: the candidate runs batches of %d and the reference batches of %d", b, rb)
		}
	}
	var kept [][]*Array
	if opt.KeepOutputs {
		kept = make([][]*Array, len(cand.Outputs()))
	}
	var candTimes, refTimes []float64
	if timing {
		if err := warmup(cand, ds, b, opt.Warmup); err != nil {
			return nil, err
		}
		if ref != nil {
			if err := warmup(ref, ds, b, opt.Warmup); err != nil {
				return nil, fmt.Errorf("reference model: %w", err)
			}
		}
	}
	for i := int64(0); i < ds.N; i += b {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		j := min(i+b, ds.N)
		batch := ds.Batch(i, j)
		t0 := time.Now()
		co, err := cand.Run(restrict(cand, batch))
		if err != nil {
			return nil, err
		}
		candTimes = append(candTimes, since(t0))
		for k := range kept {
			kept[k] = append(kept[k], co[k])
		}
		var ro []*Array
		if ref != nil {
			t0 = time.Now()
			if ro, err = ref.Run(restrict(ref, batch)); err != nil {
				return nil, fmt.Errorf("reference model: %w", err)
			}
			refTimes = append(refTimes, since(t0))
		}
		var labels []int64
		if ds.Labels != nil {
			labels = ds.Labels[i:j]
		}
		tb, err := tokens(ds, batch, tgtSrc, useMask, i, j)
		if err != nil {
			return nil, err
		}
		for k, a := range accs {
			out := co[a.ci]
			var rout *Array
			switch {
			case ref != nil:
				rout = ro[a.ri]
			case ds.Outputs != nil && ds.Outputs[a.name] != nil:
				rout = ds.Outputs[a.name].Slice(i, j)
			}
			if !a.resolved {
				tgtT := int64(-1)
				if tb.targets != nil {
					tgtT = tb.t
				}
				if err := a.resolve(out.Shape, explicit, all, requireFor(opt.Require, a.name, k == 0), haveLabels, rout != nil, tgtT, maxTarget); err != nil {
					return nil, err
				}
			}
			if err := a.add(out, rout, labels, tb, j-i); err != nil {
				return nil, err
			}
		}
	}
	res := &Result{Samples: ds.N, Metrics: Metrics{}, Output: accs[0].name, Batch: int(b), Stats: map[string]*OutputStats{}}
	rm := Metrics{}
	for k, a := range accs {
		c, r := a.Sums.results(a.want, haveLabels, a.ri >= 0 || haveExpected)
		res.OutputNames = append(res.OutputNames, a.name)
		res.Stats[a.name] = a.stats(a.ri >= 0 || ds.Outputs != nil && ds.Outputs[a.name] != nil)
		for m, v := range c {
			if k == 0 {
				res.Metrics[m] = v
			}
			if len(accs) > 1 {
				res.Metrics[a.name+"."+m] = v
			}
		}
		for m, v := range r {
			if k == 0 {
				rm[m] = v
			}
			if len(accs) > 1 {
				rm[a.name+"."+m] = v
			}
		}
	}
	for k, parts := range kept {
		a, err := concatOutput(parts, ds.outputAxis(cand.Outputs(), k))
		if err != nil {
			return nil, fmt.Errorf("evalharness: output %q: %w", cand.Outputs()[k].Name, err)
		}
		res.Outputs = append(res.Outputs, a)
	}
	var timed struct {
		cand, ref               []float64
		candSamples, refSamples int64
	}
	if timing {
		minRuns := opt.MinTimedRuns
		if minRuns <= 0 {
			minRuns = 20
		}
		ct, cs, err := extraTimes(ctx, cand, ds, b, candTimes, minRuns)
		if err != nil {
			return nil, err
		}
		addTiming(res.Metrics, ct, cs, timeWant)
		timed.cand, timed.candSamples = ct, cs
		if ref != nil {
			rt, rs, err := extraTimes(ctx, ref, ds, b, refTimes, minRuns)
			if err != nil {
				return nil, fmt.Errorf("reference model: %w", err)
			}
			addTiming(rm, rt, rs, timeWant)
			timed.ref, timed.refSamples = rt, rs
		}
	}
	if opt.Shard.Count > 1 {
		res.Shard = opt.Shard.String()
		sums := accs[0].Sums
		sums.Labels, sums.Reference = haveLabels, haveRef
		sums.Dataset, sums.DatasetSamples = ds.Path, datasetSamples
		for _, m := range AllMetrics {
			if accs[0].want[m] || timingMetrics[m] && timing && timeWant[m] {
				sums.Metrics = append(sums.Metrics, m)
			}
		}
		if timing {
			sums.BatchMs, sums.TimedSamples = timed.cand, timed.candSamples
			sums.RefBatchMs, sums.RefTimedSamples = timed.ref, timed.refSamples
		}
		sums.Output = accs[0].name
		for _, a := range accs[1:] {
			more := a.Sums
			more.Output, more.Labels, more.Reference = a.name, haveLabels, a.ri >= 0 || haveExpected
			for _, m := range AllMetrics {
				if a.want[m] {
					more.Metrics = append(more.Metrics, m)
				}
			}
			sums.More = append(sums.More, &more)
		}
		res.Sums = &sums
	}
	if ref != nil {
		res.Reference = &ModelMetrics{Metrics: rm}
	} else if haveExpected {
		res.Reference = &ModelMetrics{Model: "expected outputs of " + ds.Path, Metrics: rm}
	}
	res.Nonfinite = res.Metrics.Nonfinite()
	if res.Reference != nil {
		for _, m := range res.Reference.Metrics.Nonfinite() {
			res.Nonfinite = append(res.Nonfinite, "reference."+m)
		}
	}
	for _, a := range accs {
		if a.CandNonfinite > 0 {
			res.Nonfinite = append(res.Nonfinite, a.name)
		}
	}
	if nothing {
		res.Note = "nothing to compare: the dataset has no labels and there is no reference model; showing output statistics"
		if timing {
			res.Note += " and latency"
		}
	}
	return res, nil
}

func outputIndex(r Runner, name string) (int, error) {
	for i, o := range r.Outputs() {
		if o.Name == name {
			return i, nil
		}
	}
	return 0, fmt.Errorf("evalharness: the model has no output %q", name)
}

func since(t0 time.Time) float64 { return float64(time.Since(t0).Nanoseconds()) / 1e6 }

func warmup(r Runner, ds *Dataset, b int64, n int) error {
	if n <= 0 {
		n = 3
	}
	for k := 0; k < n; k++ {
		if _, err := r.Run(feed(r, ds, 0, min(b, ds.N))); err != nil {
			return err
		}
	}
	return nil
}

// extraTimes cycles through the dataset until there are at least minRuns
// timed runs. It returns all run times (the evaluation pass's first) and
// the number of samples they processed.
func extraTimes(ctx context.Context, r Runner, ds *Dataset, b int64, times []float64, minRuns int) ([]float64, int64, error) {
	samples := ds.N
	for i := int64(0); len(times) < minRuns; i += b {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		if i >= ds.N {
			i = 0
		}
		j := min(i+b, ds.N)
		t0 := time.Now()
		if _, err := r.Run(feed(r, ds, i, j)); err != nil {
			return nil, 0, err
		}
		times = append(times, since(t0))
		samples += j - i
	}
	return times, samples, nil
}

// addTiming stores the latency percentiles (ms per batch) and the
// throughput (samples per second of run time).
func addTiming(m map[string]float64, times []float64, samples int64, want map[string]bool) {
	if want[MetricLatency] {
		m[MetricLatencyP50] = Percentile(times, 50)
		m[MetricLatencyP90] = Percentile(times, 90)
	}
	if want[MetricThroughput] {
		total := 0.0
		for _, t := range times {
			total += t
		}
		if total > 0 {
			m[MetricThroughput] = float64(samples) / (total / 1000)
		}
	}
}

// Predict runs r over the dataset in batches and returns every output
// concatenated along its batch axis (see Dataset.OutputBatchAxis), in
// Outputs() order.
func Predict(r Runner, ds *Dataset, batch int) ([]*Array, error) {
	if err := ds.Check(r.Inputs()); err != nil {
		return nil, err
	}
	b, err := batchSize(r, ds, batch)
	if err != nil {
		return nil, err
	}
	parts := make([][]*Array, len(r.Outputs()))
	for i := int64(0); i < ds.N; i += b {
		outs, err := r.Run(feed(r, ds, i, min(i+b, ds.N)))
		if err != nil {
			return nil, err
		}
		for k, o := range outs {
			parts[k] = append(parts[k], o)
		}
	}
	res := make([]*Array, len(parts))
	for k, p := range parts {
		a, err := concatOutput(p, ds.outputAxis(r.Outputs(), k))
		if err != nil {
			return nil, fmt.Errorf("evalharness: output %q: %w", r.Outputs()[k].Name, err)
		}
		res[k] = a
	}
	return res, nil
}

// Shard selects part Index (0-based) of Count contiguous, near-equal parts
// of a dataset: samples [N·i/n, N·(i+1)/n). Shards let an existing
// scheduler (Kubernetes Indexed Jobs, Slurm job arrays) evaluate a large
// dataset in parallel; MergeResults combines their results exactly (latency
// percentiles over the union of the timed runs).
type Shard struct {
	Index, Count int
}

// ParseShard parses "i/n" (0 <= i < n).
func ParseShard(s string) (Shard, error) {
	var sh Shard
	if _, err := fmt.Sscanf(s, "%d/%d", &sh.Index, &sh.Count); err != nil || fmt.Sprintf("%d/%d", sh.Index, sh.Count) != s {
		return Shard{}, fmt.Errorf("evalharness: shard %q is not i/n", s)
	}
	if sh.Count < 1 || sh.Index < 0 || sh.Index >= sh.Count {
		return Shard{}, fmt.Errorf("evalharness: shard %q: need 0 <= i < n", s)
	}
	return sh, nil
}

// String formats the shard as i/n.
func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.Index, s.Count) }

// Range returns the shard's samples [lo, hi) of n.
func (s Shard) Range(n int64) (lo, hi int64, err error) {
	if s.Count < 1 || s.Index < 0 || s.Index >= s.Count {
		return 0, 0, fmt.Errorf("evalharness: invalid shard %d/%d", s.Index, s.Count)
	}
	lo = n * int64(s.Index) / int64(s.Count)
	hi = n * int64(s.Index+1) / int64(s.Count)
	if hi <= lo {
		return 0, 0, fmt.Errorf("evalharness: shard %v of %d samples is empty", s, n)
	}
	return lo, hi, nil
}

// MergeResults combines the results of every shard of one evaluation
// (EvalOptions.Shard) into the result of the whole dataset. Each shard must
// appear exactly once.
func MergeResults(parts []*Result) (*Result, error) {
	if len(parts) == 0 {
		return nil, fmt.Errorf("evalharness: no results to merge")
	}
	if err := CheckShards(parts); err != nil {
		return nil, err
	}
	var totals []*Sums // the first output's, then Sums.More's
	seen := map[string]bool{}
	count := -1
	for k, p := range parts {
		if p.Sums == nil || p.Shard == "" {
			return nil, fmt.Errorf("evalharness: result %d (%s) is not a shard result (evaluate with a shard)", k, p.Model)
		}
		sh, err := ParseShard(p.Shard)
		if err != nil {
			return nil, err
		}
		switch {
		case count >= 0 && sh.Count != count:
			return nil, fmt.Errorf("evalharness: shard %s does not belong with shards of %d", p.Shard, count)
		case seen[p.Shard]:
			return nil, fmt.Errorf("evalharness: shard %s appears twice", p.Shard)
		case p.Model != parts[0].Model || p.Output != parts[0].Output || strings.Join(p.OutputNames, ",") != strings.Join(parts[0].OutputNames, ","):
			return nil, fmt.Errorf("evalharness: shard %s is of %s/%s, not %s/%s", p.Shard, p.Model, p.Output, parts[0].Model, parts[0].Output)
		case strings.Join(p.Sums.Metrics, ",") != strings.Join(parts[0].Sums.Metrics, ","):
			return nil, fmt.Errorf("evalharness: shard %s measured %v, shard %s %v", p.Shard, p.Sums.Metrics, parts[0].Shard, parts[0].Sums.Metrics)
		case len(p.Sums.More) != len(parts[0].Sums.More):
			return nil, fmt.Errorf("evalharness: shard %s measured %d outputs, shard %s %d", p.Shard, len(p.Sums.More)+1, parts[0].Shard, len(parts[0].Sums.More)+1)
		}
		count = sh.Count
		seen[p.Shard] = true
		all := append([]*Sums{p.Sums}, p.Sums.More...)
		for o, s := range all {
			if k == 0 {
				totals = append(totals, &Sums{Metrics: s.Metrics, Labels: s.Labels, Reference: s.Reference, Kind: s.Kind, Targets: s.Targets, Output: s.Output})
			}
			totals[o].add(s)
		}
	}
	if len(seen) != count {
		return nil, fmt.Errorf("evalharness: %d of %d shards given", len(seen), count)
	}
	first := parts[0]
	res := &Result{Model: first.Model, Samples: totals[0].Samples, Metrics: Metrics{}, Params: first.Params, Bytes: first.Bytes, Output: first.Output, OutputNames: first.OutputNames, Batch: first.Batch, Stats: map[string]*OutputStats{}}
	rm := Metrics{}
	for o, total := range totals {
		name := total.Output
		if name == "" {
			name = first.Output
		}
		want := map[string]bool{}
		for _, m := range total.Metrics {
			want[m] = true
		}
		cm, r := total.results(want, total.Labels, total.Reference)
		if o == 0 {
			if len(total.BatchMs) > 0 {
				addTiming(cm, total.BatchMs, total.TimedSamples, want)
			}
			if len(total.RefBatchMs) > 0 {
				addTiming(r, total.RefBatchMs, total.RefTimedSamples, want)
			}
		}
		for m, v := range cm {
			if o == 0 {
				res.Metrics[m] = v
			}
			if len(totals) > 1 && !timingMetrics[m] && m != MetricLatencyP50 && m != MetricLatencyP90 {
				res.Metrics[name+"."+m] = v
			}
		}
		for m, v := range r {
			if o == 0 {
				rm[m] = v
			}
			if len(totals) > 1 && !timingMetrics[m] && m != MetricLatencyP50 && m != MetricLatencyP90 {
				rm[name+"."+m] = v
			}
		}
		st := &OutputStats{Nonfinite: total.CandNonfinite}
		if total.Reference {
			rn := total.RefNonfinite
			st.RefNonfinite = &rn
		}
		res.Stats[name] = st
	}
	res.Nonfinite = res.Metrics.Nonfinite()
	if first.Reference != nil {
		res.Reference = &ModelMetrics{Model: first.Reference.Model, Metrics: rm}
		for _, m := range rm.Nonfinite() {
			res.Nonfinite = append(res.Nonfinite, "reference."+m)
		}
	}
	for _, total := range totals {
		if total.CandNonfinite > 0 {
			name := total.Output
			if name == "" {
				name = first.Output
			}
			res.Nonfinite = append(res.Nonfinite, name)
		}
	}
	return res, nil
}
