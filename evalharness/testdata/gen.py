"""Generates the small fixture models and datasets of evalharness's tests.

Run with the oracle virtualenv: .venv/bin/python evalharness/testdata/gen.py
The outputs are committed; rerunning reproduces them (seeded).
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

here = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(7)


def f32(*shape, scale=0.5):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def save(graph, name):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="evalharness-testdata")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(here, name))


def mlp(name, w1, b1, w2, b2):
    # x[N,16] -MatMul W1[16,32] -Add b1 -Relu -Gemm(transB=1, W2[10,32], b2)-> logits[N,10]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"], name="fc1"),
        helper.make_node("Add", ["h0", "b1"], ["h1"], name="add1"),
        helper.make_node("Relu", ["h1"], ["h2"], name="relu1"),
        helper.make_node("Gemm", ["h2", "w2", "b2"], ["logits"], name="fc2", transB=1),
    ]
    inits = [numpy_helper.from_array(a, n) for a, n in [(w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2")]]
    g = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        inits)
    save(g, name)


w1, b1, w2, b2 = f32(16, 32), f32(32, scale=0.1), f32(10, 32), f32(10, scale=0.1)
mlp("mlp.onnx", w1, b1, w2, b2)
mlp("mlp_b.onnx", w1 + f32(16, 32, scale=0.05), b1, w2 + f32(10, 32, scale=0.05), b2)

# CNN: img[N,1,8,8] -Conv(4,1,3,3,pad 1) -Relu -Conv(6,4,3,3,stride 2) -Flatten -MatMul(54,10) -> logits
c1, c2, w3 = f32(4, 1, 3, 3), f32(6, 4, 3, 3), f32(54, 10, scale=0.2)
nodes = [
    helper.make_node("Conv", ["img", "c1"], ["a1"], name="conv1", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
    helper.make_node("Relu", ["a1"], ["a2"], name="relu1"),
    helper.make_node("Conv", ["a2", "c2"], ["a3"], name="conv2", strides=[2, 2], kernel_shape=[3, 3]),
    helper.make_node("Flatten", ["a3"], ["a4"], name="flat"),
    helper.make_node("MatMul", ["a4", "w3"], ["logits"], name="fc"),
]
g = helper.make_graph(
    nodes, "cnn",
    [helper.make_tensor_value_info("img", TensorProto.FLOAT, ["N", 1, 8, 8])],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
    [numpy_helper.from_array(c1, "c1"), numpy_helper.from_array(c2, "c2"), numpy_helper.from_array(w3, "w3")])
save(g, "cnn.onnx")

# Datasets: labels are the mlp's own argmax for most rows (so accuracy is
# high but not 1) -- computed here with numpy, independently of Go.
x = rng.standard_normal((50, 16)).astype(np.float32)
logits = np.maximum(x @ w1 + b1, 0) @ w2.T + b2
labels = logits.argmax(1).astype(np.int64)
labels[::7] = (labels[::7] + 1) % 10
np.savez(os.path.join(here, "mlp_data.npz"), x=x, labels=labels)

img = rng.standard_normal((40, 1, 8, 8)).astype(np.float32)
np.savez_compressed(os.path.join(here, "cnn_data.npz"), img=img, labels=rng.integers(0, 10, 40).astype(np.int64))

# Unusual geometries for the capture oracle: a strided, dilated,
# asymmetrically padded 2-D Conv; a 1-D Conv; a Gemm with transA.
cm, k1, wg = f32(3, 2, 3, 2), f32(5, 4, 3), f32(6, 4)
nodes = [
    helper.make_node("Conv", ["img", "cm"], ["a1"], name="conv_misc", strides=[2, 1], dilations=[1, 2], pads=[1, 0, 2, 1]),
    helper.make_node("Conv", ["seq", "k1"], ["s1"], name="conv1d", strides=[2], dilations=[2], pads=[1, 2]),
    helper.make_node("Transpose", ["x"], ["xt"], name="tr", perm=[1, 0]),
    helper.make_node("Gemm", ["xt", "wg"], ["y"], name="gemm_ta", transA=1),
]
g = helper.make_graph(
    nodes, "misc",
    [helper.make_tensor_value_info("img", TensorProto.FLOAT, ["N", 2, 7, 9]),
     helper.make_tensor_value_info("seq", TensorProto.FLOAT, ["N", 4, 11]),
     helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
    [helper.make_tensor_value_info("a1", TensorProto.FLOAT, ["N", 3, "H", "W"]),
     helper.make_tensor_value_info("s1", TensorProto.FLOAT, ["N", 5, "L"]),
     helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    [numpy_helper.from_array(cm, "cm"), numpy_helper.from_array(k1, "k1"), numpy_helper.from_array(wg, "wg")])
save(g, "misc.onnx")
np.savez(os.path.join(here, "misc_data.npz"),
         img=rng.standard_normal((20, 2, 7, 9)).astype(np.float32),
         seq=rng.standard_normal((20, 4, 11)).astype(np.float32),
         x=rng.standard_normal((20, 6)).astype(np.float32))
