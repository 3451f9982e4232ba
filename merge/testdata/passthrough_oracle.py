"""Oracle for the passthrough merge (merge/passthrough_test.go).

Reads a JSON spec from argv[1]:
  {"cases": [{"name", "data", "model", "ref": {...}} or {"name", "data", "model", "same_as": onnx}]}
A "ref" case computes, in numpy from the input models' initializers, a
zoo model with the embedding of ref.prefix, the blocks ref.layers ([model,
index] in order) and the final norm and head of ref.suffix, and compares
it with the stacked model run in ONNX Runtime. ref.kind "transformer" is
the digits transformer (models/gen.py: embedding + position, pre-norm
blocks of LayerNorm, 2-head self-attention, LayerNorm, GELU MLP; mean
pooling, LayerNorm, head); "lm" the language model (models/lm.py: token
embedding, pre-norm blocks of RMSNorm, rotary grouped-query attention with
the causal and padding mask, RMSNorm, SwiGLU MLP; RMSNorm, head) on the
first 16 windows of the data. A "same_as" case compares two models'
outputs in ONNX Runtime. Prints one JSON line per case: {"name",
"max_abs", "scale"}.
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


LM_HEADS, LM_KV, LM_HD, LM_EPS, LM_BASE = 4, 2, 32, 1e-5, 10000.0


def rms(x, w):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + LM_EPS) * w


def lm_block(x, w, k, cos, sin, allowed):
    p = lambda n: w["layers.%d.%s" % (k, n)]
    n, t, _ = x.shape
    z = rms(x, p("input_layernorm.weight"))
    heads = lambda y, h: y.reshape(n, t, h, LM_HD).transpose(0, 2, 1, 3)
    rot = lambda y: np.concatenate([-y[..., LM_HD // 2 :], y[..., : LM_HD // 2]], -1)
    q = heads(z @ p("self_attn.q_proj.weight"), LM_HEADS)
    kk = heads(z @ p("self_attn.k_proj.weight"), LM_KV)
    v = heads(z @ p("self_attn.v_proj.weight"), LM_KV)
    q, kk = q * cos + rot(q) * sin, kk * cos + rot(kk) * sin
    g = LM_HEADS // LM_KV
    kk, v = np.repeat(kk, g, axis=1), np.repeat(v, g, axis=1)
    s = q @ kk.transpose(0, 1, 3, 2) / math.sqrt(LM_HD)
    s = np.where(allowed, s, -1e4)
    s = np.exp(s - s.max(-1, keepdims=True))
    a = (s / s.sum(-1, keepdims=True)) @ v
    x = x + a.transpose(0, 2, 1, 3).reshape(n, t, -1) @ p("self_attn.o_proj.weight")
    z = rms(x, p("post_attention_layernorm.weight"))
    gate = z @ p("mlp.gate_proj.weight")
    h = gate / (1 + np.exp(-gate)) * (z @ p("mlp.up_proj.weight"))
    return x + h @ p("mlp.down_proj.weight")


def lm_reference(ref, ids, mask):
    t = ids.shape[1]
    pos = np.maximum(np.cumsum(mask, 1) - 1, 0)
    inv = 1.0 / LM_BASE ** (np.arange(0, LM_HD, 2) / LM_HD)
    ang = pos[..., None].astype(np.float64) * inv
    ang = np.concatenate([ang, ang], -1)[:, None]
    cos, sin = np.cos(ang), np.sin(ang)
    causal = np.arange(t)[None, :] <= np.arange(t)[:, None]
    allowed = causal[None, None] & (mask[:, None, None, :] > 0)
    x = weights(ref["prefix"])["embed_tokens.weight"][ids]
    for path, k in ref["layers"]:
        x = lm_block(x, weights(path), k, cos, sin, allowed)
    w1 = weights(ref["suffix"])
    return rms(x, w1["norm.weight"]) @ w1["lm_head.weight"]


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
    for c in spec["cases"]:
        data = np.load(c["data"])
        if "input_ids" in data:
            feeds = {"input_ids": data["input_ids"][:16], "attention_mask": data["attention_mask"][:16]}
        else:
            feeds = {"image": data["image"]}
        got = run(c["model"], feeds)
        if "same_as" in c:
            want = run(c["same_as"], feeds)
        elif c["ref"]["kind"] == "lm":
            want = lm_reference(c["ref"], feeds["input_ids"], feeds["attention_mask"])
        else:
            want = reference(c["ref"], feeds["image"])
        print(json.dumps({"name": c["name"], "max_abs": float(np.abs(got - want).max()), "scale": float(np.abs(want).max())}))


if __name__ == "__main__":
    main()
