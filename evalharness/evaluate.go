package evalharness

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// EvalOptions configure Evaluate.
type EvalOptions struct {
	// Metrics lists the metrics to compute (see AllMetrics). Empty selects
	// accuracy when the dataset has labels and agreement, kl and cosine
	// when there is a reference. Asking for a label metric without
	// labels, or a fidelity metric without a reference, is an error.
	Metrics []string
	// Batch is the number of samples per run (default 64). A model whose
	// first input axis is fixed runs with that batch size instead.
	Batch int
	// Output names the model output the metrics use (default: the first).
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
}

// ModelMetrics holds one model's metrics; it is the "reference" object of
// the JSON result.
type ModelMetrics struct {
	// Model names the model (a path, or a description).
	Model string `json:"model,omitempty"`
	// Metrics maps metric names to values.
	Metrics map[string]float64 `json:"metrics"`
}

// Result is the outcome of an evaluation, serialized as the JSON result of
// docs/ARCHITECTURE.md §4.
type Result struct {
	// Model names the evaluated model.
	Model string `json:"model"`
	// Samples is the number of samples evaluated.
	Samples int64 `json:"samples"`
	// Metrics are the candidate's metrics; fidelity metrics (agreement,
	// kl, cosine, mse, max_abs) compare it with the reference.
	Metrics map[string]float64 `json:"metrics"`
	// Reference holds the reference's own metrics (accuracy, top5,
	// latency), when there is a reference.
	Reference *ModelMetrics `json:"reference,omitempty"`
	// Gate is the gate outcome, when a gate was checked.
	Gate *GateResult `json:"gate,omitempty"`
	// Params is the model's parameter count (set by the caller).
	Params int64 `json:"params,omitempty"`
	// Bytes is the model's size in bytes (set by the caller).
	Bytes int64 `json:"bytes,omitempty"`
	// Output is the model output the metrics used.
	Output string `json:"output,omitempty"`
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

// resolveMetrics returns the metric set, checking availability.
func resolveMetrics(req []string, haveLabels, haveRef bool) (map[string]bool, error) {
	want := map[string]bool{}
	if len(req) == 0 {
		if haveLabels {
			want[MetricAccuracy] = true
		}
		if haveRef {
			want[MetricAgreement], want[MetricKL], want[MetricCosine] = true, true, true
		}
		return want, nil
	}
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
		case refMetrics[m] && !haveRef:
			return nil, fmt.Errorf("evalharness: metric %s compares with a reference: pass --ref REF.onnx", m)
		}
		want[m] = true
	}
	return want, nil
}

// batchSize returns the batch size for a runner: the fixed first dimension
// of its inputs when there is one, else want.
func batchSize(r Runner, n int64, want int) (int64, error) {
	if want <= 0 {
		want = 64
	}
	b := int64(want)
	for _, in := range r.Inputs() {
		if len(in.Shape) > 0 && in.Shape[0] > 0 {
			if n%in.Shape[0] != 0 {
				return 0, fmt.Errorf("evalharness: model input %q has a fixed batch of %d, which does not divide the %d samples", in.Name, in.Shape[0], n)
			}
			return in.Shape[0], nil
		}
	}
	if b > n {
		b = n
	}
	return b, nil
}

func outputIndex(r Runner, name string) (int, error) {
	outs := r.Outputs()
	if len(outs) == 0 {
		return 0, fmt.Errorf("evalharness: the model has no outputs")
	}
	if name == "" {
		return 0, nil
	}
	for i, o := range outs {
		if o.Name == name {
			return i, nil
		}
	}
	return 0, fmt.Errorf("evalharness: the model has no output %q", name)
}

// feed returns the batch restricted to the runner's inputs.
func feed(r Runner, ds *Dataset, i, j int64) map[string]*Array {
	m := make(map[string]*Array, len(r.Inputs()))
	for _, in := range r.Inputs() {
		m[in.Name] = ds.Inputs[in.Name].Slice(i, j)
	}
	return m
}

