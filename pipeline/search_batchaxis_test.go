package pipeline

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

// stateModel builds a voice-detector-shaped model: x [N, 8] through a
// MatMul weight, a state [2, N, 8] batched along axis 1, a scalar sr fed
// whole; outputs y [N, 8] and the new state [2, N, 8].
func stateModel(t *testing.T) *onnxio.Model {
	t.Helper()
	m := onnxio.New("vad", 17)
	n := onnxio.Dim{Value: -1, Param: "batch"}
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{n, {Value: 8}}})
	m.AddInput(onnxio.ValueInfo{Name: "state", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 2}, n, {Value: 8}}})
	m.AddInput(onnxio.ValueInfo{Name: "sr", DType: onnxio.Float, Shape: []onnxio.Dim{}})
	rng := rand.New(rand.NewSource(3))
	w := make([]byte, 4*64)
	for i := 0; i < 64; i++ {
		binary.LittleEndian.PutUint32(w[4*i:], math.Float32bits(float32(rng.NormFloat64())))
	}
	wt, _ := onnxio.NewTensor("W", onnxio.Float, []int64{8, 8}, w)
	i0, _ := onnxio.NewTensor("i0", onnxio.Int64, nil, make([]byte, 8))
	for _, x := range []*onnxio.Tensor{wt, i0} {
		if err := m.SetInitializer(x); err != nil {
			t.Fatal(err)
		}
	}
	nodes := []onnxio.Node{
		{Name: "mm", OpType: "MatMul", Inputs: []string{"x", "W"}, Outputs: []string{"h"}},
		{Name: "g", OpType: "Gather", Inputs: []string{"state", "i0"}, Outputs: []string{"s0"}, Attrs: []onnxio.Attr{onnxio.AttrInt("axis", 0)}},
		{Name: "add", OpType: "Add", Inputs: []string{"h", "s0"}, Outputs: []string{"a"}},
		{Name: "mul", OpType: "Mul", Inputs: []string{"a", "sr"}, Outputs: []string{"y"}},
		{Name: "st", OpType: "Add", Inputs: []string{"state", "state"}, Outputs: []string{"stateN"}},
	}
	if err := m.InsertNodes(nodes...); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float, Shape: []onnxio.Dim{n, {Value: 8}}})
	m.AddOutput(onnxio.ValueInfo{Name: "stateN", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 2}, n, {Value: 8}}})
	return m
}

// TestSearchStateBatchedAlongAxis1: the search's calibration set takes its
// batch axes from the model's inputs (state along axis 1, the scalar sr
// whole): it searches, the capture subset of wanda is cut along those
// axes, and an output batched along axis 1 is refused by name as the
// fitness output.
func TestSearchStateBatchedAlongAxis1(t *testing.T) {
	needORT(t)
	const n = 40
	rng := rand.New(rand.NewSource(4))
	x := make([]float32, n*8)
	st := make([]float32, 2*n*8)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	for i := range st {
		st[i] = float32(rng.NormFloat64())
	}
	calib, err := evalharness.NewDataset(map[string]*evalharness.Array{
		"x":     evalharness.FromFloat32([]int64{n, 8}, x),
		"state": evalharness.FromFloat32([]int64{2, n, 8}, st),
		"sr":    evalharness.FromFloat32([]int64{}, []float32{16000}),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if calib.N != -1 {
		t.Fatalf("unchecked dataset N %d, want -1 (its arrays disagree on axis 0)", calib.N)
	}
	for _, method := range []string{"", "wanda"} {
		_, rep, err := RunSearch(context.Background(), stateModel(t), calib, LevelSearch{
			Space: SpaceSparsity, Method: method, Target: 0.5, Levels: 2, CalibSamples: 16, Batch: 8, Search: smallSearch(1)})
		if err != nil {
			t.Fatalf("method %q: %v", method, err)
		}
		if rep.Samples != n {
			t.Errorf("method %q: %d samples, want %d", method, rep.Samples, n)
		}
	}
	if ax := calib.BatchAxes(); ax["x"] != 0 || ax["state"] != 1 || ax["sr"] != -1 {
		t.Errorf("batch axes %v, want x 0, state 1, sr -1", ax)
	}
	_, _, err = RunSearch(context.Background(), stateModel(t), calib, LevelSearch{
		Space: SpaceSparsity, Target: 0.5, Levels: 2, Batch: 8, Search: smallSearch(1), Outputs: []string{"stateN"}})
	if err == nil || !strings.Contains(err.Error(), `output "stateN" is batched along axis 1`) {
		t.Errorf("searching on stateN: %v", err)
	}
}

// TestSearchFixedBatchOfOne: a model exported with a fixed batch of 1 and
// no symbolic dimension (x [1, 8], state h [1, 1, 8]) is searched on a
// dataset of x [N, 8], h [1, N, 8] one sample per run, whatever Batch asks.
func TestSearchFixedBatchOfOne(t *testing.T) {
	needORT(t)
	m := onnxio.New("vad1", 17)
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 1}, {Value: 8}}})
	m.AddInput(onnxio.ValueInfo{Name: "h", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 1}, {Value: 1}, {Value: 8}}})
	rng := rand.New(rand.NewSource(5))
	w := make([]byte, 4*64)
	for i := 0; i < 64; i++ {
		binary.LittleEndian.PutUint32(w[4*i:], math.Float32bits(float32(rng.NormFloat64())))
	}
	wt, _ := onnxio.NewTensor("W", onnxio.Float, []int64{8, 8}, w)
	i0, _ := onnxio.NewTensor("i0", onnxio.Int64, nil, make([]byte, 8))
	for _, x := range []*onnxio.Tensor{wt, i0} {
		if err := m.SetInitializer(x); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.InsertNodes(
		onnxio.Node{Name: "mm", OpType: "MatMul", Inputs: []string{"x", "W"}, Outputs: []string{"a"}},
		onnxio.Node{Name: "g", OpType: "Gather", Inputs: []string{"h", "i0"}, Outputs: []string{"h0"}, Attrs: []onnxio.Attr{onnxio.AttrInt("axis", 0)}},
		onnxio.Node{Name: "add", OpType: "Add", Inputs: []string{"a", "h0"}, Outputs: []string{"y"}},
	); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float, Shape: []onnxio.Dim{{Value: 1}, {Value: 8}}})
	const n = 24
	x := make([]float32, n*8)
	h := make([]float32, n*8)
	for i := range x {
		x[i], h[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
	}
	calib, err := evalharness.NewDataset(map[string]*evalharness.Array{
		"x": evalharness.FromFloat32([]int64{n, 8}, x),
		"h": evalharness.FromFloat32([]int64{1, n, 8}, h),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range []string{"", "wanda"} {
		_, rep, err := RunSearch(context.Background(), m.Clone(), calib, LevelSearch{
			Space: SpaceSparsity, Method: method, Target: 0.5, Levels: 2, CalibSamples: 8, Batch: 8, Search: smallSearch(1)})
		if err != nil {
			t.Fatalf("method %q: %v", method, err)
		}
		if rep.Samples != n {
			t.Errorf("method %q: %d samples, want %d", method, rep.Samples, n)
		}
	}
}
