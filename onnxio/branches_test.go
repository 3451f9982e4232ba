package onnxio

import (
	"bytes"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/onnxpost/onnxpost/onnxio/internal/onnxpb"
)

func vinfo(name string, dt DType, dims ...string) *pb.ValueInfoProto {
	var ds []*pb.TensorShapeProto_Dimension
	for _, d := range dims {
		ds = append(ds, &pb.TensorShapeProto_Dimension{Value: &pb.TensorShapeProto_Dimension_DimParam{DimParam: d}})
	}
	return &pb.ValueInfoProto{Name: proto.String(name), Type: &pb.TypeProto{Value: &pb.TypeProto_TensorType{TensorType: &pb.TypeProto_Tensor{
		ElemType: proto.Int32(int32(dt)), Shape: &pb.TensorShapeProto{Dim: ds}}}}}
}

func pnode(op string, in, out []string) *pb.NodeProto {
	return &pb.NodeProto{OpType: proto.String(op), Name: proto.String(out[0] + "_node"), Input: in, Output: out}
}

// ifMergedFixture builds a small If-merged model: inputs x [n,4], past
// [n,4] and cond; W [4,4] read by both branches; then = MatMul(x+past, W),
// else = MatMul(x, W).
func ifMergedFixture(t *testing.T) *Model {
	t.Helper()
	w, err := FromFloat32("W", Float, []int64{4, 4}, make([]float32, 16))
	if err != nil {
		t.Fatal(err)
	}
	m := New("merged", 17)
	if err := m.SetInitializer(w); err != nil {
		t.Fatal(err)
	}
	then := &pb.GraphProto{Name: proto.String("then"),
		Node:   []*pb.NodeProto{pnode("Add", []string{"x", "past"}, []string{"t/h"}), pnode("MatMul", []string{"t/h", "W"}, []string{"t/y"})},
		Output: []*pb.ValueInfoProto{vinfo("t/y", Float, "n", "4")}}
	els := &pb.GraphProto{Name: proto.String("else"),
		Node:   []*pb.NodeProto{pnode("MatMul", []string{"x", "W"}, []string{"e/y"})},
		Output: []*pb.ValueInfoProto{vinfo("e/y", Float, "n", "4")}}
	g := m.p.Graph
	g.Input = []*pb.ValueInfoProto{vinfo("x", Float, "n", "4"), vinfo("past", Float, "n", "4"), vinfo("cond", Bool)}
	g.Output = []*pb.ValueInfoProto{vinfo("y", Float, "n", "4")}
	g.Node = []*pb.NodeProto{{OpType: proto.String("If"), Name: proto.String("if0"), Input: []string{"cond"}, Output: []string{"y"},
		Attribute: []*pb.AttributeProto{
			{Name: proto.String("else_branch"), Type: pb.AttributeProto_GRAPH.Enum(), G: els},
			{Name: proto.String("then_branch"), Type: pb.AttributeProto_GRAPH.Enum(), G: then},
		}}}
	m.reindex()
	return m
}

func inputNames(m *Model) []string {
	var out []string
	for _, v := range m.Inputs() {
		out = append(out, v.Name)
	}
	return out
}

// Each branch becomes a plain model with the inputs it reads, the weights,
// and the If's output names; joining the lifted branches unchanged gives
// back the model.
func TestLiftJoinRoundTrip(t *testing.T) {
	m := ifMergedFixture(t)
	if name, ok := m.IfMerged(); !ok || name != "if0" {
		t.Fatalf("IfMerged = %q, %v", name, ok)
	}
	bs, err := m.LiftBranches()
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 2 || bs[0].Attr != "else_branch" || bs[1].Attr != "then_branch" {
		t.Fatalf("branches %+v", bs)
	}
	if got := inputNames(bs[0].Model); !slices.Equal(got, []string{"x"}) {
		t.Errorf("else inputs %v", got)
	}
	if got := inputNames(bs[1].Model); !slices.Equal(got, []string{"x", "past"}) {
		t.Errorf("then inputs %v", got)
	}
	for _, b := range bs {
		if o := b.Model.Outputs(); len(o) != 1 || o[0].Name != "y" {
			t.Errorf("%s outputs %+v", b.Attr, o)
		}
		if !slices.Equal(b.Model.Initializers(), []string{"W"}) {
			t.Errorf("%s initializers %v", b.Attr, b.Model.Initializers())
		}
		ws, _ := b.Model.Weights()
		if len(ws) != 1 || ws[0].Role != RoleMatMulB || ws[0].Special() != "" {
			t.Errorf("%s: W is not a plain MatMul weight in the lifted model: %+v", b.Attr, ws)
		}
	}
	j, err := m.JoinBranches(bs)
	if err != nil {
		t.Fatal(err)
	}
	if !j.Equal(m) {
		t.Error("join(lift(m)) differs from m")
	}
}

