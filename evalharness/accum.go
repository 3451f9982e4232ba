package evalharness

import (
	"fmt"
	"math"
	"slices"
)

// outKind classifies an output by its shape.
type outKind int

const (
	kindClass outKind = iota // [N, C] class scores
	kindToken                // [N, T, V] token scores
	kindOther                // maps, embeddings, audio
)

func (k outKind) String() string {
	switch k {
	case kindClass:
		return "class"
	case kindToken:
		return "token"
	}
	return "other"
}

// kindOf classifies an output of shape s: rank 2 holds class scores, rank 3
// token scores ([N, 1, C] counts as class scores), anything else is
// compared as a whole per sample.
func kindOf(s []int64) outKind {
	switch {
	case len(s) == 2:
		return kindClass
	case len(s) == 3 && s[1] == 1:
		return kindClass
	case len(s) == 3:
		return kindToken
	}
	return kindOther
}

// applies reports whether metric m can be computed on an output of kind k.
func applies(m string, k outKind) bool {
	switch {
	case labelMetrics[m]:
		return k == kindClass
	case tokenMetrics[m]:
		return k == kindToken
	case m == MetricAgreement || m == MetricKL:
		return k != kindOther
	}
	return true
}

// shapeError is the error for a metric that does not apply to an output.
func shapeError(m, output string, shape []int64, k outKind) error {
	var hint string
	switch k {
	case kindOther:
		hint = "outputs of this shape take cosine, mse, max_abs, psnr"
	case kindToken:
		hint = "[N, T, V] token scores take perplexity, token_accuracy, agreement, kl, cosine, mse, max_abs"
	default:
		hint = "[N, C] class scores take accuracy, top5, agreement, kl, cosine, mse, max_abs"
	}
	return fmt.Errorf("evalharness: metric %s does not apply to output %q of shape %v (%s)", m, output, shape, hint)
}

// Sums are the additive statistics behind the metrics of one output:
// results of shards of a dataset (EvalOptions.Shard) merge exactly by
// adding them (MergeResults).
type Sums struct {
	// Metrics lists the metrics asked for.
	Metrics []string `json:"metrics"`
	// Labels and Reference record whether labels and a reference were
	// present; Targets whether next-token targets were.
	Labels    bool `json:"labels"`
	Reference bool `json:"reference"`
	Targets   bool `json:"targets,omitempty"`
	// Kind is the output's kind: "class", "token" or "other".
	Kind string `json:"kind,omitempty"`
	// Output names the output these sums are of.
	Output string `json:"output,omitempty"`
	// More holds the sums of the further measured outputs (EvalOptions
	// Outputs), in order.
	More []*Sums `json:"more,omitempty"`
	// Dataset names the dataset and DatasetSamples counts its samples
	// (all shards together), so that shards of different datasets are not
	// merged.
	Dataset        string `json:"dataset,omitempty"`
	DatasetSamples int64  `json:"dataset_samples,omitempty"`
	// Samples is the number of samples.
	Samples int64 `json:"samples"`
	// Correct, Top5, RefCorrect and RefTop5 count label hits of the
	// candidate and the reference; Agree counts equal top-1 predictions
	// (per sample, or per counted position of token scores).
	Correct    int64 `json:"correct"`
	Top5       int64 `json:"top5"`
	RefCorrect int64 `json:"ref_correct"`
	RefTop5    int64 `json:"ref_top5"`
	Agree      int64 `json:"agree"`
	// Positions counts the token positions that count (masked, with a
	// next-token target); NLL, RefNLL sum their negative log-likelihoods,
	// TokCorrect, RefTokCorrect their argmax hits.
	Positions     int64   `json:"positions,omitempty"`
	NLL           float64 `json:"nll,omitempty"`
	RefNLL        float64 `json:"ref_nll,omitempty"`
	TokCorrect    int64   `json:"tok_correct,omitempty"`
	RefTokCorrect int64   `json:"ref_tok_correct,omitempty"`
	// KL and Cosine sum the per-sample (per-position for KL of token
	// scores) values; SqErr sums squared differences over Elems elements;
	// MaxAbs is the largest difference; Peak the largest |reference|.
	KL     float64 `json:"kl"`
	Cosine float64 `json:"cosine"`
	SqErr  float64 `json:"sq_err"`
	Elems  int64   `json:"elems"`
	MaxAbs float64 `json:"max_abs"`
	Peak   float64 `json:"peak,omitempty"`
	// CandNonfinite and RefNonfinite count NaN and Inf values in the
	// candidate's and the reference's output.
	CandNonfinite int64 `json:"cand_nonfinite,omitempty"`
	RefNonfinite  int64 `json:"ref_nonfinite,omitempty"`
	// NonfiniteFields records the sums above that are NaN or ±Inf (JSON
	// cannot hold them; they are written as 0 and restored on reading).
	NonfiniteFields map[string]string `json:"nonfinite_fields,omitempty"`
	// BatchMs and RefBatchMs are the timed runs' durations; TimedSamples
	// and RefTimedSamples the samples they processed.
	BatchMs         []float64 `json:"batch_ms,omitempty"`
	RefBatchMs      []float64 `json:"ref_batch_ms,omitempty"`
	TimedSamples    int64     `json:"timed_samples,omitempty"`
	RefTimedSamples int64     `json:"ref_timed_samples,omitempty"`
}

