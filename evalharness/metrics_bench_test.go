package evalharness

import (
	"context"
	"math/rand"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

// constOutRunner returns slices of one precomputed output array, so that a
// benchmark measures the harness's metrics, not a model.
type constOutRunner struct {
	out  *Array
	info TensorInfo
}

func (c *constOutRunner) Inputs() []TensorInfo {
	return []TensorInfo{{Name: "i", DType: onnxio.Int64, Shape: []int64{-1, 1}}}
}
func (c *constOutRunner) Outputs() []TensorInfo { return []TensorInfo{c.info} }
func (c *constOutRunner) Run(in map[string]*Array) ([]*Array, error) {
	idx, _ := in["i"].Int64()
	return []*Array{c.out.Slice(idx[0], idx[0]+in["i"].Shape[0])}, nil
}

// BenchmarkMetricsClass1000 measures the fidelity metrics (accuracy,
// agreement, kl, cosine, mse, max_abs) of [1024, 1000] class scores
// against a reference, batch 64, with no model cost.
func BenchmarkMetricsClass1000(b *testing.B) {
	const n, c = 1024, 1000
	rng := rand.New(rand.NewSource(1))
	cv, rv := make([]float32, n*c), make([]float32, n*c)
	for i := range cv {
		rv[i] = float32(rng.NormFloat64())
		cv[i] = rv[i] + float32(rng.NormFloat64()*0.1)
	}
	ids := make([]int64, n)
	labels := make([]int64, n)
	for i := range ids {
		ids[i] = int64(i)
		labels[i] = int64(rng.Intn(c))
	}
	info := TensorInfo{Name: "y", DType: onnxio.Float, Shape: []int64{-1, c}}
	cand := &constOutRunner{out: FromFloat32([]int64{n, c}, cv), info: info}
	ref := &constOutRunner{out: FromFloat32([]int64{n, c}, rv), info: info}
	ds, err := NewDataset(map[string]*Array{"i": FromInt64([]int64{n, 1}, ids)}, labels)
	if err != nil {
		b.Fatal(err)
	}
	opt := EvalOptions{Batch: 64, Metrics: []string{MetricAccuracy, MetricAgreement, MetricKL, MetricCosine, MetricMSE, MetricMaxAbs}}
	b.SetBytes(n * c * 4 * 2)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Evaluate(context.Background(), cand, ref, ds, opt); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMetricsTokens64x2048 measures the token metrics (perplexity,
// token_accuracy, agreement, kl, cosine against a reference) of [32, 64,
// 2048] token scores with an attention mask, batch 8, with no model cost.
func BenchmarkMetricsTokens64x2048(b *testing.B) {
	const n, t, v = 32, 64, 2048
	rng := rand.New(rand.NewSource(2))
	cv, rv := make([]float32, n*t*v), make([]float32, n*t*v)
	for i := range cv {
		rv[i] = float32(rng.NormFloat64())
		cv[i] = rv[i] + float32(rng.NormFloat64()*0.1)
	}
	ids := make([]int64, n*t)
	mask := make([]int64, n*t)
	for i := range ids {
		ids[i] = rng.Int63n(v)
		mask[i] = 1
		if i%t > t-8 {
			mask[i] = 0
		}
	}
	info := TensorInfo{Name: "logits", DType: onnxio.Float, Shape: []int64{-1, -1, v}}
	mk := func(data []float32) Runner {
		return &fnRunner{
			ins:  []TensorInfo{{Name: "input_ids", DType: onnxio.Int64, Shape: []int64{-1, t}}, {Name: "attention_mask", DType: onnxio.Int64, Shape: []int64{-1, t}}, {Name: "i", DType: onnxio.Int64, Shape: []int64{-1, 1}}},
			outs: []TensorInfo{info},
			fn: func(in map[string]*Array) ([]*Array, error) {
				idx, _ := in["i"].Int64()
				k := in["i"].Shape[0]
				return []*Array{FromFloat32([]int64{k, t, v}, data[idx[0]*t*v:(idx[0]+k)*t*v])}, nil
			},
		}
	}
	order := make([]int64, n)
	for i := range order {
		order[i] = int64(i)
	}
	ds, err := NewDataset(map[string]*Array{"input_ids": FromInt64([]int64{n, t}, ids), "attention_mask": FromInt64([]int64{n, t}, mask), "i": FromInt64([]int64{n, 1}, order)}, nil)
	if err != nil {
		b.Fatal(err)
	}
	cand, ref := mk(cv), mk(rv)
	b.SetBytes(n * t * v * 4 * 2)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Evaluate(context.Background(), cand, ref, ds, EvalOptions{Batch: 8}); err != nil {
			b.Fatal(err)
		}
	}
}
