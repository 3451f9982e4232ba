package evalharness

import (
	"context"
	"encoding/json"
	"math/rand"
	"strings"
	"testing"
)

func TestShardsMerge(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	const n, in, out = 37, 4, 6
	cand, ref := randomLinear(rng, in, out, 1), randomLinear(rng, in, out, 1)
	x := make([]float32, n*in)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	labels := make([]int64, n)
	for i := range labels {
		labels[i] = int64(rng.Intn(out))
	}
	ds, _ := NewDataset(map[string]*Array{"x": FromFloat32([]int64{n, in}, x)}, labels)
	opt := EvalOptions{Metrics: []string{"accuracy", "top5", "agreement", "kl", "cosine", "mse", "max_abs", "latency", "throughput"}, Batch: 5}
	whole, err := Evaluate(context.Background(), cand, ref, ds, opt)
	if err != nil {
		t.Fatal(err)
	}
	var parts []*Result
	for _, i := range []int{2, 0, 3, 1} { // any order
		o := opt
		o.Shard = Shard{i, 4}
		r, err := Evaluate(context.Background(), cand, ref, ds, o)
		if err != nil {
			t.Fatal(err)
		}
		// Through JSON, as reports travel between jobs.
		b, _ := json.Marshal(r)
		var back Result
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, &back)
	}
	merged, err := MergeResults(parts)
	if err != nil {
		t.Fatal(err)
	}
	if merged.Samples != n {
		t.Errorf("samples %d", merged.Samples)
	}
	for k, w := range whole.Metrics {
		if strings.HasPrefix(k, "latency") || k == "throughput" {
			if merged.Metrics[k] <= 0 {
				t.Errorf("%s = %v", k, merged.Metrics[k])
			}
			continue
		}
		if g := merged.Metrics[k]; !near(g, w, 1e-12) {
			t.Errorf("%s: merged %v, whole %v", k, g, w)
		}
	}
	if !near(merged.Reference.Metrics["accuracy"], whole.Reference.Metrics["accuracy"], 0) {
		t.Errorf("reference accuracy %v vs %v", merged.Reference.Metrics, whole.Reference.Metrics)
	}
	for _, c := range []struct {
		parts []*Result
		want  string
	}{
		{parts[:3], "3 of 4 shards"},
		{[]*Result{parts[0], parts[0], parts[1], parts[2]}, "appears twice"},
		{[]*Result{whole}, "not a shard result"},
		{nil, "no results"},
	} {
		if _, err := MergeResults(c.parts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want %q", err, c.want)
		}
	}
}

func TestParseShard(t *testing.T) {
	for _, c := range []struct {
		s  string
		ok bool
	}{{"0/1", true}, {"3/4", true}, {"4/4", false}, {"-1/4", false}, {"1/0", false}, {"a/b", false}, {"1/4x", false}, {"1", false}} {
		_, err := ParseShard(c.s)
		if (err == nil) != c.ok {
			t.Errorf("%q: %v", c.s, err)
		}
	}
	if lo, hi, _ := (Shard{2, 3}).Range(10); lo != 6 || hi != 10 {
		t.Errorf("2/3 of 10: [%d, %d)", lo, hi)
	}
	if _, _, err := (Shard{0, 5}).Range(3); err == nil {
		t.Error("empty shard accepted")
	}
}

// TestShardsMergeSeveralOutputs: shards that measure several outputs merge
// into the whole dataset's per-output metrics (z [N, 9] counts as
// class scores: agreement, kl, cosine; y a map: cosine, mse, max_abs, psnr).
func TestShardsMergeSeveralOutputs(t *testing.T) {
	two := func(scale float64) Runner {
		m := mapRunner(scale, 0)
		inner := m.fn
		m.outs = append(m.outs, TensorInfo{Name: "z", DType: m.outs[0].DType, Shape: []int64{-1, 9}})
		m.fn = func(in map[string]*Array) ([]*Array, error) {
			o, err := inner(in)
			if err != nil {
				return nil, err
			}
			v, _ := o[0].Float64()
			z := make([]float32, len(v))
			for i, x := range v {
				z[i] = float32(x * x)
			}
			return []*Array{o[0], FromFloat32([]int64{o[0].Shape[0], 9}, z)}, nil
		}
		return m
	}
	rng := rand.New(rand.NewSource(10))
	x := make([]float32, 10*9)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	ds, _ := NewDataset(map[string]*Array{"x": FromFloat32([]int64{10, 1, 3, 3}, x)}, nil)
	opt := EvalOptions{Outputs: []string{"z", "y"}, Batch: 3}
	whole, err := Evaluate(context.Background(), two(1.1), two(1), ds, opt)
	if err != nil {
		t.Fatal(err)
	}
	var parts []*Result
	for i := 0; i < 3; i++ {
		o := opt
		o.Shard = Shard{i, 3}
		r, err := Evaluate(context.Background(), two(1.1), two(1), ds, o)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(r)
		var back Result
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, &back)
	}
	merged, err := MergeResults(parts)
	if err != nil {
		t.Fatal(err)
	}
	if len(whole.Metrics) != 10 || len(merged.Metrics) != len(whole.Metrics) {
		t.Fatalf("whole %v, merged %v", whole.Metrics, merged.Metrics)
	}
	for k, w := range whole.Metrics {
		if g := merged.Metrics[k]; !near(g, w, 1e-12) {
			t.Errorf("%s: merged %v, whole %v", k, g, w)
		}
	}
}