// floatFields lists the float sums that may become non-finite.
func (a *Sums) floatFields() map[string]*float64 {
	return map[string]*float64{"nll": &a.NLL, "ref_nll": &a.RefNLL, "kl": &a.KL, "cosine": &a.Cosine, "sq_err": &a.SqErr, "max_abs": &a.MaxAbs, "peak": &a.Peak}
}

// OutputStats summarize one output's values over the dataset (finite
// values only) and count its non-finite ones.
type OutputStats struct {
	// Shape is the output's shape for the first batch.
	Shape []int64 `json:"shape"`
	// Min, Max, Mean and Std describe the finite values (absent when
	// there is none).
	Min  *float64 `json:"min,omitempty"`
	Max  *float64 `json:"max,omitempty"`
	Mean *float64 `json:"mean,omitempty"`
	Std  *float64 `json:"std,omitempty"`
	// Nonfinite counts NaN and ±Inf values of the candidate's output;
	// RefNonfinite the reference's (absent without a reference).
	Nonfinite    int64  `json:"nonfinite"`
	RefNonfinite *int64 `json:"ref_nonfinite,omitempty"`
}

// outAcc accumulates the metrics of one output over batches.
type outAcc struct {
	name        string
	ci, ri      int // index in the candidate's / reference's outputs
	want        map[string]bool
	kind        outKind
	shape       []int64
	resolved    bool
	min, max    float64
	sum, sumSq  float64
	finite      int64
	haveTargets bool
	Sums
}

// tokenBatch holds a batch's next-token targets and mask ([n, T], either
// may be nil).
type tokenBatch struct {
	targets, mask []int64
	t             int64
}

func nonfinite(v []float64) int64 {
	var n int64
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			n++
		}
	}
	return n
}

func rowFinite(row []float64) bool {
	for _, x := range row {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
	}
	return true
}

// logSumExp returns log Σ exp(row) computed stably (NaN when the row
// holds NaN).
func logSumExp(row []float64) float64 {
	m := math.Inf(-1)
	for _, v := range row {
		if v > m || math.IsNaN(v) {
			m = v
		}
	}
	sum := 0.0
	for _, v := range row {
		sum += math.Exp(v - m)
	}
	return m + math.Log(sum)
}

// klLSE is KL(softmax(ref) ‖ softmax(cand)) given both rows' log-sum-exp.
func klLSE(ref, cand []float64, lseR, lseC float64) float64 {
	kl := 0.0
	for i, r := range ref {
		lp := r - lseR
		if p := math.Exp(lp); p > 0 || math.IsNaN(p) { // NaN stays NaN
			kl += p * (lp - (cand[i] - lseC))
		}
	}
	if math.IsNaN(kl) {
		return kl
	}
	return math.Max(kl, 0)
}

// add accumulates one batch of n samples: cand (and ref, nil when absent)
// are this output's arrays; labels is nil when absent; tok holds the
// batch's token targets and mask.
func (a *outAcc) add(cand, ref *Array, labels []int64, tok tokenBatch, n int64) error {
	cv, err := cand.Float64()
	if err != nil {
		return fmt.Errorf("evalharness: output %q: %w", a.name, err)
	}
	var rv []float64
	if ref != nil {
		if !slices.Equal(cand.Shape, ref.Shape) {
			return fmt.Errorf("evalharness: output %q: candidate shape %v differs from the reference's %v", a.name, cand.Shape, ref.Shape)
		}
		if rv, err = ref.Float64(); err != nil {
			return fmt.Errorf("evalharness: reference output %q: %w", a.name, err)
		}
	}
	for _, x := range cv {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			a.CandNonfinite++
			continue
		}
		if a.finite == 0 || x < a.min {
			a.min = x
		}
		if a.finite == 0 || x > a.max {
			a.max = x
		}
		a.finite++
		a.sum += x
		a.sumSq += x * x
	}
	if rv != nil {
		a.RefNonfinite += nonfinite(rv)
	}
	switch a.kind {
	case kindClass:
		if err := a.addClass(cand.Shape, cv, rv, labels, n); err != nil {
			return err
		}
	case kindToken:
		if err := a.addToken(cand.Shape, cv, rv, tok, n); err != nil {
			return err
		}
	}
	if rv != nil {
		if a.want[MetricCosine] && n > 0 {
			per := len(cv) / int(n)
			for i := 0; i < int(n); i++ {
				a.Cosine += Cosine(cv[i*per:(i+1)*per], rv[i*per:(i+1)*per])
			}
		}
		for i := range cv {
			d := cv[i] - rv[i]
			a.SqErr += d * d
			if ad := math.Abs(d); ad > a.MaxAbs || math.IsNaN(ad) {
				a.MaxAbs = ad
			}
			if p := math.Abs(rv[i]); p > a.Peak || math.IsNaN(p) {
				a.Peak = p
			}
		}
		a.Elems += int64(len(cv))
	}
	a.Samples += n
	return nil
}

