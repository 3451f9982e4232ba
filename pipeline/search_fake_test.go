package pipeline

import (
	"context"
	"math/rand"
	"testing"

	"github.com/onnxpost/onnxpost/compress/search"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/evalharness/evaltest"
	"github.com/onnxpost/onnxpost/onnxio"
)

// TestSearchWithFakeRunner: the sparsity search runs its evaluations
// through SessionOptions.Open (here evaltest's interpreter, no ONNX
// Runtime), closes every session, and returns a model holding the zeros
// its report gives, at the uniform allocation's budget and no worse loss.
func TestSearchWithFakeRunner(t *testing.T) {
	m, calib := zooMLP(t)
	before, _ := m.Bytes()
	var rec evaltest.Recorder
	out, rep, err := RunSparsitySearch(context.Background(), m, calib, LevelSearch{
		Target: 0.8, Levels: 2, Session: evalharness.SessionOptions{Open: rec.Open},
		Search: search.Options{Generations: 2, Offspring: 4, Survivors: []int{2, 1}, Samples: []int{16, 64}, Rand: rand.New(rand.NewSource(1))},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Requests()) < 2 || rec.Runs() == 0 || rec.OpenSessions() != 0 {
		t.Fatalf("%d sessions opened, %d runs, %d left open", len(rec.Requests()), rec.Runs(), rec.OpenSessions())
	}
	if rep.Searched.Cost != rep.Uniform.Cost || rep.Searched.Loss > rep.Uniform.Loss {
		t.Fatalf("searched cost %d loss %g, uniform cost %d loss %g", rep.Searched.Cost, rep.Searched.Loss, rep.Uniform.Cost, rep.Uniform.Loss)
	}
	if zeros, want := reportedZeros(t, out, rep); zeros < want || want == 0 {
		t.Errorf("output has %d zeros, report says %d", zeros, want)
	}
	if after, _ := m.Bytes(); string(after) != string(before) {
		t.Error("the search changed its input model")
	}
}

// reportedZeros counts the zeros of the searched layers in out and the
// zeros the report gives them.
func reportedZeros(t *testing.T, out *onnxio.Model, rep *SearchReport) (zeros, want int64) {
	t.Helper()
	for _, lc := range rep.Searched.Layers {
		want += lc.Value
		tt, err := out.Initializer(lc.Name)
		if err != nil {
			t.Fatal(err)
		}
		zeros += int64(tt.ZeroFraction()*float64(tt.NumElements()) + 0.5)
	}
	return zeros, want
}

// zooMLP loads the zoo's MLP and its clean validation set.
func zooMLP(t *testing.T) (*onnxio.Model, *evalharness.Dataset) {
	t.Helper()
	m, err := onnxio.Load(zoo("zoo", "mlp", "base.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	calib, err := evalharness.LoadDataset(zoo("data", "digits_clean_val.npz"))
	if err != nil {
		t.Fatal(err)
	}
	return m, calib
}
