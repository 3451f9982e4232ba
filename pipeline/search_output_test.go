package pipeline

import (
	"context"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

// TestSearchFitnessSkipsIntegerOutput: with an int64 copy of an input as
// the model's first output, the search compares the float logits (the
// losses differ and are not all 0), not the copy.
func TestSearchFitnessSkipsIntegerOutput(t *testing.T) {
	m, ds := loadZoo(t, "mlp", 96)
	in := m.Inputs()[0]
	batch := onnxio.Dim{Value: -1, Param: "batch"}
	if len(in.Shape) > 0 && in.Shape[0].Param != "" {
		batch = in.Shape[0]
	}
	m.AddInput(onnxio.ValueInfo{Name: "ids", DType: onnxio.Int64, Shape: []onnxio.Dim{batch, {Value: 1}}})
	if err := m.InsertNodes(onnxio.Node{Name: "ids_copy_node", OpType: "Identity", Inputs: []string{"ids"}, Outputs: []string{"ids_copy"}}); err != nil {
		t.Fatal(err)
	}
	m.SetOutputs(append([]onnxio.ValueInfo{{Name: "ids_copy", DType: onnxio.Int64, Shape: []onnxio.Dim{batch, {Value: 1}}}}, m.Outputs()...))
	inputs := map[string]*evalharness.Array{"ids": evalharness.FromInt64([]int64{ds.N, 1}, make([]int64, ds.N))}
	for k, a := range ds.Inputs {
		inputs[k] = a
	}
	calib, err := evalharness.NewDataset(inputs, ds.Labels)
	if err != nil {
		t.Fatal(err)
	}
	_, rep, err := RunSparsitySearch(context.Background(), m, calib, SparsitySearch{Target: 0.8, Levels: 4, CacheDir: t.TempDir(), Search: smallSearch(1)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Fitness != FitnessKL || rep.Uniform.Loss <= 0 || rep.Heuristic.Loss == rep.Uniform.Loss {
		t.Errorf("fitness %s: uniform %.6g, heuristic %.6g, searched %.6g: scored blind", rep.Fitness, rep.Uniform.Loss, rep.Heuristic.Loss, rep.Searched.Loss)
	}

	// Several outputs: the fitness is the mean of each output's loss.
	logits := m.Outputs()[1].Name
	if err := m.InsertNodes(onnxio.Node{Name: "probs_node", OpType: "Softmax", Inputs: []string{logits}, Outputs: []string{"probs"}}); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "probs", DType: onnxio.Float, Shape: m.Outputs()[1].Shape})
	_, rep2, err := RunSparsitySearch(context.Background(), m, calib, SparsitySearch{Target: 0.8, Levels: 4, CacheDir: t.TempDir(), Search: smallSearch(1), Outputs: []string{logits, "probs"}})
	if err != nil {
		t.Fatal(err)
	}
	if rep2.Fitness != FitnessKL || rep2.Uniform.Loss <= 0 || rep2.Uniform.Loss == rep.Uniform.Loss {
		t.Errorf("two outputs: fitness %s, uniform %.6g (one output: %.6g)", rep2.Fitness, rep2.Uniform.Loss, rep.Uniform.Loss)
	}
	if _, _, err := RunSparsitySearch(context.Background(), m, calib, SparsitySearch{Target: 0.8, Levels: 4, CacheDir: t.TempDir(), Search: smallSearch(1), Outputs: []string{"ids_copy"}}); err == nil || !strings.Contains(err.Error(), "is int64") {
		t.Errorf("searching on the int64 output: %v", err)
	}
}

func TestFitnessForShape(t *testing.T) {
	for _, c := range []struct {
		req   string
		shape []int64
		want  string
	}{
		{"", []int64{8, 10}, FitnessKL},
		{"", []int64{8, 16, 50}, FitnessKL},
		{"", []int64{8, 1, 32, 32}, FitnessCosine},
		{"", []int64{8}, FitnessCosine},
		{"mse", []int64{8, 10}, FitnessMSE},
	} {
		if got, err := FitnessForShape(c.req, c.shape); err != nil || got != c.want {
			t.Errorf("FitnessForShape(%q, %v) = %q, %v; want %q", c.req, c.shape, got, err, c.want)
		}
	}
	if _, err := FitnessForShape("l1", nil); err == nil {
		t.Error("unknown fitness accepted")
	}
}

// constRunner returns fixed token scores for the samples fed (one [T, V]
// block per sample, chosen by the sample's first input value).
type constRunner struct {
	blocks [][]float32
	t, v   int64
}

func (c *constRunner) Inputs() []evalharness.TensorInfo {
	return []evalharness.TensorInfo{{Name: "input_ids", DType: onnxio.Int64, Shape: []int64{-1, -1}}, {Name: "attention_mask", DType: onnxio.Int64, Shape: []int64{-1, -1}}}
}
func (c *constRunner) Outputs() []evalharness.TensorInfo {
	return []evalharness.TensorInfo{{Name: "logits", DType: onnxio.Float, Shape: []int64{-1, -1, c.v}}}
}
func (c *constRunner) Run(in map[string]*evalharness.Array) ([]*evalharness.Array, error) {
	ids, _ := in["input_ids"].Int64()
	n := in["input_ids"].Shape[0]
	var out []float32
	for i := int64(0); i < n; i++ {
		out = append(out, c.blocks[ids[i*c.t]]...)
	}
	return []*evalharness.Array{evalharness.FromFloat32([]int64{n, c.t, c.v}, out)}, nil
}

// TestTokenFitnessIsMasked: the KL fitness over [N, T, V] token scores
// counts only positions where attention_mask is 1.
func TestTokenFitnessIsMasked(t *testing.T) {
	const T, V = 3, 4
	ref := []float64{
		1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, // sample 0
		0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, // sample 1
	}
	cand := make([]float32, len(ref))
	for i, v := range ref {
		cand[i] = float32(v)
	}
	cand[2*V+3] = 5   // sample 0, position 2 differs (masked out)
	cand[T*V+2*V] = 5 // sample 1, position 2 differs (masked out)
	r := &constRunner{blocks: [][]float32{cand[:T*V], cand[T*V:]}, t: T, v: V}
	ids := evalharness.FromInt64([]int64{2, T}, []int64{0, 0, 0, 1, 1, 1})
	mask := evalharness.FromInt64([]int64{2, T}, []int64{1, 1, 0, 1, 1, 0})
	calib, err := evalharness.NewDataset(map[string]*evalharness.Array{"input_ids": ids, "attention_mask": mask}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := calib.Check(r.Inputs()); err != nil {
		t.Fatal(err)
	}
	tg, err := newOutTarget(0, evalharness.FromFloat64([]int64{2, T, V}, ref), calib, "")
	if err != nil {
		t.Fatal(err)
	}
	if tg.kind != FitnessKL || tg.mask == nil {
		t.Fatalf("target: kind %s, mask %v", tg.kind, tg.mask)
	}
	ev := &fitnessEvaluator{sess: r, calib: calib, outs: []*outTarget{tg}, batch: 2,
		feed: func(context.Context, []int) (map[string]*evalharness.Array, error) { return nil, nil }}
	f, err := ev.Fitness(context.Background(), nil, []int{0, 1})
	if err != nil || f != 0 {
		t.Errorf("masked fitness %v, %v; want 0 (only padded positions differ)", f, err)
	}
	tg.mask = nil
	if f, err := ev.Fitness(context.Background(), nil, []int{0, 1}); err != nil || f <= 0 {
		t.Errorf("unmasked fitness %v, %v; want > 0", f, err)
	}
}
