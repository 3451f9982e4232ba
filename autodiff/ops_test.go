package autodiff_test

import (
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

func p(name string, shape ...int64) tensorSpec {
	return tensorSpec{name: name, shape: shape, param: true}
}

func pg(name string, gen func(*randT, int) []float64, shape ...int64) tensorSpec {
	return tensorSpec{name: name, shape: shape, param: true, gen: gen}
}

func ci(name string, v ...int64) tensorSpec {
	return tensorSpec{name: name, shape: []int64{int64(len(v))}, ints: v}
}

var (
	ai  = onnxio.AttrInt
	ail = onnxio.AttrIntList
	af  = onnxio.AttrFloatVal
	as  = onnxio.AttrStr
)

func one(op string, in []string, attrs ...onnxio.Attr) []onnxio.Node {
	return []onnxio.Node{nd(op, in, []string{"y"}, attrs...)}
}

// opCases covers every supported op with broadcasting and attribute
// variants.
func opCases() []gradCase {
	return []gradCase{
		{name: "Add/broadcast", tensors: []tensorSpec{p("a", 2, 3, 4), p("b", 3, 1)}, nodes: one("Add", []string{"a", "b"})},
		{name: "Add/size1", tensors: []tensorSpec{p("a", 2, 3), p("b", 1)}, nodes: one("Add", []string{"a", "b"})},
		{name: "Sub/broadcast", tensors: []tensorSpec{p("a", 2, 3), p("b", 3)}, nodes: one("Sub", []string{"a", "b"})},
		{name: "Mul/both-broadcast", tensors: []tensorSpec{p("a", 2, 1, 4), p("b", 3, 1)}, nodes: one("Mul", []string{"a", "b"})},
		{name: "Div", tensors: []tensorSpec{p("a", 2, 3), pg("b", positive, 2, 1)}, nodes: one("Div", []string{"a", "b"})},
		{name: "Relu", tensors: []tensorSpec{pg("x", awayFromZero, 3, 4)}, nodes: one("Relu", []string{"x"})},
		{name: "LeakyRelu", tensors: []tensorSpec{pg("x", awayFromZero, 3, 4)}, nodes: one("LeakyRelu", []string{"x"}, af("alpha", 0.1))},
		{name: "Sigmoid", tensors: []tensorSpec{p("x", 3, 4)}, nodes: one("Sigmoid", []string{"x"})},
		{name: "Tanh", tensors: []tensorSpec{p("x", 3, 4)}, nodes: one("Tanh", []string{"x"})},
		{name: "Sin", tensors: []tensorSpec{p("x", 3, 4)}, nodes: one("Sin", []string{"x"})},
		{name: "Cos", tensors: []tensorSpec{p("x", 3, 4)}, nodes: one("Cos", []string{"x"})},
		{name: "Erf", tensors: []tensorSpec{p("x", 3, 4)}, nodes: one("Erf", []string{"x"})},
		{name: "Gelu", opset: 20, tensors: []tensorSpec{p("x", 3, 4)}, nodes: one("Gelu", []string{"x"})},
		{name: "Exp", tensors: []tensorSpec{p("x", 3, 4)}, nodes: one("Exp", []string{"x"})},
		{name: "Log", tensors: []tensorSpec{pg("x", positive, 3, 4)}, nodes: one("Log", []string{"x"})},
		{name: "Sqrt", tensors: []tensorSpec{pg("x", positive, 3, 4)}, nodes: one("Sqrt", []string{"x"})},
		{name: "Reciprocal", tensors: []tensorSpec{pg("x", positive, 3, 4)}, nodes: one("Reciprocal", []string{"x"})},
		{name: "Neg", tensors: []tensorSpec{p("x", 3, 4)}, nodes: one("Neg", []string{"x"})},
		{name: "Abs", tensors: []tensorSpec{pg("x", awayFromZero, 3, 4)}, nodes: one("Abs", []string{"x"})},
		{name: "Pow", tensors: []tensorSpec{pg("a", positive, 2, 3), pg("e", positive, 1)}, nodes: one("Pow", []string{"a", "e"})},
		{name: "Clip", tensors: []tensorSpec{pg("x", awayFromZero, 3, 4), {name: "lo", gen: func(*randT, int) []float64 { return []float64{-0.7} }}, {name: "hi", gen: func(*randT, int) []float64 { return []float64{0.9} }}},
			nodes: one("Clip", []string{"x", "lo", "hi"})},
		{name: "Softmax/axis1", tensors: []tensorSpec{p("x", 2, 3, 4)}, nodes: one("Softmax", []string{"x"}, ai("axis", 1))},
		{name: "LogSoftmax", tensors: []tensorSpec{p("x", 2, 5)}, nodes: one("LogSoftmax", []string{"x"})},
		{name: "MatMul/2d", tensors: []tensorSpec{p("a", 2, 3), p("b", 3, 4)}, nodes: one("MatMul", []string{"a", "b"})},
		{name: "MatMul/3dx2d", tensors: []tensorSpec{p("a", 2, 5, 3), p("b", 3, 4)}, nodes: one("MatMul", []string{"a", "b"})},
		{name: "MatMul/batch-broadcast", tensors: []tensorSpec{p("a", 2, 1, 5, 3), p("b", 3, 3, 4)}, nodes: one("MatMul", []string{"a", "b"})},
		{name: "MatMul/vec-left", tensors: []tensorSpec{p("a", 3), p("b", 2, 3, 4)}, nodes: one("MatMul", []string{"a", "b"})},
		{name: "MatMul/vec-right", tensors: []tensorSpec{p("a", 2, 3, 4), p("b", 4)}, nodes: one("MatMul", []string{"a", "b"})},
		{name: "Gemm/plain", tensors: []tensorSpec{p("a", 2, 3), p("b", 3, 4), p("c", 4)}, nodes: one("Gemm", []string{"a", "b", "c"})},
		{name: "Gemm/transB", tensors: []tensorSpec{p("a", 2, 3), p("b", 4, 3), p("c", 2, 4)}, nodes: one("Gemm", []string{"a", "b", "c"}, ai("transB", 1), af("alpha", 0.5), af("beta", 2))},
		{name: "Gemm/transA", tensors: []tensorSpec{p("a", 3, 2), p("b", 3, 4), p("c", 1, 1)}, nodes: one("Gemm", []string{"a", "b", "c"}, ai("transA", 1))},
		{name: "Gemm/transAB", tensors: []tensorSpec{p("a", 3, 2), p("b", 4, 3)}, nodes: one("Gemm", []string{"a", "b"}, ai("transA", 1), ai("transB", 1), af("alpha", 1.5))},
		{name: "Conv/plain", tensors: []tensorSpec{p("x", 2, 3, 5, 5), p("w", 4, 3, 3, 3), p("b", 4)},
			nodes: one("Conv", []string{"x", "w", "b"}, ail("pads", 1, 1, 1, 1))},
		{name: "Conv/group-stride-dilation", tensors: []tensorSpec{p("x", 2, 4, 7, 6), p("w", 6, 2, 3, 2)},
			nodes: one("Conv", []string{"x", "w"}, ai("group", 2), ail("strides", 2, 1), ail("pads", 1, 0, 2, 1), ail("dilations", 1, 2))},
		{name: "Conv/depthwise-stride2", tensors: []tensorSpec{p("x", 1, 3, 6, 6), p("w", 3, 1, 3, 3), p("b", 3)},
			nodes: one("Conv", []string{"x", "w", "b"}, ai("group", 3), ail("strides", 2, 2), ail("pads", 1, 1, 1, 1))},
		{name: "Conv/1d-same", tensors: []tensorSpec{p("x", 2, 2, 7), p("w", 3, 2, 4)},
			nodes: one("Conv", []string{"x", "w"}, as("auto_pad", "SAME_UPPER"), ail("strides", 2))},
		{name: "MaxPool", tensors: []tensorSpec{pg("x", distinct, 2, 3, 6, 5)},
			nodes: one("MaxPool", []string{"x"}, ail("kernel_shape", 2, 3), ail("strides", 2, 1), ail("pads", 1, 1, 0, 1))},
		{name: "MaxPool/overlap", tensors: []tensorSpec{pg("x", distinct, 2, 2, 5, 5)},
			nodes: one("MaxPool", []string{"x"}, ail("kernel_shape", 3, 3), ail("strides", 1, 1))},
		{name: "AveragePool/exclude-pad", tensors: []tensorSpec{p("x", 2, 3, 6, 5)},
			nodes: one("AveragePool", []string{"x"}, ail("kernel_shape", 3, 2), ail("strides", 2, 2), ail("pads", 1, 0, 1, 1))},
		{name: "AveragePool/include-pad", tensors: []tensorSpec{p("x", 1, 2, 5, 5)},
			nodes: one("AveragePool", []string{"x"}, ail("kernel_shape", 3, 3), ail("pads", 1, 1, 1, 1), ai("count_include_pad", 1))},
		{name: "GlobalAveragePool", tensors: []tensorSpec{p("x", 2, 3, 4, 5)}, nodes: one("GlobalAveragePool", []string{"x"})},
		{name: "GlobalMaxPool", tensors: []tensorSpec{pg("x", distinct, 2, 3, 4, 5)}, nodes: one("GlobalMaxPool", []string{"x"})},
		{name: "BatchNormalization", tensors: []tensorSpec{p("x", 2, 3, 4, 5), p("s", 3), p("b", 3), p("m", 3), pg("v", positive, 3)},
			nodes: one("BatchNormalization", []string{"x", "s", "b", "m", "v"}, af("epsilon", 1e-3))},
		{name: "LayerNormalization/last", tensors: []tensorSpec{p("x", 2, 3, 8), p("s", 8), p("b", 8)},
			nodes: one("LayerNormalization", []string{"x", "s", "b"})},
		{name: "LayerNormalization/axis1", tensors: []tensorSpec{p("x", 2, 3, 4), p("s", 3, 4)},
			nodes: one("LayerNormalization", []string{"x", "s"}, ai("axis", 1), af("epsilon", 1e-3))},
		{name: "Reshape", tensors: []tensorSpec{p("x", 2, 3, 4), ci("shape", 0, -1)}, nodes: one("Reshape", []string{"x", "shape"})},
		{name: "Flatten", tensors: []tensorSpec{p("x", 2, 3, 4)}, nodes: one("Flatten", []string{"x"}, ai("axis", 2))},
		{name: "Squeeze", tensors: []tensorSpec{p("x", 2, 1, 4), ci("axes", 1)}, nodes: one("Squeeze", []string{"x", "axes"})},
		{name: "Unsqueeze", tensors: []tensorSpec{p("x", 2, 4), ci("axes", 0, 2)}, nodes: one("Unsqueeze", []string{"x", "axes"})},
		{name: "Transpose", tensors: []tensorSpec{p("x", 2, 3, 4)}, nodes: one("Transpose", []string{"x"}, ail("perm", 1, 2, 0))},
		{name: "Transpose/default", tensors: []tensorSpec{p("x", 2, 3, 4)}, nodes: one("Transpose", []string{"x"})},
		{name: "Concat", tensors: []tensorSpec{p("a", 2, 1, 3), p("b", 2, 2, 3), p("c", 2, 3, 3)}, nodes: one("Concat", []string{"a", "b", "c"}, ai("axis", -2))},
		{name: "Slice/steps-negative", tensors: []tensorSpec{p("x", 4, 7), ci("st", 3, -1), ci("en", 0, 1), ci("ax", 0, 1), ci("sp", -2, -2)},
			nodes: one("Slice", []string{"x", "st", "en", "ax", "sp"})},
		{name: "Gather/repeated", tensors: []tensorSpec{p("x", 5, 3), {name: "i", shape: []int64{2, 2}, ints: []int64{1, 4, -1, 1}}},
			nodes: one("Gather", []string{"x", "i"})},
		{name: "Gather/axis1", tensors: []tensorSpec{p("x", 2, 5, 3), {name: "i", shape: []int64{3}, ints: []int64{0, 2, 2}}},
			nodes: one("Gather", []string{"x", "i"}, ai("axis", 1))},
		{name: "ReduceMean/keepdims0", tensors: []tensorSpec{p("x", 2, 3, 4)}, nodes: one("ReduceMean", []string{"x"}, ail("axes", 1, -1), ai("keepdims", 0))},
		{name: "ReduceMean/all", tensors: []tensorSpec{p("x", 2, 3)}, nodes: one("ReduceMean", []string{"x"})},
		{name: "ReduceMean/opset18", opset: 18, tensors: []tensorSpec{p("x", 2, 3, 4), ci("ax", 2)}, nodes: one("ReduceMean", []string{"x", "ax"})},
		{name: "ReduceSum", tensors: []tensorSpec{p("x", 2, 3, 4), ci("ax", 0)}, nodes: one("ReduceSum", []string{"x", "ax"}, ai("keepdims", 0))},
		{name: "Where", tensors: []tensorSpec{{name: "c", shape: []int64{3, 1}, boolean: []bool{true, false, true}}, p("a", 3, 4), p("b", 4)},
			nodes: one("Where", []string{"c", "a", "b"})},
		{name: "Expand", tensors: []tensorSpec{p("x", 3, 1), ci("sh", 2, 3, 4)}, nodes: one("Expand", []string{"x", "sh"})},
		{name: "Identity+Dropout", tensors: []tensorSpec{p("x", 3, 4)}, nodes: []onnxio.Node{
			nd("Identity", []string{"x"}, []string{"i"}), nd("Dropout", []string{"i"}, []string{"y"})}},
		{name: "Cast-roundtrip", tensors: []tensorSpec{p("x", 3, 4)}, nodes: []onnxio.Node{
			nd("Cast", []string{"x"}, []string{"c"}, ai("to", int64(onnxio.Double))), nd("Sigmoid", []string{"c"}, []string{"s"}),
			nd("Cast", []string{"s"}, []string{"y"}, ai("to", int64(onnxio.Float)))}},
		{name: "fan-out", tensors: []tensorSpec{pg("x", awayFromZero, 3, 4), p("w", 4, 4)}, nodes: []onnxio.Node{
			nd("MatMul", []string{"x", "w"}, []string{"h"}), nd("Relu", []string{"h"}, []string{"r"}),
			nd("Mul", []string{"h", "x"}, []string{"m"}), nd("Add", []string{"r", "m"}, []string{"y"})}},
	}
}

func TestOpsFiniteDifferences(t *testing.T) {
	requireORT(t)
	for _, c := range opCases() {
		t.Run(c.name, func(t *testing.T) { checkCase(t, c) })
	}
}