// Evaluate runs cand (and ref, when not nil) over the dataset in batches and
// computes the requested metrics in float64. Without ref, a dataset with
// expected outputs (an ONNX test-data folder) serves as the reference for
// the fidelity metrics.
func Evaluate(cand, ref Runner, ds *Dataset, opt EvalOptions) (*Result, error) {
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
	oi, err := outputIndex(cand, opt.Output)
	if err != nil {
		return nil, err
	}
	outName := cand.Outputs()[oi].Name
	var expected *Array
	if ref == nil && ds.Outputs != nil {
		resolveIndexed(ds.Outputs, cand.Outputs())
		expected = ds.Outputs[outName]
	}
	ri := 0
	if ref != nil {
		if ri, err = outputIndex(ref, outName); err != nil {
			ri = oi
			if oi >= len(ref.Outputs()) {
				return nil, fmt.Errorf("evalharness: the reference has no output %q", outName)
			}
		}
	}
	haveRef := ref != nil || expected != nil
	want, err := resolveMetrics(opt.Metrics, ds.Labels != nil, haveRef)
	if err != nil {
		return nil, err
	}
	timing := want[MetricLatency] || want[MetricThroughput]
	b, err := batchSize(cand, ds.N, opt.Batch)
	if err != nil {
		return nil, err
	}
	if ref != nil {
		rb, err := batchSize(ref, ds.N, int(b))
		if err != nil {
			return nil, fmt.Errorf("reference model: %w", err)
		}
		if rb != b {
			return nil, fmt.Errorf("evalharness: the candidate runs batches of %d and the reference batches of %d", b, rb)
		}
	}
	acc := &accumulator{want: want}
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
		j := min(i+b, ds.N)
		t0 := time.Now()
		co, err := cand.Run(feed(cand, ds, i, j))
		if err != nil {
			return nil, err
		}
		candTimes = append(candTimes, since(t0))
		for k := range kept {
			kept[k] = append(kept[k], co[k])
		}
		var rout *Array
		if ref != nil {
			t0 = time.Now()
			ro, err := ref.Run(feed(ref, ds, i, j))
			if err != nil {
				return nil, fmt.Errorf("reference model: %w", err)
			}
			refTimes = append(refTimes, since(t0))
			rout = ro[ri]
		} else if expected != nil {
			rout = expected.Slice(i, j)
		}
		var labels []int64
		if ds.Labels != nil {
			labels = ds.Labels[i:j]
		}
		if err := acc.add(co[oi], rout, labels, j-i); err != nil {
			return nil, err
		}
	}
	cm, rm := acc.results(ds.Labels != nil, haveRef)
	res := &Result{Samples: ds.N, Metrics: cm, Output: outName, Batch: int(b)}
	for k, parts := range kept {
		a, err := Concat(parts)
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
		ct, cs, err := extraTimes(cand, ds, b, candTimes, minRuns)
		if err != nil {
			return nil, err
		}
		addTiming(cm, ct, cs, want)
		timed.cand, timed.candSamples = ct, cs
		if ref != nil {
			rt, rs, err := extraTimes(ref, ds, b, refTimes, minRuns)
			if err != nil {
				return nil, fmt.Errorf("reference model: %w", err)
			}
			addTiming(rm, rt, rs, want)
			timed.ref, timed.refSamples = rt, rs
		}
	}
	if opt.Shard.Count > 1 {
		res.Shard = opt.Shard.String()
		sums := acc.Sums
		sums.Labels, sums.Reference = ds.Labels != nil, haveRef
		sums.Dataset, sums.DatasetSamples = ds.Path, datasetSamples
		for _, m := range AllMetrics {
			if want[m] {
				sums.Metrics = append(sums.Metrics, m)
			}
		}
		if timing {
			sums.BatchMs, sums.TimedSamples = timed.cand, timed.candSamples
			sums.RefBatchMs, sums.RefTimedSamples = timed.ref, timed.refSamples
		}
		res.Sums = &sums
	}
	if ref != nil {
		res.Reference = &ModelMetrics{Metrics: rm}
	} else if expected != nil {
		res.Reference = &ModelMetrics{Model: "expected outputs of " + ds.Path, Metrics: rm}
	}
	return res, nil
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
func extraTimes(r Runner, ds *Dataset, b int64, times []float64, minRuns int) ([]float64, int64, error) {
	samples := ds.N
	for i := int64(0); len(times) < minRuns; i += b {
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
// concatenated along the first axis, in Outputs() order.
func Predict(r Runner, ds *Dataset, batch int) ([]*Array, error) {
	if err := ds.Check(r.Inputs()); err != nil {
		return nil, err
	}
	b, err := batchSize(r, ds.N, batch)
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
		a, err := Concat(p)
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
	var total Sums
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
		case p.Model != parts[0].Model || p.Output != parts[0].Output:
			return nil, fmt.Errorf("evalharness: shard %s is of %s/%s, not %s/%s", p.Shard, p.Model, p.Output, parts[0].Model, parts[0].Output)
		case strings.Join(p.Sums.Metrics, ",") != strings.Join(parts[0].Sums.Metrics, ","):
			return nil, fmt.Errorf("evalharness: shard %s measured %v, shard %s %v", p.Shard, p.Sums.Metrics, parts[0].Shard, parts[0].Sums.Metrics)
		}
		count = sh.Count
		seen[p.Shard] = true
		s := p.Sums
		if k == 0 {
			total.Metrics, total.Labels, total.Reference = s.Metrics, s.Labels, s.Reference
		}
		total.Samples += s.Samples
		total.Correct += s.Correct
		total.Top5 += s.Top5
		total.RefCorrect += s.RefCorrect
		total.RefTop5 += s.RefTop5
		total.Agree += s.Agree
		total.KL += s.KL
		total.Cosine += s.Cosine
		total.SqErr += s.SqErr
		total.Elems += s.Elems
		total.MaxAbs = math.Max(total.MaxAbs, s.MaxAbs)
		total.BatchMs = append(total.BatchMs, s.BatchMs...)
		total.RefBatchMs = append(total.RefBatchMs, s.RefBatchMs...)
		total.TimedSamples += s.TimedSamples
		total.RefTimedSamples += s.RefTimedSamples
	}
	if len(seen) != count {
		return nil, fmt.Errorf("evalharness: %d of %d shards given", len(seen), count)
	}
	want := map[string]bool{}
	for _, m := range total.Metrics {
		want[m] = true
	}
	cm, rm := total.results(want, total.Labels, total.Reference)
	if len(total.BatchMs) > 0 {
		addTiming(cm, total.BatchMs, total.TimedSamples, want)
	}
	if len(total.RefBatchMs) > 0 {
		addTiming(rm, total.RefBatchMs, total.RefTimedSamples, want)
	}
	first := parts[0]
	res := &Result{Model: first.Model, Samples: total.Samples, Metrics: cm, Params: first.Params, Bytes: first.Bytes, Output: first.Output, Batch: first.Batch}
	if first.Reference != nil {
		res.Reference = &ModelMetrics{Model: first.Reference.Model, Metrics: rm}
	}
	return res, nil
}
