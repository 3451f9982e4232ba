package evalharness

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand"
	"strings"
	"testing"
)

// shardParts evaluates a small dataset in n shards and returns the results
// as they come back from JSON reports.
func shardParts(t *testing.T, n int) []*Result {
	t.Helper()
	rng := rand.New(rand.NewSource(3))
	const samples, in, out = 23, 3, 4
	cand, ref := randomLinear(rng, in, out, 1), randomLinear(rng, in, out, 1)
	x := make([]float32, samples*in)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	labels := make([]int64, samples)
	for i := range labels {
		labels[i] = int64(rng.Intn(out))
	}
	ds, _ := NewDataset(map[string]*Array{"x": FromFloat32([]int64{samples, in}, x)}, labels)
	ds.Path = "data.npz"
	var parts []*Result
	for i := 0; i < n; i++ {
		r, err := Evaluate(context.Background(), cand, ref, ds, EvalOptions{Metrics: []string{"accuracy", "agreement", "kl"}, Batch: 4, Shard: Shard{i, n}})
		if err != nil {
			t.Fatal(err)
		}
		r.Model = "cand.onnx"
		r.Reference.Model = "ref.onnx"
		b, _ := json.Marshal(r)
		var back Result
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, &back)
	}
	return parts
}

// TestCheckShards corrupts one shard report at a time: each must be
// refused with ErrShards and a message naming the problem.
func TestCheckShards(t *testing.T) {
	if _, err := MergeResults(shardParts(t, 3)); err != nil {
		t.Fatalf("good shards: %v", err)
	}
	cases := []struct {
		name   string
		break_ func(p []*Result) []*Result
		want   string
	}{
		{"zero samples", func(p []*Result) []*Result { p[1].Samples, p[1].Sums.Samples = 0, 0; return p }, "reports 0 samples"},
		{"negative samples", func(p []*Result) []*Result { p[1].Samples, p[1].Sums.Samples = -5, -5; return p }, "reports -5 samples"},
		{"samples disagree with sums", func(p []*Result) []*Result { p[1].Samples = 1000; return p }, "but its sums count"},
		{"more correct than samples", func(p []*Result) []*Result { p[2].Sums.Correct = p[2].Sums.Samples + 1; return p }, "counts correct ="},
		{"negative agree", func(p []*Result) []*Result { p[2].Sums.Agree = -1; return p }, "counts agree = -1"},
		{"other model", func(p []*Result) []*Result { p[1].Model = "other.onnx"; return p }, "is of other.onnx"},
		{"other reference", func(p []*Result) []*Result { p[1].Reference.Model = "ref2.onnx"; return p }, `has reference "ref2.onnx"`},
		{"no reference", func(p []*Result) []*Result { p[1].Reference = nil; return p }, "has reference"},
		{"other dataset", func(p []*Result) []*Result { p[2].Sums.Dataset = "other.npz"; return p }, `dataset "other.npz"`},
		{"other dataset size", func(p []*Result) []*Result { p[2].Sums.DatasetSamples = 99; return p }, "(99 samples)"},
		{"other metrics", func(p []*Result) []*Result { p[1].Sums.Metrics = []string{"accuracy"}; return p }, "measured [accuracy]"},
		{"labels disagree", func(p []*Result) []*Result { p[1].Sums.Labels = false; return p }, "labels=false"},
		{"count disagrees", func(p []*Result) []*Result { p[2].Shard = "2/4"; return p }, "does not belong with shards of 3"},
		{"duplicate index", func(p []*Result) []*Result { return []*Result{p[0], p[1], p[1]} }, "appears twice"},
		{"missing index", func(p []*Result) []*Result { return p[:2] }, "2 of 3 shards given; missing 2"},
		{"wrong share of the dataset", func(p []*Result) []*Result {
			s := p[0].Sums
			p[0].Samples, s.Samples = p[0].Samples-1, s.Samples-1
			for _, c := range []*int64{&s.Correct, &s.Top5, &s.RefCorrect, &s.RefTop5, &s.Agree} {
				*c = min(*c, s.Samples)
			}
			return p
		}, "shard 0/3 of a 23-sample dataset holds 7"},
		{"bad batch time", func(p []*Result) []*Result { p[0].Sums.BatchMs = []float64{-1}; return p }, "batch time of -1"},
		{"not i/n", func(p []*Result) []*Result { p[0].Shard = "x"; return p }, "is not i/n"},
		{"nil result", func(p []*Result) []*Result { p[0] = nil; return p }, "not a shard result"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			parts := tc.break_(shardParts(t, 3))
			_, err := MergeResults(parts)
			if !errors.Is(err, ErrShards) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrShards and %q", err, tc.want)
			}
		})
	}
}
