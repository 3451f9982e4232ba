package evalharness

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// ErrShards reports shard results that do not belong together or that
// contradict themselves; MergeResults refuses them.
var ErrShards = errors.New("evalharness: inconsistent shard results")

// CheckShards checks that parts are the complete, consistent set of shard
// results of one evaluation, as MergeResults needs them. Shard reports
// travel between jobs as files, so they are checked as untrusted input:
//
//   - every part is a shard result (Shard "i/n" and Sums) with a positive
//     sample count, equal in the result and its sums;
//   - the counts in the sums lie within [0, samples] and the timings are
//     finite and not negative;
//   - every part names the same model, output, reference model, dataset,
//     labels/reference presence and metric set;
//   - the shard counts n agree, no index repeats and none is missing;
//   - with the dataset's size recorded, each shard holds exactly the
//     samples its index selects, and all of them add up to the dataset.
//
// The error wraps ErrShards and names the shard.
func CheckShards(parts []*Result) error {
	if len(parts) == 0 {
		return fmt.Errorf("%w: no results to merge", ErrShards)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrShards, fmt.Sprintf(format, args...))
	}
	first := parts[0]
	var count int
	seen := map[int]bool{}
	var total int64
	for k, p := range parts {
		if p == nil || p.Sums == nil || p.Shard == "" {
			name := ""
			if p != nil {
				name = p.Model
			}
			return bad("result %d (%s) is not a shard result (evaluate with a shard)", k, name)
		}
		sh, err := ParseShard(p.Shard)
		if err != nil {
			return fmt.Errorf("%w: result %d: %v", ErrShards, k, err)
		}
		s := p.Sums
		switch {
		case p.Samples <= 0 || s.Samples <= 0:
			return bad("shard %s reports %d samples (sums %d); a shard holds at least one", p.Shard, p.Samples, s.Samples)
		case p.Samples != s.Samples:
			return bad("shard %s reports %d samples but its sums count %d", p.Shard, p.Samples, s.Samples)
		}
		for _, c := range []struct {
			name string
			v    int64
		}{{"correct", s.Correct}, {"top5", s.Top5}, {"ref_correct", s.RefCorrect}, {"ref_top5", s.RefTop5}, {"agree", s.Agree}} {
			if c.v < 0 || c.v > s.Samples {
				return bad("shard %s counts %s = %d of %d samples", p.Shard, c.name, c.v, s.Samples)
			}
		}
		if s.Elems < 0 || s.TimedSamples < 0 || s.RefTimedSamples < 0 {
			return bad("shard %s has negative element or timed-sample counts", p.Shard)
		}
		for _, ms := range [][]float64{s.BatchMs, s.RefBatchMs} {
			for _, v := range ms {
				if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
					return bad("shard %s has a batch time of %v ms", p.Shard, v)
				}
			}
		}
		if k == 0 {
			count = sh.Count
		}
		switch {
		case sh.Count != count:
			return bad("shard %s does not belong with shards of %d (shard %s)", p.Shard, count, first.Shard)
		case seen[sh.Index]:
			return bad("shard %s appears twice", p.Shard)
		case p.Model != first.Model || p.Output != first.Output:
			return bad("shard %s is of %s/%s, not %s/%s", p.Shard, p.Model, p.Output, first.Model, first.Output)
		case refModel(p) != refModel(first) || (p.Reference == nil) != (first.Reference == nil):
			return bad("shard %s has reference %q, shard %s %q", p.Shard, refModel(p), first.Shard, refModel(first))
		case s.Dataset != first.Sums.Dataset || s.DatasetSamples != first.Sums.DatasetSamples:
			return bad("shard %s is of dataset %q (%d samples), shard %s of %q (%d samples)", p.Shard, s.Dataset, s.DatasetSamples, first.Shard, first.Sums.Dataset, first.Sums.DatasetSamples)
		case s.Labels != first.Sums.Labels || s.Reference != first.Sums.Reference:
			return bad("shard %s was evaluated with labels=%v reference=%v, shard %s with labels=%v reference=%v", p.Shard, s.Labels, s.Reference, first.Shard, first.Sums.Labels, first.Sums.Reference)
		case strings.Join(s.Metrics, ",") != strings.Join(first.Sums.Metrics, ","):
			return bad("shard %s measured %v, shard %s %v", p.Shard, s.Metrics, first.Shard, first.Sums.Metrics)
		}
		if n := s.DatasetSamples; n > 0 {
			lo, hi, err := sh.Range(n)
			if err != nil || hi-lo != s.Samples {
				return bad("shard %s holds %d samples; shard %s of a %d-sample dataset holds %d", p.Shard, s.Samples, p.Shard, n, hi-lo)
			}
		} else if first.Sums.DatasetSamples == 0 && s.Dataset != "" {
			return bad("shard %s names dataset %q without its size", p.Shard, s.Dataset)
		}
		seen[sh.Index] = true
		total += s.Samples
	}
	if len(seen) != count {
		var missing []string
		for i := 0; i < count; i++ {
			if !seen[i] {
				missing = append(missing, fmt.Sprint(i))
			}
		}
		return bad("%d of %d shards given; missing %s", len(seen), count, strings.Join(missing, ", "))
	}
	if n := first.Sums.DatasetSamples; n > 0 && total != n {
		return bad("the shards hold %d samples, the dataset %d", total, n)
	}
	return nil
}

func refModel(r *Result) string {
	if r.Reference == nil {
		return ""
	}
	return r.Reference.Model
}
