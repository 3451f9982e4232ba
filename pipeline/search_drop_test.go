package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

func TestFindResidualBlocks(t *testing.T) {
	tests := []struct {
		family  string
		want    []string // block names (last weights) in graph order
		skipped int
	}{
		{"transformer", []string{"blocks.0.o.weight", "blocks.0.ff2.weight", "blocks.1.o.weight", "blocks.1.ff2.weight"}, 0},
		{"mlp", nil, 0},
	}
	for _, tc := range tests {
		m, err := onnxio.Load(zoo("zoo", tc.family, "base.onnx"))
		if err != nil {
			t.Fatal(err)
		}
		blocks, skipped, err := FindResidualBlocks(m, nil)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, b := range blocks {
			got = append(got, b.Name)
			if want := strings.TrimSuffix(b.Weight, "weight") + "bias"; b.Bias != want {
				t.Errorf("%s: block %s bias %q, want %q", tc.family, b.Name, b.Bias, want)
			}
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") || len(skipped) != tc.skipped {
			t.Errorf("%s: blocks %v (skipped %v), want %v", tc.family, got, skipped, tc.want)
		}
	}
}

// TestFindResidualBlocksSkipsNonLinearEnd scales the first attention
// branch by a constant after its output projection: zeroing the
// projection would still drop it, but the rule (the branch must end in the
// linear layer) reports it as skipped instead of guessing.
func TestFindResidualBlocksSkipsNonLinearEnd(t *testing.T) {
	m, err := onnxio.Load(zoo("zoo", "transformer", "base.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := m.Node("/blocks.0/o/Add")
	if err != nil {
		t.Fatal(err)
	}
	half, err := onnxio.FromFloat32("half", onnxio.Float, nil, []float32{0.5})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetInitializer(half); err != nil {
		t.Fatal(err)
	}
	add := n
	add.Outputs = []string{"o_pre_scale"}
	mul := onnxio.Node{Name: "scale", OpType: "Mul", Inputs: []string{"o_pre_scale", "half"}, Outputs: n.Outputs}
	if err := m.ReplaceNode(n.Name, []onnxio.Node{add, mul}); err != nil {
		t.Fatal(err)
	}
	blocks, skipped, err := FindResidualBlocks(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 3 || len(skipped) != 1 || skipped[0].Add != "/blocks.0/Add" || !strings.Contains(skipped[0].Reason, "Mul") {
		t.Errorf("blocks %d, skipped %+v; want 3 and /blocks.0/Add (Mul)", len(blocks), skipped)
	}
}

func initParams(t *testing.T, m *onnxio.Model, prefixes ...string) int64 {
	t.Helper()
	var p int64
	for _, name := range m.Initializers() {
		ok := len(prefixes) == 0
		for _, pre := range prefixes {
			ok = ok || strings.HasPrefix(name, pre)
		}
		if !ok {
			continue
		}
		_, shape, err := m.InitializerInfo(name)
		if err != nil {
			t.Fatal(err)
		}
		n, err := onnxio.NumElements(shape)
		if err != nil {
			t.Fatal(err)
		}
		p += n
	}
	return p
}

// TestDropSearchOnZoo drops 2 of the transformer's 4 residual sub-blocks:
// every allocation drops exactly 2, the same seed writes the same bytes,
// the written model (blocks removed) computes in ONNX Runtime what the
// original computes with the blocks' last weights and biases zeroed, and
// its parameters fell by exactly the removed sub-blocks' parameters.
func TestDropSearchOnZoo(t *testing.T) {
	m, ds := loadZoo(t, "transformer", 96)
	run := func() (*onnxio.Model, *SearchReport) {
		out, rep, err := RunSearch(context.Background(), m, ds, LevelSearch{Space: SpaceDrop, Target: 2, Search: smallSearch(3), Baselines: true})
		if err != nil {
			t.Fatal(err)
		}
		return out, rep
	}
	out, rep := run()
	out2, _ := run()
	b1, err := out.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	b2, err := out2.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1, b2) {
		t.Error("same seed, different output bytes")
	}
	if rep.Achieved != 2 || rep.Uniform.Name != "last-k" || rep.Heuristic.Name != "block-score" {
		t.Errorf("achieved %v, baselines %q %q", rep.Achieved, rep.Uniform.Name, rep.Heuristic.Name)
	}
	for _, a := range rep.Allocations {
		dropped := 0
		for _, l := range a.Layers {
			dropped += int(l.Value)
		}
		if dropped != 2 || a.Cost != 2 {
			t.Errorf("%s drops %d blocks (cost %d), want 2", a.Name, dropped, a.Cost)
		}
	}
	if rep.Searched.Loss > rep.Uniform.Loss+1e-12 && rep.Searched.Loss > rep.Heuristic.Loss+1e-12 {
		t.Errorf("searched loss %v above both baselines (%v, %v)", rep.Searched.Loss, rep.Uniform.Loss, rep.Heuristic.Loss)
	}
	check := func(name string, written *onnxio.Model, a Allocation) {
		zeroed := m.Clone()
		var removed int64
		for _, l := range a.Layers {
			if l.Value != 1 {
				continue
			}
			bias := strings.TrimSuffix(l.Name, "weight") + "bias"
			for _, n := range []string{l.Name, bias} {
				tn, err := m.Initializer(n)
				if err != nil {
					t.Fatal(err)
				}
				z, err := onnxio.FromFloat32(n, onnxio.Float, tn.Shape, make([]float32, tn.NumElements()))
				if err != nil {
					t.Fatal(err)
				}
				if err := zeroed.SetInitializer(z); err != nil {
					t.Fatal(err)
				}
			}
			// the sub-block's parameters, named by the zoo's PyTorch module names
			blk := l.Name[:strings.Index(l.Name[len("blocks."):], ".")+len("blocks.")+1]
			if strings.HasSuffix(l.Name, ".o.weight") {
				removed += initParams(t, m, blk+"ln1.", blk+"q.", blk+"k.", blk+"v.", blk+"o.")
			} else {
				removed += initParams(t, m, blk+"ln2.", blk+"ff1.", blk+"ff2.")
			}
		}
		if got := initParams(t, m) - initParams(t, written); got != removed || removed == 0 {
			t.Errorf("%s: parameters fell by %d, want %d", name, got, removed)
		}
		pw, pz := predictAll(t, written, ds), predictAll(t, zeroed, ds)
		var worst float64
		for i := range pw {
			worst = math.Max(worst, math.Abs(pw[i]-pz[i]))
		}
		if worst > 1e-5 {
			t.Errorf("%s: written vs zero-weight outputs differ by %g", name, worst)
		}
		if written.NumNodes() >= m.NumNodes() {
			t.Errorf("%s: %d nodes, dense %d: nothing removed", name, written.NumNodes(), m.NumNodes())
		}
	}
	check("searched", out, rep.Searched)
	check("last-k", rep.BaselineModels["last-k"], rep.Uniform)
	check("block-score", rep.BaselineModels["block-score"], rep.Heuristic)
}

func predictAll(t *testing.T, m *onnxio.Model, ds *evalharness.Dataset) []float64 {
	t.Helper()
	s, err := evalharness.SessionFromModel(m, evalharness.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	o, err := evalharness.Predict(s, ds, 64)
	if err != nil {
		t.Fatal(err)
	}
	v, err := o[0].Float64()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestDropTargetErrors(t *testing.T) {
	m, ds := loadZoo(t, "transformer", 16)
	for _, target := range []float64{0, 4, 1.5, -1} {
		if _, _, err := RunSearch(context.Background(), m, ds, LevelSearch{Space: SpaceDrop, Target: target, Search: smallSearch(1)}); err == nil {
			t.Errorf("target %v: no error", target)
		}
	}
}

// ExampleFindResidualBlocks lists the droppable residual sub-blocks of the
// zoo transformer (pre-norm: x + attn(ln(x)), x + ff(ln(x))).
func ExampleFindResidualBlocks() {
	m, err := onnxio.Load("../models/zoo/transformer/base.onnx")
	if err != nil {
		fmt.Println(err)
		return
	}
	blocks, _, err := FindResidualBlocks(m, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, b := range blocks {
		fmt.Println(b.Name, b.Bias)
	}
	// Output:
	// blocks.0.o.weight blocks.0.o.bias
	// blocks.0.ff2.weight blocks.0.ff2.bias
	// blocks.1.o.weight blocks.1.o.bias
	// blocks.1.ff2.weight blocks.1.ff2.bias
}
