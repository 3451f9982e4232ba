package merge_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/internal/pyoracle"
	"github.com/onnxpost/onnxpost/merge"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/pipeline"
)

func zooModel(t *testing.T, rel string) (*onnxio.Model, string) {
	t.Helper()
	p := filepath.Join(pyoracle.RepoRoot(), "models", "zoo", rel)
	m, err := onnxio.Load(p)
	if err != nil {
		t.Skipf("zoo model missing (make zoo / make rebasin-zoo): %v", err)
	}
	return m, p
}

func save(t *testing.T, m *onnxio.Model, path string) string {
	t.Helper()
	if err := m.Save(path, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPassthroughOracle stacks layers of the zoo transformers (2 layers
// each) and of the zoo language model (4 layers: [0, 2) + [1, 3)) and
// checks each stack in ONNX Runtime against a numpy composition of the
// same blocks (testdata/passthrough_oracle.py), and each layer drop
// against the drop search's own removal of the same residual blocks
// (pipeline.DropBlocks).
func TestPassthroughOracle(t *testing.T) {
	pyoracle.Python(t)
	a, pa := zooModel(t, "transformer/seed_a.onnx")
	b, pb := zooModel(t, "transformer/seed_b.onnx")
	dir := t.TempDir()
	blocks, _, err := pipeline.FindResidualBlocks(a, nil)
	if err != nil || len(blocks) != 4 {
		t.Fatalf("residual blocks of the zoo transformer: %d, %v (want 4: attention and MLP of 2 layers)", len(blocks), err)
	}
	type ref struct {
		Kind   string  `json:"kind"`
		Prefix string  `json:"prefix"`
		Layers [][]any `json:"layers"`
		Suffix string  `json:"suffix"`
	}
	type ocase struct {
		Name   string `json:"name"`
		Data   string `json:"data"`
		Model  string `json:"model"`
		Ref    *ref   `json:"ref,omitempty"`
		SameAs string `json:"same_as,omitempty"`
	}
	var cases []ocase
	stack := func(name string, ms []*onnxio.Model, sl []merge.StackSlice) string {
		out, err := merge.Stack(ms, nil, sl)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return save(t, out, filepath.Join(dir, name+".onnx"))
	}
	// [0, 2) + [1, 2): layers 0, 1, 1 of one model
	cases = append(cases, ocase{Name: "a[0,2)+a[1,2)", Model: stack("a012", []*onnxio.Model{a}, []merge.StackSlice{{0, 0, 2}, {0, 1, 2}}),
		Ref: &ref{"transformer", pa, [][]any{{pa, 0}, {pa, 1}, {pa, 1}}, pa}})
	// a frankenmerge: embedding from a, layer 1 of b, head from b
	cases = append(cases, ocase{Name: "a[0,2)+b[1,2)", Model: stack("ab", []*onnxio.Model{a, b}, []merge.StackSlice{{0, 0, 2}, {1, 1, 2}}),
		Ref: &ref{"transformer", pa, [][]any{{pa, 0}, {pa, 1}, {pb, 1}}, pb}})
	// reordered layers across models, and one layer repeated four times
	cases = append(cases, ocase{Name: "b[1,2)+a[0,1)", Model: stack("ba", []*onnxio.Model{a, b}, []merge.StackSlice{{1, 1, 2}, {0, 0, 1}}),
		Ref: &ref{"transformer", pb, [][]any{{pb, 1}, {pa, 0}}, pa}})
	cases = append(cases, ocase{Name: "4×a[0,1)", Model: stack("a0000", []*onnxio.Model{a}, []merge.StackSlice{{0, 0, 1}, {0, 0, 1}, {0, 0, 1}, {0, 0, 1}}),
		Ref: &ref{"transformer", pa, [][]any{{pa, 0}, {pa, 0}, {pa, 0}, {pa, 0}}, pa}})
	// the identity stack and the drops
	cases = append(cases, ocase{Name: "a[0,2) is a", Model: stack("a01", []*onnxio.Model{a}, []merge.StackSlice{{0, 0, 2}}), SameAs: pa})
	for _, d := range []struct {
		name  string
		keep  merge.StackSlice
		drops []pipeline.ResidualBlock
	}{{"drop layer 1", merge.StackSlice{0, 0, 1}, blocks[2:]}, {"drop layer 0", merge.StackSlice{0, 1, 2}, blocks[:2]}} {
		dropped, err := pipeline.DropBlocks(a, d.drops)
		if err != nil {
			t.Fatal(err)
		}
		p := save(t, dropped, filepath.Join(dir, strings.ReplaceAll(d.name, " ", "_")+"_search.onnx"))
		cases = append(cases, ocase{Name: d.name, Model: stack(strings.ReplaceAll(d.name, " ", "_"), []*onnxio.Model{a}, []merge.StackSlice{d.keep}), SameAs: p})
	}
	// the zoo language model (4 layers): [0, 2) + [1, 3), and its last
	// layer dropped against the drop search
	lm, pl := zooModel(t, "lm/base.onnx")
	lmCases := []ocase{{Name: "lm[0,2)+lm[1,3)", Model: stack("lm0112", []*onnxio.Model{lm}, []merge.StackSlice{{0, 0, 2}, {0, 1, 3}}),
		Ref: &ref{"lm", pl, [][]any{{pl, 0}, {pl, 1}, {pl, 1}, {pl, 2}}, pl}}}
	lmBlocks, _, err := pipeline.FindResidualBlocks(lm, nil)
	if err != nil || len(lmBlocks) != 8 {
		t.Fatalf("residual blocks of the zoo LM: %d, %v (want 8)", len(lmBlocks), err)
	}
	lmDropped, err := pipeline.DropBlocks(lm, lmBlocks[6:])
	if err != nil {
		t.Fatal(err)
	}
	lmCases = append(lmCases, ocase{Name: "lm drop layer 3", Model: stack("lm012", []*onnxio.Model{lm}, []merge.StackSlice{{0, 0, 3}}),
		SameAs: save(t, lmDropped, filepath.Join(dir, "lm_drop3_search.onnx"))})
	digits := filepath.Join(pyoracle.RepoRoot(), "models", "data", "digits_clean_test.npz")
	for i := range cases {
		cases[i].Data = digits
	}
	for i := range lmCases {
		lmCases[i].Data = filepath.Join(pyoracle.RepoRoot(), "models", "data", "lm_pydoc_test.npz")
	}
	cases = append(cases, lmCases...)
	spec, _ := json.Marshal(map[string]any{"cases": cases})
	sp := filepath.Join(dir, "spec.json")
	if err := os.WriteFile(sp, spec, 0o644); err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile("testdata/passthrough_oracle.py")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(pyoracle.Run(t, string(script), sp))), "\n")
	if len(lines) != len(cases) {
		t.Fatalf("oracle printed %d lines for %d cases", len(lines), len(cases))
	}
	for i, ln := range lines {
		var r struct {
			Name   string  `json:"name"`
			MaxAbs float64 `json:"max_abs"`
			Scale  float64 `json:"scale"`
		}
		if err := json.Unmarshal([]byte(ln), &r); err != nil {
			t.Fatal(err)
		}
		tol := 1e-5 * max(1, r.Scale) // float32 runtime against float64 numpy
		if cases[i].SameAs != "" {
			tol = 0 // the same nodes on the same values
		}
		if r.MaxAbs > tol {
			t.Errorf("%s: max |stacked − reference| = %.3g (scale %.3g), want ≤ %.3g", r.Name, r.MaxAbs, r.Scale, tol)
		}
		t.Logf("%s: max abs %.3g of %.3g", r.Name, r.MaxAbs, r.Scale)
	}
}

// TestPassthroughRefusals: stacks the graph rewrite cannot express are
// refused by name, wrapping ErrPassthrough.
func TestPassthroughRefusals(t *testing.T) {
	a, _ := zooModel(t, "transformer/seed_a.onnx")
	mlp, _ := zooModel(t, "mlp/seed_a.onnx")
	lm, _ := zooModel(t, "lm/base.onnx")
	// b: a whose layer 1 has a narrower MLP (32 hidden units, not 64)
	narrow := a.Clone()
	for name, shape := range map[string][]int64{"blocks.1.ff1.weight": {32, 32}, "blocks.1.ff1.bias": {32}, "blocks.1.ff2.weight": {32, 32}} {
		n := int(shape[0])
		if len(shape) == 2 {
			n *= int(shape[1])
		}
		t2, err := onnxio.FromFloat64(name, onnxio.Float, shape, make([]float64, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := narrow.SetInitializer(t2); err != nil {
			t.Fatal(err)
		}
	}
	// leaky: a value inside layer 0 is also a graph output
	leaky := a.Clone()
	l0 := ""
	for _, n := range leaky.Nodes() {
		if n.OpType == "Softmax" {
			l0 = n.Outputs[0]
			break
		}
	}
	leaky.AddOutput(onnxio.ValueInfo{Name: l0, DType: onnxio.Float})
	// hidden: the residual stream after layer 0 is a graph output too
	hidden := a.Clone()
	for _, n := range hidden.Nodes() {
		if n.OpType == "Add" && strings.HasPrefix(n.Name, "/blocks.0/Add_2") {
			hidden.AddOutput(onnxio.ValueInfo{Name: n.Outputs[0], DType: onnxio.Float})
		}
	}
	// newer: a with another opset import
	newer := a.Clone()
	newer.SetOpset("", newer.Opsets()[""]+1)
	cases := []struct {
		name   string
		models []*onnxio.Model
		stack  []merge.StackSlice
		want   string
	}{
		{"no slices", []*onnxio.Model{a}, nil, "no slices"},
		{"range past the layers", []*onnxio.Model{a}, []merge.StackSlice{{0, 1, 3}}, "layer_range [1, 3] of A, which has 2 layers"},
		{"no model", []*onnxio.Model{a}, []merge.StackSlice{{1, 0, 1}}, "slice 1: no model 1"},
		{"no layers", []*onnxio.Model{mlp}, []merge.StackSlice{{0, 0, 1}}, "A: no layers found"},
		{"other shapes", []*onnxio.Model{a, narrow}, []merge.StackSlice{{0, 0, 1}, {1, 1, 2}}, "layer 0 of A and layer 1 of B have different shapes: tensor float32 [32 64] against tensor float32 [32 32]"},
		{"other model outside the layers", []*onnxio.Model{a, lm}, []merge.StackSlice{{0, 0, 1}, {1, 0, 1}}, "A and B differ outside their layers"},
		{"other opsets", []*onnxio.Model{a, newer}, []merge.StackSlice{{0, 0, 1}, {1, 1, 2}}, "A imports ai.onnx 17, B ai.onnx 18: layers of one cannot run"},
		{"stream value is a graph output", []*onnxio.Model{hidden}, []merge.StackSlice{{0, 0, 2}}, `layer 0's output "/blocks.0/Add_2_output_0" is a graph output`},
		{"value read outside its layer", []*onnxio.Model{leaky}, []merge.StackSlice{{0, 0, 1}}, "is a graph output"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := merge.Stack(tc.models, []string{"A", "B"}, tc.stack)
			if err == nil || !errors.Is(err, merge.ErrPassthrough) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrPassthrough with %q", err, tc.want)
			}
		})
	}
}

// TestPassthroughNodeNamedLikeValue: node names and value names are
// separate namespaces in ONNX; a graph whose nodes are named after their
// outputs stacks like any other.
func TestPassthroughNodeNamedLikeValue(t *testing.T) {
	a, _ := zooModel(t, "transformer/seed_a.onnx")
	m := a.Clone()
	m.EnsureNodeNames()
	for _, n := range m.Nodes() {
		old := n.Name
		n.Name = n.Outputs[0]
		if err := m.ReplaceNode(old, []onnxio.Node{n}); err != nil {
			t.Fatal(err)
		}
	}
	out, err := merge.Stack([]*onnxio.Model{m}, nil, []merge.StackSlice{{0, 0, 2}, {0, 1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	if n := out.OpCounts()["Softmax"]; n != 3 {
		t.Fatalf("%d attention blocks in the stack, want 3", n)
	}
}

// TestPassthroughTail: after the layers, the tensors are the last slice's
// model's, except one the part before the layers reads too (as tied
// embeddings are), which stays the first slice's model's.
func TestPassthroughTail(t *testing.T) {
	a, _ := zooModel(t, "transformer/seed_a.onnx")
	b, _ := zooModel(t, "transformer/seed_b.onnx")
	var tied []*onnxio.Model
	for _, m := range []*onnxio.Model{a, b} {
		c := m.Clone()
		// a node before the layers reading head.bias ties it to the embedding side
		if err := c.InsertNodes(onnxio.Node{Name: "tie", OpType: "Mul", Inputs: []string{"head.bias", "head.bias"}, Outputs: []string{"tied"}}); err != nil {
			t.Fatal(err)
		}
		tied = append(tied, c)
	}
	out, err := merge.Stack(tied, nil, []merge.StackSlice{{0, 0, 1}, {1, 1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	same := func(m *onnxio.Model, name string, from *onnxio.Model) bool {
		x, err := m.Initializer(name)
		if err != nil {
			t.Fatal(err)
		}
		y, _ := from.Initializer(name)
		xv, _ := x.Float64()
		yv, _ := y.Float64()
		return slices.Equal(xv, yv)
	}
	if !same(out, "head.weight", b) || !same(out, "ln.weight", b) {
		t.Errorf("the head and final norm are not the last slice's model's")
	}
	if !same(out, "head.bias", a) || !same(out, "embed.weight", a) {
		t.Errorf("the tied tensor or the embedding is not the first slice's model's")
	}
}