func (a *outAcc) addClass(shape []int64, cv, rv []float64, labels []int64, n int64) error {
	needLabels := labels != nil && (a.want[MetricAccuracy] || a.want[MetricTop5])
	needRef := rv != nil && (a.want[MetricAgreement] || a.want[MetricKL])
	if !needLabels && !needRef {
		return nil
	}
	c, err := classRows(shape, n, "output "+fmt.Sprintf("%q", a.name)+" class metrics")
	if err != nil {
		return err
	}
	hit := func(row []float64, fin bool, label int64) (top1, top5 bool) {
		if !fin {
			return false, false // NaN/Inf scores never count as right
		}
		top1 = argmaxRow(row) == int(label)
		return top1, top1 || inTopK(row, label, 5)
	}
	for i := int64(0); i < n; i++ {
		row := cv[int(i)*c : int(i+1)*c]
		cf, rf := rowFinite(row), false
		var rrow []float64
		if rv != nil {
			rrow = rv[int(i)*c : int(i+1)*c]
			rf = rowFinite(rrow)
		}
		if needLabels {
			l := labels[i]
			if l < 0 || l >= int64(c) {
				return fmt.Errorf("%w: label %d of a sample is outside the %d classes of output %q (shape %v): labels must be in [0, %d)", ErrDataset, l, c, a.name, shape, c)
			}
			t1, t5 := hit(row, cf, l)
			a.Correct += b2i(t1)
			a.Top5 += b2i(t5)
			if rrow != nil {
				t1, t5 := hit(rrow, rf, l)
				a.RefCorrect += b2i(t1)
				a.RefTop5 += b2i(t5)
			}
		}
		if needRef {
			if cf && rf && argmaxRow(row) == argmaxRow(rrow) {
				a.Agree++
			}
			if a.want[MetricKL] {
				a.KL += KL(rrow, row)
			}
		}
	}
	return nil
}

