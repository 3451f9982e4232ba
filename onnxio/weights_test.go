package onnxio

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/internal/pyoracle"
)

func TestWeightsKitchenSink(t *testing.T) {
	m := kitchenSink(t, fixtureOpts{})
	ws, err := m.WeightMap()
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		op, role        string
		out, in         int
		transB          bool
		group           int64
		via             string
		constant        bool
		reductionSize   int64
		consumers       int
		absentFromTable bool
	}
	cases := map[string]want{
		"W1":       {op: "MatMul", role: RoleMatMulB, out: 1, in: 0, reductionSize: 8, consumers: 1},
		"b1":       {op: "Add", role: RoleBias, out: 0, in: -1, consumers: 1},
		"W2":       {op: "Gemm", role: RoleGemmB, out: 0, in: 1, transB: true, reductionSize: 16, consumers: 1},
		"b2":       {op: "Gemm", role: RoleBias, out: 0, in: -1, consumers: 1},
		"W3":       {op: "Gemm", role: RoleGemmB, out: 1, in: 0, reductionSize: 4, consumers: 1},
		"b3":       {op: "Gemm", role: RoleBias, out: 0, in: -1, consumers: 1},
		"ln_scale": {op: "LayerNormalization", role: RoleNorm, out: -1, in: -1, consumers: 1},
		"ln_bias":  {op: "LayerNormalization", role: RoleNorm, out: -1, in: -1, consumers: 1},
		"cW":       {op: "MatMul", role: RoleMatMulB, out: 1, in: 0, constant: true, reductionSize: 6, consumers: 1},
		// stored [5,6], transposed to [6,5] = [K,N]: output axis 0, reduction axis 1
		"Wt":       {op: "MatMul", role: RoleMatMulB, out: 0, in: 1, via: "Transpose", reductionSize: 6, consumers: 1},
		"Wh":       {op: "MatMul", role: RoleMatMulB, out: 1, in: 0, via: "Cast", reductionSize: 5, consumers: 1},
		"Wq":       {op: "MatMul", role: RoleMatMulB, out: 1, in: 0, via: "DequantizeLinear", reductionSize: 5, consumers: 1},
		"Wq_scale": {op: "DequantizeLinear", role: RoleQuantParam, out: -1, in: -1, consumers: 1},
		"Wi":       {op: "MatMul", role: RoleMatMulB, out: 1, in: 0, via: "Identity", reductionSize: 3, consumers: 1},
		"emb":      {op: "Gather", role: RoleEmbedding, out: -1, in: -1, consumers: 1},
		"Wc":       {op: "Conv", role: RoleConvW, out: 0, in: 1, group: 2, reductionSize: 2 * 3 * 3, consumers: 1},
		"bc":       {op: "Conv", role: RoleBias, out: 0, in: -1, group: 2, consumers: 1},
		"bn_scale": {op: "BatchNormalization", role: RoleNorm, out: -1, in: -1, consumers: 1},
		"bn_bias":  {op: "BatchNormalization", role: RoleNorm, out: -1, in: -1, consumers: 1},
		"bn_mean":  {op: "BatchNormalization", role: RoleNorm, out: -1, in: -1, consumers: 1},
		"bn_var":   {op: "BatchNormalization", role: RoleNorm, out: -1, in: -1, consumers: 1},
		// ConvTranspose W [C, O/g, kh, kw]: input channels first
		// one output channel of group g is fed by C/g = 4 input channels × 2×2
		"Wct": {op: "ConvTranspose", role: RoleConvTransposeW, out: 1, in: 0, group: 2, reductionSize: 4 * 2 * 2, consumers: 1},
		"bct": {op: "ConvTranspose", role: RoleBias, out: 0, in: -1, group: 2, consumers: 1},
	}
	for name, w := range cases {
		got, ok := ws[name]
		if !ok {
			t.Errorf("%s: not found by Weights", name)
			continue
		}
		via := strings.Join(got.Via, ",")
		if got.Op != w.op || got.Role != w.role || got.OutAxis != w.out || got.InAxis != w.in || got.TransB != w.transB ||
			got.Group != w.group || via != w.via || got.Constant != w.constant || got.ReductionSize() != w.reductionSize || got.Consumers != w.consumers {
			t.Errorf("%s: got op %s role %s out %d in %d transB %v group %d via %q constant %v K %d consumers %d,\n want op %s role %s out %d in %d transB %v group %d via %q constant %v K %d consumers %d",
				name, got.Op, got.Role, got.OutAxis, got.InAxis, got.TransB, got.Group, via, got.Constant, got.ReductionSize(), got.Consumers,
				w.op, w.role, w.out, w.in, w.transB, w.group, w.via, w.constant, w.reductionSize, w.consumers)
		}
	}
	// the int8 zero point is not a parameter
	if _, ok := ws["Wq_zp"]; ok {
		t.Error("Wq_zp (integer zero point) listed as a weight")
	}
	if len(ws) != len(cases) {
		t.Errorf("Weights lists %d tensors, want %d", len(ws), len(cases))
	}
	// Weights is ordered by consuming node, then slot
	list, _ := m.Weights()
	for i := 1; i < len(list); i++ {
		a, b := list[i-1], list[i]
		if a.NodeIndex > b.NodeIndex || (a.NodeIndex == b.NodeIndex && a.Slot > b.Slot) {
			t.Errorf("Weights out of order: %s (node %d slot %d) before %s (node %d slot %d)", a.Name, a.NodeIndex, a.Slot, b.Name, b.NodeIndex, b.Slot)
		}
	}
	// every axis a Weight reports lies inside its shape
	for _, w := range list {
		if w.OutAxis >= len(w.Shape) || w.InAxis >= len(w.Shape) {
			t.Errorf("%s: axes %d/%d outside shape %v", w.Name, w.OutAxis, w.InAxis, w.Shape)
		}
	}
}

