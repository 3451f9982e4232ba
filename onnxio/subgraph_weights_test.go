package onnxio

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func loadWeightsFixture(t *testing.T, name string) *Model {
	t.Helper()
	m, err := Load(filepath.Join("testdata", "weights", name))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestAllWeightsEverywhere: weights in Constant nodes, in subgraph
// initializers, read from the outer scope inside If/Loop, behind
// DequantizeLinear or Cast+Mul, and in sparse_initializer are discovered
// with their consumer inside the subgraph.
func TestAllWeightsEverywhere(t *testing.T) {
	type want struct {
		op, role, stored, scope string
		constant, sparse, quant bool
	}
	for _, tc := range []struct {
		file string
		want map[string]want
	}{
		{"if.onnx", map[string]want{
			"Wc": {op: "MatMul", role: RoleMatMulB, constant: true},
			"Wt": {op: "MatMul", role: RoleMatMulB, stored: "if0.then_branch", scope: "if0.then_branch"},
			"Wo": {op: "MatMul", role: RoleMatMulB, scope: "if0.else_branch"},
			"B":  {op: "Add", role: RoleOther},
		}},
		{"loop.onnx", map[string]want{
			"Wl": {op: "MatMul", role: RoleMatMulB, scope: "loop.body"},
		}},
		{"quantized.onnx", map[string]want{
			"Wq": {op: "MatMul", role: RoleMatMulB, quant: true},
			"Wk": {op: "MatMul", role: RoleMatMulB, quant: true},
			"sq": {op: "DequantizeLinear", role: RoleQuantParam},
			"sk": {op: "Mul", role: RoleOther},
		}},
		{"sparse.onnx", map[string]want{
			"Ws": {op: "MatMul", role: RoleMatMulB, sparse: true},
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			m := loadWeightsFixture(t, tc.file)
			ws, err := m.AllWeights()
			if err != nil {
				t.Fatal(err)
			}
			if len(ws) != len(tc.want) {
				t.Errorf("%d weights, want %d: %+v", len(ws), len(tc.want), ws)
			}
			for _, w := range ws {
				x, ok := tc.want[w.Name]
				if !ok {
					t.Errorf("unexpected weight %q", w.Name)
					continue
				}
				got := want{w.Op, w.Role, w.Stored, w.Scope, w.Constant, w.Sparse, w.Quantized}
				if got != x {
					t.Errorf("%s: got %+v, want %+v", w.Name, got, x)
				}
				tt, err := m.WeightTensor(w)
				if err != nil {
					t.Fatalf("%s: %v", w.Name, err)
				}
				if tt.Name != w.Name || !slices.Equal(tt.Shape, w.Shape) || tt.DType != w.DType {
					t.Errorf("%s: tensor %s %v %v", w.Name, tt.Name, tt.DType, tt.Shape)
				}
			}
			// Weights keeps what transforms rewrite in place: no subgraph-held
			// or sparse tensors; outer-scope reads have no main consumer.
			plain, err := m.Weights()
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range plain {
				if w.Stored != "" || w.Sparse || (w.Scope != "" && w.Role != RoleOther) {
					t.Errorf("Weights lists %+v", w)
				}
			}
		})
	}
}

// TestDensifySparseInitializer: the dense form of a COO sparse initializer
// has its values at their indices and zeros elsewhere.
func TestDensifySparseInitializer(t *testing.T) {
	m := loadWeightsFixture(t, "sparse.onnx")
	sp := m.p.Graph.SparseInitializer[0]
	ws, _ := m.AllWeights()
	d, err := m.WeightTensor(ws[0])
	if err != nil {
		t.Fatal(err)
	}
	dense, _ := d.Float32()
	vals, _ := m.tensorFromProto(sp.Values)
	v, _ := vals.Float32()
	idx, _ := m.tensorFromProto(sp.Indices)
	ix, _ := idx.Int64()
	nz := 0
	for _, x := range dense {
		if x != 0 {
			nz++
		}
	}
	if nz != len(v) {
		t.Fatalf("%d non-zeros, want %d", nz, len(v))
	}
	for k, i := range ix {
		if dense[i] != v[k] {
			t.Fatalf("element %d: %g, want %g", i, dense[i], v[k])
		}
	}
}

// TestTopoSortSubgraphReads: a node whose output an If branch reads from
// the outer scope is ordered before the If even when the If comes first.
func TestTopoSortSubgraphReads(t *testing.T) {
	m := loadWeightsFixture(t, "if.onnx")
	g := m.p.Graph
	// [Constant, mm0, if0, add] → [Constant, if0, mm0, add]
	g.Node[1], g.Node[2] = g.Node[2], g.Node[1]
	if err := m.TopoSort(); err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, n := range g.Node {
		pos[n.GetName()] = i
	}
	if pos["mm0"] > pos["if0"] {
		t.Fatalf("mm0 at %d after if0 at %d", pos["mm0"], pos["if0"])
	}
}

// TestRemoveWeightConstant: a Constant-node weight is read and removed like
// an initializer.
func TestRemoveWeightConstant(t *testing.T) {
	m := loadWeightsFixture(t, "if.onnx")
	if _, err := m.ConstantOrInitializer("Wc"); err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveWeight("Wc"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ConstantOrInitializer("Wc"); err == nil {
		t.Fatal("Wc still there")
	}
	if err := m.RemoveWeight("nope"); err == nil {
		t.Fatal("removing a missing weight succeeded")
	}
}

// TestHoistWeight: a subgraph initializer moves to the main graph, where
// the subgraph reads it from the outer scope; a name clash is refused.
func TestHoistWeight(t *testing.T) {
	find := func(m *Model, name string) Weight {
		ws, err := m.AllWeights()
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range ws {
			if w.Name == name {
				return w
			}
		}
		t.Fatalf("no weight %s", name)
		return Weight{}
	}
	m := loadWeightsFixture(t, "if.onnx")
	if err := m.HoistWeight(find(m, "Wt")); err != nil {
		t.Fatal(err)
	}
	w := find(m, "Wt")
	if w.Stored != "" || w.Scope != "if0.then_branch" || w.Role != RoleMatMulB || !m.HasInitializer("Wt") {
		t.Fatalf("after hoisting: %+v", w)
	}
	clash := loadWeightsFixture(t, "if.onnx")
	wt, _ := FromFloat32("Wt", Float, []int64{1}, []float32{1})
	if err := clash.SetInitializer(wt); err != nil {
		t.Fatal(err)
	}
	if err := clash.HoistWeight(find(clash, "Wt")); !errors.Is(err, ErrHoist) {
		t.Fatalf("clash: %v", err)
	}
}

// TestMatchAttributes: nodes at the same position must agree on the
// attributes that give a weight its meaning (absent ones at their
// defaults); training-only attributes may differ.
func TestMatchAttributes(t *testing.T) {
	build := func(attrs ...Attr) *Model {
		m := New("g", 17)
		w, _ := FromFloat32("W", Float, []int64{2, 2}, []float32{1, 2, 3, 4})
		if err := m.SetInitializer(w); err != nil {
			t.Fatal(err)
		}
		m.AddInput(ValueInfo{Name: "x", DType: Float, Shape: []Dim{{Value: 1}, {Value: 2}}})
		if err := m.InsertNodes(Node{Name: "g", OpType: "Gemm", Inputs: []string{"x", "W"}, Outputs: []string{"y"}, Attrs: attrs}); err != nil {
			t.Fatal(err)
		}
		return m
	}
	for _, tc := range []struct {
		name string
		a, b []Attr
		diff string
	}{
		{"transB", nil, []Attr{AttrInt("transB", 1)}, "attribute transB 0 vs 1"},
		{"alpha default", []Attr{AttrFloatVal("alpha", 1)}, nil, ""},
		{"alpha", []Attr{AttrFloatVal("alpha", 2)}, nil, "attribute alpha 2 vs 1"},
		{"explicit zero", []Attr{AttrInt("transA", 0)}, nil, ""},
		{"seed", []Attr{AttrFloatVal("seed", 1)}, []Attr{AttrFloatVal("seed", 2)}, ""},
	} {
		_, err := Match(build(tc.a...), build(tc.b...))
		if tc.diff == "" && err != nil || tc.diff != "" && (err == nil || !strings.Contains(err.Error(), tc.diff)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.diff)
		}
	}
}