// The zoo's merged decoder splits into its no-past and with-past decoders.
func TestLiftZooMergedDecoder(t *testing.T) {
	m, err := Load(filepath.Join("..", "models", "zoo", "lm", "base_merged.onnx"))
	if err != nil {
		t.Skipf("zoo LM not present: %v", err)
	}
	bs, err := m.LiftBranches()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		ins := inputNames(b.Model)
		past := slices.ContainsFunc(ins, func(s string) bool { return strings.HasPrefix(s, "past_key_values.") })
		if past != (b.Attr == "then_branch") || slices.Contains(ins, "use_cache_branch") {
			t.Errorf("%s inputs %v", b.Attr, ins)
		}
		if o := b.Model.Outputs(); o[0].Name != "logits" {
			t.Errorf("%s first output %q", b.Attr, o[0].Name)
		}
	}
	j, err := m.JoinBranches(bs)
	if err != nil {
		t.Fatal(err)
	}
	if !j.Equal(m) {
		t.Error("join(lift(m)) differs from m")
	}
}

// Models that are not If-merged, and joins that cannot be made, are
// refused with ErrBranches and the reason.
func TestBranchesRefused(t *testing.T) {
	plain := New("plain", 17)
	if _, ok := plain.IfMerged(); ok {
		t.Error("a model without If is If-merged")
	}
	if _, err := plain.LiftBranches(); !errors.Is(err, ErrBranches) {
		t.Errorf("LiftBranches of a plain model: %v", err)
	}
	// a main-graph node reading the weight too
	m := ifMergedFixture(t)
	m.p.Graph.Node = append(m.p.Graph.Node, pnode("MatMul", []string{"x", "W"}, []string{"z"}))
	if _, ok := m.IfMerged(); ok {
		t.Error("a model whose main graph reads the weight is If-merged")
	}
	// a branch reading a value computed in the main graph
	m = ifMergedFixture(t)
	m.p.Graph.Node = append([]*pb.NodeProto{pnode("Relu", []string{"x"}, []string{"xr"})}, m.p.Graph.Node...)
	m.p.Graph.Node[1].Attribute[0].G.Node[0].Input[0] = "xr"
	if _, ok := m.IfMerged(); ok {
		t.Error("a branch reading a main-graph value is accepted")
	}
	// a branch passing a value through
	m = ifMergedFixture(t)
	m.p.Graph.Node[0].Attribute[0].G.Output[0].Name = proto.String("x")
	if _, err := m.LiftBranches(); !errors.Is(err, ErrBranches) || !strings.Contains(err.Error(), `passes "x" through`) {
		t.Errorf("passthrough output: %v", err)
	}
	// transformed branches disagreeing on a shared tensor
	m = ifMergedFixture(t)
	bs, err := m.LiftBranches()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := FromFloat32("W", Float, []int64{4, 4}, []float32{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1})
	if err := bs[1].Model.SetInitializer(other); err != nil {
		t.Fatal(err)
	}
	if _, err := m.JoinBranches(bs); !errors.Is(err, ErrBranches) || !strings.Contains(err.Error(), `different values for "W"`) {
		t.Errorf("disagreeing branches: %v", err)
	}
}

