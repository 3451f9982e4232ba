package evalharness

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Metric names, as used by EvalOptions.Metrics, Result.Metrics and gates.
const (
	MetricAccuracy   = "accuracy"       // top-1 accuracy against labels
	MetricTop5       = "top5"           // top-5 accuracy against labels
	MetricAgreement  = "agreement"      // fraction of samples whose top-1 equals the reference's
	MetricKL         = "kl"             // mean KL(ref ‖ cand) of the softmax over the last axis
	MetricCosine     = "cosine"         // mean cosine similarity of each sample's flattened outputs
	MetricMSE        = "mse"            // mean squared difference over all output elements
	MetricMaxAbs     = "max_abs"        // largest absolute difference over all output elements
	MetricLatency    = "latency"        // requests latency_p50_ms and latency_p90_ms
	MetricLatencyP50 = "latency_p50_ms" // median run time of one batch, milliseconds
	MetricLatencyP90 = "latency_p90_ms" // 90th percentile run time of one batch, milliseconds
	MetricThroughput = "throughput"     // samples per second over the timed runs
	MetricPerplexity = "perplexity"     // exp(mean next-token NLL) of [N, T, V] token scores
	MetricTokenAcc   = "token_accuracy" // fraction of counted positions whose argmax is the next token
	MetricPSNR       = "psnr"           // 10·log10(peak²/mse), peak = largest |reference| value
)

// psnrCeiling is the PSNR reported when the outputs are identical (mse 0),
// so that the value stays finite.
const psnrCeiling = 200.0

// AllMetrics lists the metric names EvalOptions.Metrics accepts.
var AllMetrics = []string{MetricAccuracy, MetricTop5, MetricAgreement, MetricKL, MetricCosine, MetricMSE, MetricMaxAbs, MetricLatency, MetricThroughput, MetricPerplexity, MetricTokenAcc, MetricPSNR}

var labelMetrics = map[string]bool{MetricAccuracy: true, MetricTop5: true}
var tokenMetrics = map[string]bool{MetricPerplexity: true, MetricTokenAcc: true}
var refMetrics = map[string]bool{MetricAgreement: true, MetricKL: true, MetricCosine: true, MetricMSE: true, MetricMaxAbs: true, MetricPSNR: true}
var timingMetrics = map[string]bool{MetricLatency: true, MetricThroughput: true}

// ParseMetrics parses a comma-separated list of metric names. "all" selects
// every metric (Evaluate then computes every one that applies to each
// output's shape and that the data allows).
func ParseMetrics(s string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(strings.ToLower(f))
		if f == "" {
			continue
		}
		if f == "all" {
			return append([]string(nil), AllMetrics...), nil
		}
		if f == MetricLatencyP50 || f == MetricLatencyP90 {
			f = MetricLatency
		}
		ok := false
		for _, m := range AllMetrics {
			ok = ok || m == f
		}
		if !ok {
			return nil, fmt.Errorf("evalharness: unknown metric %q (known: %s)", f, strings.Join(AllMetrics, ","))
		}
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	return out, nil
}

// classRows views an output of n samples as rows of class scores along its
// last axis. It returns the number of classes, or an error when the output
// does not hold exactly one row per sample.
func classRows(shape []int64, n int64, what string) (int, error) {
	if len(shape) < 2 {
		return 0, fmt.Errorf("evalharness: %s needs an output of shape [batch, classes]; got %v", what, shape)
	}
	c := shape[len(shape)-1]
	rows := int64(1)
	for _, d := range shape[:len(shape)-1] {
		rows *= d
	}
	if rows != n || c < 1 {
		return 0, fmt.Errorf("evalharness: %s needs one row of class scores per sample; output shape %v has %d rows for %d samples", what, shape, rows, n)
	}
	return int(c), nil
}

// Argmax returns the index of the largest value of each row of x, a
// row-major matrix with c columns (the first index on ties; NaN is never
// the largest).
func Argmax(x []float64, c int) []int {
	rows := len(x) / c
	out := make([]int, rows)
	for r := 0; r < rows; r++ {
		out[r] = argmaxRow(x[r*c : (r+1)*c])
	}
	return out
}

func argmaxRow(row []float64) int {
	best := 0
	for j := 1; j < len(row); j++ {
		if row[j] > row[best] || math.IsNaN(row[best]) && !math.IsNaN(row[j]) {
			best = j
		}
	}
	return best
}

// inTopK reports whether class label is among the k highest scores of row:
// fewer than k scores are strictly greater than its score.
func inTopK(row []float64, label int64, k int) bool {
	if label < 0 || label >= int64(len(row)) {
		return false
	}
	s := row[label]
	if math.IsNaN(s) {
		return false
	}
	greater := 0
	for _, v := range row {
		if v > s {
			greater++
		}
	}
	return greater < k
}

// LogSoftmax returns log(softmax(row)) computed stably in float64.
func LogSoftmax(row []float64) []float64 {
	m := math.Inf(-1)
	for _, v := range row {
		m = math.Max(m, v)
	}
	sum := 0.0
	for _, v := range row {
		sum += math.Exp(v - m)
	}
	lse := m + math.Log(sum)
	out := make([]float64, len(row))
	for i, v := range row {
		out[i] = v - lse
	}
	return out
}

// KL returns KL(softmax(ref) ‖ softmax(cand)) of two rows of logits.
func KL(ref, cand []float64) float64 {
	lp, lq := LogSoftmax(ref), LogSoftmax(cand)
	kl := 0.0
	for i := range lp {
		p := math.Exp(lp[i])
		if p > 0 || math.IsNaN(p) { // a NaN reference gives NaN, not 0
			kl += p * (lp[i] - lq[i])
		}
	}
	return math.Max(kl, 0)
}

// Cosine returns the cosine similarity of a and b (1 when both are zero, 0
// when only one is).
func Cosine(a, b []float64) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += a[i] * b[i]
		aa += a[i] * a[i]
		bb += b[i] * b[i]
	}
	switch {
	case aa == 0 && bb == 0:
		return 1
	case aa == 0 || bb == 0:
		return 0
	}
	return ab / (math.Sqrt(aa) * math.Sqrt(bb))
}

// Percentile returns the p-th percentile (0..100) of v with linear
// interpolation between closest ranks (numpy's default); NaN for empty v.
func Percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	pos := p / 100 * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	frac := pos - float64(lo)
	return s[lo] + (s[hi]-s[lo])*frac
}
