"""Ablation behind docs/results/sparsity.md: why Wanda loses to magnitude on the zoo MLP.

Wanda differs from magnitude in two ways: the score (|W|·‖X_j‖ instead of
|W|) and the comparison group (each output row instead of the whole layer).
This script separates them on models/zoo/mlp/base.onnx at unstructured
sparsity S (default 0.7), with numpy masks (exactly floor(S·n) per group)
and ONNX Runtime for accuracy on the clean test set; activations are
captured on the validation set. Usage: .venv/bin/python ablation.py [S]
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

S = float(sys.argv[1]) if len(sys.argv) > 1 else 0.7
model = onnx.load("models/zoo/mlp/base.onnx")
val = np.load("models/data/digits_clean_val.npz")
test = np.load("models/data/digits_clean_test.npz")
gemms = [n for n in model.graph.node if n.op_type == "Gemm"]
inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}

cap = onnx.ModelProto()
cap.CopyFrom(model)
for n in gemms:
    cap.graph.output.append(onnx.helper.make_empty_tensor_value_info(n.input[0]))
sess = ort.InferenceSession(cap.SerializeToString(), providers=["CPUExecutionProvider"])
names = [n.input[0] for n in gemms]
acts = dict(zip(names, sess.run(names, {"image": val["image"]})))


def accuracy(weights):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for t in m.graph.initializer:
        if t.name in weights:
            t.CopyFrom(numpy_helper.from_array(weights[t.name].astype(np.float32), t.name))
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    pred = s.run(None, {"image": test["image"]})[0].argmax(1)
    return float((pred == test["labels"]).mean())


def prune(score, per_row):
    mask = np.zeros(score.shape, dtype=bool)  # True = pruned
    if per_row:
        k = int(S * score.shape[1])
        idx = np.argsort(score, axis=1, kind="stable")[:, :k]
        np.put_along_axis(mask, idx, True, axis=1)
    else:
        k = int(S * score.size)
        mask.ravel()[np.argsort(score.ravel(), kind="stable")[:k]] = True
    return mask


print(f"dense accuracy {accuracy({}):.4f}; unstructured {S}")
for score_name in ["magnitude", "wanda"]:
    for per_row in [False, True]:
        new, errs = {}, []
        for n in gemms:
            w = inits[n.input[1]]  # [out, in] (transB=1)
            x = acts[n.input[0]].astype(np.float64)
            norm = np.sqrt((x ** 2).mean(0))
            score = np.abs(w) * (norm[None, :] if score_name == "wanda" else 1)
            new[n.input[1]] = np.where(prune(score, per_row), 0, w)
            # layer-local error on the dense inputs: ‖X(W−Ŵ)ᵀ‖/‖XWᵀ‖
            errs.append(np.linalg.norm(x @ (w - new[n.input[1]]).T) / np.linalg.norm(x @ w.T))
        print(f"{score_name:9s} compared per {'row  ' if per_row else 'layer'}: accuracy {accuracy(new):.4f}, "
              f"layer output error {' '.join(f'{e:.3f}' for e in errs)}")
