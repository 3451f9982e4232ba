"""Writes the small models of onnxio/testdata/weights (weights in Constant
nodes, If/Loop subgraphs, behind DequantizeLinear and Cast+Mul, in
sparse_initializer, and a weight that is also a graph input).

    python gen.py   # needs numpy and onnx
"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(0)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def save(model, name, full_check=True):
    # onnx's shape inference does not see sparse initializers
    onnx.checker.check_model(model, full_check=full_check)
    onnx.save(model, name)


def if_model():
    """x·Wc (Constant node) → If(c): then x·Wt (subgraph initializer),
    else x·Wo (main-graph initializer read from the outer scope) → + B."""
    wc = helper.make_node("Constant", [], ["Wc"], value=numpy_helper.from_array(f32(16, 16), "Wc"))
    mm0 = helper.make_node("MatMul", ["x", "Wc"], ["h"], name="mm0")
    then_g = helper.make_graph(
        [helper.make_node("MatMul", ["h", "Wt"], ["t_out"], name="mm_then")], "then_branch", [],
        [helper.make_tensor_value_info("t_out", TensorProto.FLOAT, ["N", 16])],
        [numpy_helper.from_array(f32(16, 16), "Wt")])
    else_g = helper.make_graph(
        [helper.make_node("MatMul", ["h", "Wo"], ["e_out"], name="mm_else")], "else_branch", [],
        [helper.make_tensor_value_info("e_out", TensorProto.FLOAT, ["N", 16])])
    iff = helper.make_node("If", ["c"], ["z"], name="if0", then_branch=then_g, else_branch=else_g)
    add = helper.make_node("Add", ["z", "B"], ["y"], name="add")
    g = helper.make_graph([wc, mm0, iff, add], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16]),
                           helper.make_tensor_value_info("c", TensorProto.BOOL, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])],
                          [numpy_helper.from_array(f32(16, 16), "Wo"), numpy_helper.from_array(f32(16), "B")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def quantized_model():
    """int8 Wq → DequantizeLinear → MatMul; int8 Wk → Cast → Mul(s) → MatMul."""
    wq = rng.integers(-127, 128, (16, 16), dtype=np.int8)
    wk = rng.integers(-127, 128, (16, 16), dtype=np.int8)
    nodes = [
        helper.make_node("DequantizeLinear", ["Wq", "sq", "zq"], ["Wq_f"], name="dq"),
        helper.make_node("MatMul", ["x", "Wq_f"], ["h"], name="mm_q"),
        helper.make_node("Cast", ["Wk"], ["Wk_c"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["Wk_c", "sk"], ["Wk_f"], name="scale"),
        helper.make_node("MatMul", ["h", "Wk_f"], ["y"], name="mm_k"),
    ]
    inits = [numpy_helper.from_array(wq, "Wq"), numpy_helper.from_array(np.float32(0.01), "sq"),
             numpy_helper.from_array(np.int8(0), "zq"), numpy_helper.from_array(wk, "Wk"),
             numpy_helper.from_array(np.float32(0.02), "sk")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def castmul_model():
    """int8 Wk → Cast → Mul(s) → MatMul only (no DequantizeLinear)."""
    wk = rng.integers(-127, 128, (16, 16), dtype=np.int8)
    nodes = [
        helper.make_node("Cast", ["Wk"], ["Wk_c"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["Wk_c", "sk"], ["Wk_f"], name="scale"),
        helper.make_node("MatMul", ["x", "Wk_f"], ["y"], name="mm_k"),
    ]
    inits = [numpy_helper.from_array(wk, "Wk"), numpy_helper.from_array(np.float32(0.02), "sk")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def sparse_model():
    """x·Ws with Ws a sparse_initializer (COO, 1-D indices)."""
    dense = f32(16, 16)
    dense[np.abs(dense) < 0.8] = 0
    flat = dense.reshape(-1)
    idx = np.nonzero(flat)[0].astype(np.int64)
    values = numpy_helper.from_array(flat[idx], "Ws")
    sp = helper.make_sparse_tensor(values, numpy_helper.from_array(idx, "Ws_idx"), [16, 16])
    g = helper.make_graph([helper.make_node("MatMul", ["x", "Ws"], ["y"], name="mm_s")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])],
                          sparse_initializer=[sp])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def weight_input_model():
    """x·W where W is an initializer and also a graph input (overridable)."""
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64]),
                           helper.make_tensor_value_info("W", TensorProto.FLOAT, [64, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 64])],
                          [numpy_helper.from_array(f32(64, 64), "W")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def loop_model():
    """Loop (2 iterations) whose body computes h·Wl, Wl read from the outer scope."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("MatMul", ["h_in", "Wl"], ["h_out"], name="mm_body")], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_in", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_out", TensorProto.FLOAT, ["N", 16])])
    loop = helper.make_node("Loop", ["trip", "", "x"], ["y"], name="loop", body=body)
    g = helper.make_graph([loop], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])],
                          [numpy_helper.from_array(np.int64(2), "trip"), numpy_helper.from_array(f32(16, 16) * 0.25, "Wl")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def opset12_model(softmax_axis=1, rank3=False):
    """Opset 12: Unsqueeze/Squeeze/Split/ReduceSum with attribute axes
    around two MatMuls, and a Softmax (axis 1 over a rank-2 value, or over
    a rank-3 value when rank3: its meaning changed in opset 13)."""
    nodes = [
        helper.make_node("Unsqueeze", ["x"], ["u"], name="unsq", axes=[1]),
        helper.make_node("Squeeze", ["u"], ["s"], name="sq", axes=[1]),
        helper.make_node("MatMul", ["s", "W1"], ["h"], name="mm1"),
        helper.make_node("Split", ["h"], ["h1", "h2"], name="split", axis=1, split=[8, 8]),
        helper.make_node("Concat", ["h2", "h1"], ["hc"], name="cat", axis=1),
        helper.make_node("MatMul", ["hc", "W2"], ["z"], name="mm2"),
    ]
    vi = []
    if rank3:
        nodes += [helper.make_node("Unsqueeze", ["z"], ["z3"], name="unsq3", axes=[0]),
                  helper.make_node("Softmax", ["z3"], ["p3"], name="softmax", axis=softmax_axis),
                  helper.make_node("Squeeze", ["p3"], ["p"], name="sq3", axes=[0])]
    else:
        nodes.append(helper.make_node("Softmax", ["z"], ["p"], name="softmax", axis=softmax_axis))
        vi.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 16]))
    nodes.append(helper.make_node("ReduceSum", ["p"], ["y"], name="rsum", axes=[1], keepdims=1))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1]),
                           helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 16])],
                          [numpy_helper.from_array(f32(16, 16), "W1"), numpy_helper.from_array(f32(16, 16), "W2")],
                          value_info=[v for v in vi if False])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 12)], ir_version=7)


