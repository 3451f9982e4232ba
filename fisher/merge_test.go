package fisher_test

import (
	"context"
	"math"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/fisher"
	"github.com/onnxpost/onnxpost/merge"
	"github.com/onnxpost/onnxpost/onnxio"
)

// TestMergeWithComputedFisher is the path `merge --fisher-data` takes:
// Fisher files computed in memory by FromData feed merge.Inputs.Fishers,
// and the merged value of every entry is Σ Fᵢθᵢ / Σ Fᵢ.
func TestMergeWithComputedFisher(t *testing.T) {
	requireORT(t)
	var models, fms []*onnxio.Model
	var fs []map[string][]float32
	for _, task := range []string{"low", "flip"} {
		m, err := onnxio.Load(zoo("zoo", "mlp", "ft_"+task+".onnx"))
		if err != nil {
			t.Fatal(err)
		}
		ds, err := evalharness.LoadDataset(zoo("data", "digits_"+task+"_val.npz"))
		if err != nil {
			t.Fatal(err)
		}
		fm, r, err := fisher.FromData(context.Background(), m, task, ds, fisher.Options{MaxExamples: 16})
		if err != nil {
			t.Fatal(err)
		}
		models, fms, fs = append(models, m), append(fms, fm), append(fs, r.Fisher)
	}
	mg, err := merge.New(context.Background(), merge.Inputs{Models: models, Fishers: fms}, merge.Options{Method: merge.Fisher}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := mg.Model(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"fc1.weight", "fc3.bias"} {
		got := values(t, out, name)
		a, b := values(t, models[0], name), values(t, models[1], name)
		for i := range got {
			fa := math.Max(float64(fs[0][name][i]), merge.DefaultFisherFloor)
			fb := math.Max(float64(fs[1][name][i]), merge.DefaultFisherFloor)
			want := (fa*float64(a[i]) + fb*float64(b[i])) / (fa + fb)
			if math.Abs(float64(got[i])-want) > 1e-5*math.Max(1, math.Abs(want)) {
				t.Fatalf("%s[%d] = %v, want %v", name, i, got[i], want)
			}
		}
	}
}

func values(t *testing.T, m *onnxio.Model, name string) []float32 {
	t.Helper()
	tt, err := m.Initializer(name)
	if err != nil {
		t.Fatal(err)
	}
	v, err := tt.Float32()
	if err != nil {
		t.Fatal(err)
	}
	return v
}