// TestWeightsOddShapes: weights of ranks an op does not expect get no
// layout (and no panic) instead of axes outside their shape.
func TestWeightsOddShapes(t *testing.T) {
	m := New("odd", 21)
	for _, it := range []struct {
		name  string
		shape []int64
	}{{"wc", nil}, {"bc", nil}, {"wg", []int64{4}}, {"wct", []int64{3}}} {
		tt, err := FromFloat32(it.name, Float, it.shape, make([]float32, mustN(t, it.shape)))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetInitializer(tt); err != nil {
			t.Fatal(err)
		}
	}
	m.AddInput(ValueInfo{Name: "x", DType: Float})
	err := m.InsertNodes(
		Node{Name: "c", OpType: "Conv", Inputs: []string{"x", "wc", "bc"}, Outputs: []string{"y"}},
		Node{Name: "g", OpType: "Gemm", Inputs: []string{"y", "wg"}, Outputs: []string{"z"}},
		Node{Name: "t", OpType: "ConvTranspose", Inputs: []string{"z", "wct"}, Outputs: []string{"u"}},
	)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := m.Weights()
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		if w.OutAxis >= len(w.Shape) || w.InAxis >= len(w.Shape) {
			t.Errorf("%s %v: axes %d/%d outside the shape", w.Name, w.Shape, w.OutAxis, w.InAxis)
		}
		_ = w.ReductionSize() // must not panic
	}
}

