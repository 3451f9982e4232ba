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