// DequantizeLinear nodes of shared quantized weights move to the main
// graph once, before the If; the branches read their output.
func TestJoinHoistsSharedDequantize(t *testing.T) {
	m := ifMergedFixture(t)
	bs, err := m.LiftBranches()
	if err != nil {
		t.Fatal(err)
	}
	q8, err := NewTensor("Wq", Int8, []int64{4, 4}, make([]byte, 16))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := FromFloat32("Ws", Float, nil, []float32{0.1})
	for _, b := range bs {
		g := b.Model.p.Graph
		g.Initializer = nil
		b.Model.reindex()
		if err := b.Model.SetInitializer(q8); err != nil {
			t.Fatal(err)
		}
		if err := b.Model.SetInitializer(s); err != nil {
			t.Fatal(err)
		}
		g.Node = append([]*pb.NodeProto{pnode("DequantizeLinear", []string{"Wq", "Ws"}, []string{"W_dq"})}, g.Node...)
		for _, n := range g.Node {
			for i, in := range n.Input {
				if in == "W" {
					n.Input[i] = "W_dq"
				}
			}
		}
	}
	j, err := m.JoinBranches(bs)
	if err != nil {
		t.Fatal(err)
	}
	main := j.p.Graph.Node
	if len(main) != 2 || main[0].GetOpType() != "DequantizeLinear" || main[1].GetOpType() != "If" {
		t.Fatalf("main graph ops %v", j.OpCounts())
	}
	for _, sub := range subgraphs(main[1]) {
		for _, n := range sub.g.Node {
			if n.GetOpType() == "DequantizeLinear" {
				t.Errorf("%s still holds a DequantizeLinear", sub.attr)
			}
		}
	}
	if got := j.Initializers(); !slices.Equal(got, []string{"Wq", "Ws"}) {
		t.Errorf("initializers %v", got)
	}

	// the joined, quantized model is still If-merged: lifting gives each
	// branch its DequantizeLinear back (the branch reads no value of the
	// main graph), and joining the lifted branches gives back the model
	if _, ok := j.IfMerged(); !ok {
		t.Fatal("the quantized merged model is not recognised as If-merged")
	}
	lifted, err := j.LiftBranches()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range lifted {
		if ops := b.Model.OpCounts(); ops["DequantizeLinear"] != 1 {
			t.Errorf("%s: ops %v, want the DequantizeLinear back", b.Attr, ops)
		}
		if got := b.Model.Initializers(); !slices.Equal(got, []string{"Wq", "Ws"}) {
			t.Errorf("%s: initializers %v", b.Attr, got)
		}
		if free := freeNames(b.Model.p.Graph); len(free) > 0 {
			t.Errorf("%s reads undefined values %v", b.Attr, free)
		}
	}
	again, err := j.JoinBranches(lifted)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := j.Bytes()
	got, _ := again.Bytes()
	if !bytes.Equal(got, want) {
		t.Error("joining the lifted branches of the quantized model changed it")
	}

	// a DequantizeLinear whose output the main graph also reads (here: a
	// graph output) is no branch weight: the model is not If-merged
	other := j.Clone()
	other.p.Graph.Output = append(other.p.Graph.Output, vinfo("W_dq", Float, "4", "4"))
	other.reindex()
	if _, ok := other.IfMerged(); ok {
		t.Error("a model whose main graph reads the dequantized weight is taken as If-merged")
	}
}

// DataBranch picks the first branch whose every input the data holds, and
// names per branch an input it lacks when there is none.
func TestDataBranch(t *testing.T) {
	m := ifMergedFixture(t)
	for _, tc := range []struct {
		has  []string
		want string // branch, or error text
	}{
		{[]string{"x"}, "else_branch"},
		{[]string{"x", "past", "cond"}, "else_branch"},
		{[]string{"past"}, `the data holds the inputs of no branch (else_branch needs "x"; then_branch needs "x")`},
	} {
		b, err := m.DataBranch(func(name string) bool { return slices.Contains(tc.has, name) })
		switch {
		case err != nil:
			if !errors.Is(err, ErrBranches) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v: error %v, want %q", tc.has, err, tc.want)
			}
		case b.Attr != tc.want || !slices.Equal(inputNames(b.Model), []string{"x"}):
			t.Errorf("%v: branch %s with inputs %v, want %s", tc.has, b.Attr, inputNames(b.Model), tc.want)
		}
	}
	if _, err := New("plain", 17).DataBranch(func(string) bool { return true }); !errors.Is(err, ErrBranches) {
		t.Errorf("plain model: error %v, want ErrBranches", err)
	}
}