func mustN(t *testing.T, shape []int64) int64 {
	n, err := NumElements(shape)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWeightsTied(t *testing.T) {
	m := New("tied", 21)
	emb, _ := FromFloat32("emb", Float, []int64{10, 4}, make([]float32, 40))
	m.SetInitializer(emb)
	m.AddInput(ValueInfo{Name: "ids", DType: Int64})
	err := m.InsertNodes(
		Node{Name: "gather", OpType: "Gather", Inputs: []string{"emb", "ids"}, Outputs: []string{"h"}},
		Node{Name: "lm", OpType: "Gemm", Inputs: []string{"h", "emb"}, Outputs: []string{"logits"}, Attrs: []Attr{AttrInt("transB", 1)}},
	)
	if err != nil {
		t.Fatal(err)
	}
	ws, _ := m.WeightMap()
	w := ws["emb"]
	if w.Consumers != 2 {
		t.Errorf("tied embedding: %d consumers, want 2", w.Consumers)
	}
	if w.Role != RoleEmbedding || w.Op != "Gather" {
		t.Errorf("tied embedding: role %s of %s, want the first compute consumer's %s of Gather", w.Role, w.Op, RoleEmbedding)
	}
}

func TestMatchRenamedExports(t *testing.T) {
	a := kitchenSink(t, fixtureOpts{prefix: "a_", seed: 1})
	b := kitchenSink(t, fixtureOpts{prefix: "model.layers.", seed: 2})
	pairs, err := Match(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(pairs) != len(a.Initializers()) {
		t.Fatalf("%d pairs for %d initializers", len(pairs), len(a.Initializers()))
	}
	for _, p := range pairs {
		if strings.TrimPrefix(p.A, "a_") != strings.TrimPrefix(p.B, "model.layers.") {
			t.Errorf("paired %s with %s", p.A, p.B)
		}
		da, sa, _ := a.InitializerInfo(p.A)
		if da != p.DType || !slices.Equal(sa, p.Shape) {
			t.Errorf("%s: pair says %v %v, tensor is %v %v", p.A, p.DType, p.Shape, da, sa)
		}
	}
	// the order of initializers in the file does not matter
	c := kitchenSink(t, fixtureOpts{prefix: "c_"})
	for _, name := range []string{"c_W1", "c_emb"} {
		tt, _ := c.Initializer(name)
		tt = tt.Clone()
		c.RemoveInitializer(name)
		c.SetInitializer(tt) // appended at the end
	}
	pairs, err = Match(a, c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pairs {
		if strings.TrimPrefix(p.A, "a_") != strings.TrimPrefix(p.B, "c_") {
			t.Errorf("reordered: paired %s with %s", p.A, p.B)
		}
	}
}

func TestMatchReportsEveryDifference(t *testing.T) {
	a := kitchenSink(t, fixtureOpts{prefix: "a_"})
	b := kitchenSink(t, fixtureOpts{prefix: "b_", hidden: 32, extra: true})
	// and a dtype change
	wi, _ := b.Initializer("b_Wi")
	v, _ := wi.Float32()
	wi16, _ := FromFloat32("b_Wi", Float16, wi.Shape, v)
	b.SetInitializer(wi16)
	_, err := Match(a, b)
	if !errors.Is(err, ErrMismatch) {
		t.Fatalf("got %v, want ErrMismatch", err)
	}
	var me *MatchError
	if !errors.As(err, &me) {
		t.Fatalf("%T is not a *MatchError", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"node count: 19 vs 20",
		`"a_W1" vs "b_W1"`, "shape [8 16] vs [8 32]",
		`"a_b1" vs "b_b1"`, "shape [16] vs [32]",
		`"a_W2" vs "b_W2"`, "shape [4 16] vs [4 32]",
		`"a_Wi" vs "b_Wi"`, "dtype float32 vs float16",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q:\n%s", want, msg)
		}
	}
	if len(me.Diffs) != 5 {
		t.Errorf("%d differences, want 5:\n%s", len(me.Diffs), msg)
	}
	// a model matches itself
	if _, err := Match(a, a.Clone()); err != nil {
		t.Errorf("a model does not match its clone: %v", err)
	}
}

func TestMatchErrorTruncates(t *testing.T) {
	e := &MatchError{}
	for i := 0; i < 30; i++ {
		e.Diffs = append(e.Diffs, fmt.Sprintf("diff %d", i))
	}
	s := e.Error()
	if !strings.Contains(s, "30 differences") || !strings.Contains(s, "and 10 more") || strings.Contains(s, "diff 25") {
		t.Errorf("unexpected message:\n%s", s)
	}
}

// TestWeightsThroughTransposes: layouts follow any Transpose permutation,
// including batched rank-3 weights and chains; an invalid perm leaves the
// layout unknown rather than wrong.
func TestWeightsThroughTransposes(t *testing.T) {
	cases := []struct {
		name    string
		shape   []int64
		perms   [][]int64 // one Transpose per entry (nil: default reverse)
		out, in int
	}{
		{"2-D reversed", []int64{6, 5}, [][]int64{nil}, 0, 1},
		{"2-D twice", []int64{5, 6}, [][]int64{{1, 0}, {1, 0}}, 1, 0},
		{"batched [B,N,K] → [B,K,N]", []int64{2, 6, 5}, [][]int64{{0, 2, 1}}, 1, 2},
		{"batched reversed [K,N,B] → [B,N,K]… then [B,K,N]", []int64{5, 6, 2}, [][]int64{nil, {0, 2, 1}}, 1, 0},
		{"invalid perm", []int64{6, 5}, [][]int64{{0, 0}}, -1, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := New("tr", 21)
			n, _ := NumElements(c.shape)
			w, _ := FromFloat32("w", Float, c.shape, make([]float32, n))
			m.SetInitializer(w)
			m.AddInput(ValueInfo{Name: "x", DType: Float})
			var nodes []Node
			cur := "w"
			for i, p := range c.perms {
				var attrs []Attr
				if p != nil {
					attrs = append(attrs, AttrIntList("perm", p...))
				}
				out := "t" + fmt.Sprint(i)
				nodes = append(nodes, Node{Name: out, OpType: "Transpose", Inputs: []string{cur}, Outputs: []string{out}, Attrs: attrs})
				cur = out
			}
			nodes = append(nodes, Node{Name: "mm", OpType: "MatMul", Inputs: []string{"x", cur}, Outputs: []string{"y"}})
			if err := m.InsertNodes(nodes...); err != nil {
				t.Fatal(err)
			}
			ws, _ := m.WeightMap()
			got := ws["w"]
			if got.Role != RoleMatMulB || got.OutAxis != c.out || got.InAxis != c.in {
				t.Errorf("role %s out %d in %d, want %s out %d in %d", got.Role, got.OutAxis, got.InAxis, RoleMatMulB, c.out, c.in)
			}
		})
	}
}

// TestMatchZooRenamed pairs each PyTorch-exported zoo model with a copy
// whose initializers carry other names (and sit in another order).
func TestMatchZooRenamed(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(pyoracle.RepoRoot(), "models", "zoo", "*", "base.onnx"))
	if len(files) == 0 {
		t.Skip("no zoo models (make zoo)")
	}
	for _, f := range files {
		a, err := Load(f)
		if err != nil {
			t.Fatal(err)
		}
		b := a.Clone()
		names := b.Initializers()
		for i := len(names) - 1; i >= 0; i-- { // reversed: the order changes too
			old := names[i]
			tt, err := b.Initializer(old)
			if err != nil {
				t.Fatal(err)
			}
			c := tt.Clone()
			c.Name = "renamed_" + strconv.Itoa(i)
			if err := b.SetInitializer(c); err != nil {
				t.Fatal(err)
			}
			if err := b.RemoveInitializer(old); err != nil {
				t.Fatal(err)
			}
			b.RenameInput(old, c.Name)
		}
		pairs, err := Match(a, b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(pairs) != len(names) {
			t.Fatalf("%s: %d pairs for %d initializers", f, len(pairs), len(names))
		}
		index := map[string]int{}
		for i, n := range names {
			index[n] = i
		}
		for _, p := range pairs {
			if p.B != "renamed_"+strconv.Itoa(index[p.A]) {
				t.Errorf("%s: paired %s with %s", f, p.A, p.B)
			}
		}
		t.Logf("%s: %d tensors paired across names", filepath.Base(filepath.Dir(f)), len(pairs))
	}
}
