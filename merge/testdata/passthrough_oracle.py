"""Oracle for the passthrough merge (merge/passthrough_test.go).

Reads a JSON spec from argv[1]:
  {"data": npz, "cases": [{"name", "model", "ref": {...}} or {"name", "model", "same_as": onnx}]}
A "ref" case computes, in numpy from the input models' initializers, the
zoo transformer (models/gen.py: embedding + position, pre-norm blocks of
LayerNorm, 2-head self-attention, LayerNorm, GELU MLP; mean pooling,
LayerNorm, head) with the embedding of ref.prefix, the blocks ref.layers
([model, index] in order) and the final norm and head of ref.suffix, and
compares it with the stacked model run in ONNX Runtime. A "same_as" case
compares two models' outputs in ONNX Runtime. Prints one JSON line per
case: {"name", "max_abs", "scale"}.
"""

import json
import math
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

T, HEADS = 8, 2


def weights(path, cache={}):
    if path not in cache:
        m = onnx.load(path)
        cache[path] = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in m.graph.initializer}
    return cache[path]


def layer_norm(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def block(x, w, k):
    p = lambda n: w["blocks.%d.%s" % (k, n)]
    d = x.shape[-1]
    hd = d // HEADS
    z = layer_norm(x, p("ln1.weight"), p("ln1.bias"))
    split = lambda y: y.reshape(-1, T, HEADS, hd).transpose(0, 2, 1, 3)
    q = split(z @ p("q.weight") + p("q.bias"))
    kk = split(z @ p("k.weight") + p("k.bias"))
    v = split(z @ p("v.weight") + p("v.bias"))
    s = q @ kk.transpose(0, 1, 3, 2) / math.sqrt(hd)
    s = np.exp(s - s.max(-1, keepdims=True))
    a = s / s.sum(-1, keepdims=True)
    z = (a @ v).transpose(0, 2, 1, 3).reshape(-1, T, d)
    x = x + z @ p("o.weight") + p("o.bias")
    h = gelu(layer_norm(x, p("ln2.weight"), p("ln2.bias")) @ p("ff1.weight") + p("ff1.bias"))
    return x + h @ p("ff2.weight") + p("ff2.bias")


def reference(ref, image):
    w0 = weights(ref["prefix"])
    x = image.astype(np.float64).reshape(-1, T, 8) @ w0["embed.weight"] + w0["embed.bias"] + w0["pos"]
    for path, k in ref["layers"]:
        x = block(x, weights(path), k)
    w1 = weights(ref["suffix"])
    return layer_norm(x.mean(1), w1["ln.weight"], w1["ln.bias"]) @ w1["head.weight"] + w1["head.bias"]


def run(path, feeds):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return s.run(None, feeds)[0].astype(np.float64)


def main():
    spec = json.load(open(sys.argv[1]))
    data = np.load(spec["data"])
    feeds = {"image": data["image"]}
    for c in spec["cases"]:
        got = run(c["model"], feeds)
        want = reference(c["ref"], data["image"]) if "ref" in c else run(c["same_as"], feeds)
        print(json.dumps({"name": c["name"], "max_abs": float(np.abs(got - want).max()), "scale": float(np.abs(want).max())}))


if __name__ == "__main__":
    main()