func (a *outAcc) addToken(shape []int64, cv, rv []float64, tok tokenBatch, n int64) error {
	T, V := shape[1], shape[2]
	if tok.targets != nil && tok.t != T {
		return fmt.Errorf("evalharness: output %q has %d positions but the token targets have %d", a.name, T, tok.t)
	}
	if tok.mask != nil && int64(len(tok.mask)) != n*T {
		return fmt.Errorf("evalharness: output %q has %d positions but attention_mask has %d per sample", a.name, T, int64(len(tok.mask))/max(n, 1))
	}
	for i := int64(0); i < n; i++ {
		for t := int64(0); t < T; t++ {
			at := i*T + t
			y := int64(-100)
			if tok.targets != nil {
				if t+1 >= T {
					continue
				}
				if tok.mask != nil && (tok.mask[at] == 0 || tok.mask[at+1] == 0) {
					continue
				}
				y = tok.targets[at+1]
				if y == -100 {
					continue
				}
				if y < 0 || y >= V {
					return fmt.Errorf("%w: token %d is outside the %d scores of output %q (shape %v)", ErrDataset, y, V, a.name, shape)
				}
			} else if tok.mask != nil && tok.mask[at] == 0 {
				continue
			}
			row := cv[at*V : (at+1)*V]
			var rrow []float64
			if rv != nil {
				rrow = rv[at*V : (at+1)*V]
			}
			a.Positions++
			// one log-sum-exp and argmax per row serve every metric
			lseC, amC, finC := logSumExp(row), argmaxRow(row), rowFinite(row)
			var lseR float64
			amR, finR := -1, false
			if rrow != nil {
				lseR, amR, finR = logSumExp(rrow), argmaxRow(rrow), rowFinite(rrow)
			}
			if y >= 0 {
				a.NLL += lseC - row[y]
				if finC && amC == int(y) {
					a.TokCorrect++
				}
				if rrow != nil {
					a.RefNLL += lseR - rrow[y]
					if finR && amR == int(y) {
						a.RefTokCorrect++
					}
				}
			}
			if rrow != nil {
				if finC && finR && amC == amR {
					a.Agree++
				}
				if a.want[MetricKL] {
					a.KL += klLSE(rrow, row, lseR, lseC)
				}
			}
		}
	}
	return nil
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// stats returns the output's statistics.
func (a *outAcc) stats(haveRef bool) *OutputStats {
	s := &OutputStats{Shape: a.shape, Nonfinite: a.CandNonfinite}
	if a.finite > 0 {
		f := float64(a.finite)
		mean := a.sum / f
		std := math.Sqrt(math.Max(a.sumSq/f-mean*mean, 0))
		mn, mx := a.min, a.max
		s.Min, s.Max = &mn, &mx
		if finite(mean) {
			s.Mean = &mean
		}
		if finite(std) { // sums of squares of huge values overflow
			s.Std = &std
		}
	}
	if haveRef {
		r := a.RefNonfinite
		s.RefNonfinite = &r
	}
	return s
}

// results returns the candidate's and the reference's metrics.
func (a *Sums) results(want map[string]bool, haveLabels, haveRef bool) (cand, ref map[string]float64) {
	cand, ref = map[string]float64{}, map[string]float64{}
	if a.Samples == 0 {
		return cand, ref
	}
	n := float64(a.Samples)
	if haveLabels {
		if want[MetricAccuracy] {
			cand[MetricAccuracy] = float64(a.Correct) / n
		}
		if want[MetricTop5] {
			cand[MetricTop5] = float64(a.Top5) / n
		}
		if haveRef {
			if want[MetricAccuracy] {
				ref[MetricAccuracy] = float64(a.RefCorrect) / n
			}
			if want[MetricTop5] {
				ref[MetricTop5] = float64(a.RefTop5) / n
			}
		}
	}
	per := n // divisor of agreement and kl
	if a.Kind == kindToken.String() {
		per = float64(a.Positions)
		if a.Targets && a.Positions > 0 {
			if want[MetricPerplexity] {
				cand[MetricPerplexity] = math.Exp(a.NLL / per)
			}
			if want[MetricTokenAcc] {
				cand[MetricTokenAcc] = float64(a.TokCorrect) / per
			}
			if haveRef {
				if want[MetricPerplexity] {
					ref[MetricPerplexity] = math.Exp(a.RefNLL / per)
				}
				if want[MetricTokenAcc] {
					ref[MetricTokenAcc] = float64(a.RefTokCorrect) / per
				}
			}
		}
	}
	if haveRef {
		if per > 0 {
			if want[MetricAgreement] {
				cand[MetricAgreement] = float64(a.Agree) / per
			}
			if want[MetricKL] {
				cand[MetricKL] = a.KL / per
			}
		}
		if want[MetricCosine] {
			cand[MetricCosine] = a.Cosine / n
		}
		if a.Elems > 0 {
			mse := a.SqErr / float64(a.Elems)
			if want[MetricMSE] {
				cand[MetricMSE] = mse
			}
			if want[MetricPSNR] {
				switch {
				case math.IsNaN(mse) || math.IsNaN(a.Peak):
					cand[MetricPSNR] = math.NaN()
				case mse == 0:
					cand[MetricPSNR] = psnrCeiling
				default:
					cand[MetricPSNR] = math.Min(10*math.Log10(a.Peak*a.Peak/mse), psnrCeiling)
				}
			}
		}
		if want[MetricMaxAbs] {
			cand[MetricMaxAbs] = a.MaxAbs
		}
	}
	return cand, ref
}

// add adds the additive statistics of s to a.
func (a *Sums) add(s *Sums) {
	a.Samples += s.Samples
	a.Correct += s.Correct
	a.Top5 += s.Top5
	a.RefCorrect += s.RefCorrect
	a.RefTop5 += s.RefTop5
	a.Agree += s.Agree
	a.Positions += s.Positions
	a.NLL += s.NLL
	a.RefNLL += s.RefNLL
	a.TokCorrect += s.TokCorrect
	a.RefTokCorrect += s.RefTokCorrect
	a.KL += s.KL
	a.Cosine += s.Cosine
	a.SqErr += s.SqErr
	a.Elems += s.Elems
	a.CandNonfinite += s.CandNonfinite
	a.RefNonfinite += s.RefNonfinite
	if s.MaxAbs > a.MaxAbs || math.IsNaN(s.MaxAbs) {
		a.MaxAbs = s.MaxAbs
	}
	if s.Peak > a.Peak || math.IsNaN(s.Peak) {
		a.Peak = s.Peak
	}
	a.BatchMs = append(a.BatchMs, s.BatchMs...)
	a.RefBatchMs = append(a.RefBatchMs, s.RefBatchMs...)
	a.TimedSamples += s.TimedSamples
	a.RefTimedSamples += s.RefTimedSamples
}