def fp16_valueinfo_model():
    """int8 Wk → Cast → Mul(sk) → MatMul → Add(B), with value_info entries
    for the float initializers sk and B and for the intermediate values, as
    torch.onnx's dynamo exporter writes them."""
    wk = rng.integers(-127, 128, (16, 16), dtype=np.int8)
    nodes = [
        helper.make_node("Cast", ["Wk"], ["Wk_c"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["Wk_c", "sk"], ["Wk_f"], name="scale"),
        helper.make_node("MatMul", ["x", "Wk_f"], ["h"], name="mm_k"),
        helper.make_node("Add", ["h", "B"], ["y"], name="add"),
    ]
    inits = [numpy_helper.from_array(wk, "Wk"), numpy_helper.from_array((0.02 + 0.001 * f32(1, 16)), "sk"),
             numpy_helper.from_array(f32(16), "B")]
    vi = [helper.make_tensor_value_info("sk", TensorProto.FLOAT, [1, 16]),
          helper.make_tensor_value_info("B", TensorProto.FLOAT, [16]),
          helper.make_tensor_value_info("Wk_c", TensorProto.FLOAT, [16, 16]),
          helper.make_tensor_value_info("Wk_f", TensorProto.FLOAT, [16, 16]),
          helper.make_tensor_value_info("h", TensorProto.FLOAT, ["N", 16])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])], inits, value_info=vi)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def if_untyped_model():
    """If(c) whose branches declare no element type for their output (as a
    nested If of a torch export does), Unsqueeze'd with int64 axes and added
    to x·W: the If output's type is unknown to a converter."""
    then_g = helper.make_graph([helper.make_node("Relu", ["x"], ["t_out"], name="relu")], "then_branch", [],
                               [onnx.ValueInfoProto(name="t_out")])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e_out"], name="neg")], "else_branch", [],
                               [onnx.ValueInfoProto(name="e_out")])
    nodes = [
        helper.make_node("If", ["c"], ["z"], name="if0", then_branch=then_g, else_branch=else_g),
        helper.make_node("Unsqueeze", ["z", "axes"], ["u"], name="unsq_z"),
        helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
        helper.make_node("Unsqueeze", ["h", "axes"], ["hu"], name="unsq_h"),
        helper.make_node("Add", ["u", "hu"], ["y"], name="add"),
    ]
    inits = [numpy_helper.from_array(f32(16, 16), "W"), numpy_helper.from_array(np.array([0], np.int64), "axes")]
    g = helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16]),
                           helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "N", 16])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 15)], ir_version=8)


if __name__ == "__main__":
    save(if_model(), "if.onnx")
    save(quantized_model(), "quantized.onnx")
    save(sparse_model(), "sparse.onnx", full_check=False)
    save(weight_input_model(), "weight_input.onnx")
    save(loop_model(), "loop.onnx")
    save(opset12_model(), "opset12.onnx")
    save(opset12_model(rank3=True), "opset12_softmax3d.onnx")
    save(castmul_model(), "castmul.onnx")
    save(fp16_valueinfo_model(), "fp16_valueinfo.onnx")
    save(if_untyped_model(), "if_untyped.onnx")
