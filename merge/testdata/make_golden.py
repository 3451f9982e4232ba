"""Writes golden.json: small merges computed by the numpy reference
(oracle.py's definitions), so that the Go kernels are checked against an
independent implementation even where Python is not installed.

Run: .venv/bin/python merge/testdata/make_golden.py > merge/testdata/golden.json
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oracle import elect_mean, kth_largest, stream_key, uniforms  # noqa: E402

rng = np.random.default_rng(20261128)
names = ["a.weight", "b.bias"]
sizes = [37, 50]
base = {n: rng.normal(size=s).astype(np.float32) for n, s in zip(names, sizes)}
models = [{n: (base[n] + rng.normal(scale=0.1, size=base[n].size)).astype(np.float32) for n in names} for _ in range(3)]
# a few exact ties and zero deltas
models[0]["a.weight"][:4] = base["a.weight"][:4]
models[1]["b.bias"][5:9] = base["b.bias"][5:9] + np.float32(0.125)
models[2]["b.bias"][5:9] = base["b.bias"][5:9] - np.float32(0.125)
fisher = [{n: np.where(rng.random(s) < 0.2, 0, rng.random(s) ** 2).astype(np.float32) for n, s in zip(names, sizes)} for _ in range(3)]

f64 = lambda a: np.asarray(a, dtype=np.float64)


def ties(w, d, lam, scope):
    out = {}
    thr = {}
    if scope == "global":
        for i in range(3):
            a = np.concatenate([np.abs(f64(models[i][n]) - f64(base[n])) for n in names])
            thr[i] = kth_largest(a, max(1, int(np.floor(d[i] * a.size))))
    for n in names:
        b = f64(base[n])
        taus = np.stack([f64(models[i][n]) - b for i in range(3)])
        for i in range(3):
            a = np.abs(taus[i])
            t = thr[i] if scope == "global" else kth_largest(a, max(1, int(np.floor(d[i] * a.size))))
            taus[i] = np.where(a >= t, taus[i], 0.0)
        out[n] = b + lam * elect_mean(taus, w)
    return out


def dare(w, d, lam, seed, use_ties):
    out = {}
    for n in names:
        b = f64(base[n])
        taus = np.stack([f64(models[i][n]) - b for i in range(3)])
        for i in range(3):
            keep = uniforms(stream_key(seed, n, i), b.size) < d[i]
            taus[i] = np.where(keep, taus[i] / d[i], 0.0)
        out[n] = b + lam * (elect_mean(taus, w) if use_ties else (taus * np.asarray(w)[:, None]).sum(axis=0))
    return out


def slerp(t):
    out = {}
    for n in names:
        v0, v1 = f64(models[0][n]), f64(models[1][n])
        n0, n1 = np.linalg.norm(v0), np.linalg.norm(v1)
        dot = np.sum(v0 / n0 * v1 / n1)
        th = np.arccos(dot)
        out[n] = np.sin(th * (1 - t)) / np.sin(th) * v0 + np.sin(th * t) / np.sin(th) * v1
    return out


def fisher_merge(w, floor, normalize):
    c = list(w)
    if normalize:
        c = [w[i] / np.sqrt(sum(np.sum(f64(fisher[i][n]) ** 2) for n in names)) for i in range(3)]
    out = {}
    for n in names:
        F = [np.maximum(f64(fisher[i][n]), floor) * c[i] for i in range(3)]
        out[n] = sum(f * f64(models[i][n]) for i, f in enumerate(F)) / sum(F)
    return out


cases = [
    {"name": "linear", "method": "linear", "weights": [1, 2, 0.5], "normalize": True,
     "want": {n: sum(wi * f64(models[i][n]) for i, wi in enumerate([1, 2, 0.5])) / 3.5 for n in names}},
    {"name": "linear-sum", "method": "linear", "weights": [1, 2, 0.5], "normalize": False,
     "want": {n: sum(wi * f64(models[i][n]) for i, wi in enumerate([1, 2, 0.5])) for n in names}},
    {"name": "task-arithmetic", "method": "task-arithmetic", "weights": [1, 0.5, 1], "lambda": 0.7,
     "want": {n: f64(base[n]) + 0.7 * sum(wi * (f64(models[i][n]) - f64(base[n])) for i, wi in enumerate([1, 0.5, 1])) for n in names}},
    {"name": "ties-global", "method": "ties", "weights": [1, 2, 3], "densities": [0.2, 0.3, 0.5], "lambda": 0.9, "scope": "global",
     "want": ties([1, 2, 3], [0.2, 0.3, 0.5], 0.9, "global")},
    {"name": "ties-tensor", "method": "ties", "weights": [1, 1, 1], "densities": [0.3, 0.3, 0.3], "lambda": 1, "scope": "tensor",
     "want": ties([1, 1, 1], [0.3, 0.3, 0.3], 1, "tensor")},
    {"name": "dare", "method": "dare", "weights": [0.5, 0.3, 0.2], "densities": [0.5, 0.5, 0.5], "lambda": 1, "seed": 42,
     "want": dare([0.5, 0.3, 0.2], [0.5, 0.5, 0.5], 1, 42, False)},
    {"name": "dare-ties", "method": "dare-ties", "weights": [1, 1, 1], "densities": [0.3, 0.5, 0.9], "lambda": 1.2, "seed": -7,
     "want": dare([1, 1, 1], [0.3, 0.5, 0.9], 1.2, -7, True)},
    {"name": "slerp", "method": "slerp", "t": 0.35, "want": slerp(0.35)},
    {"name": "fisher", "method": "fisher", "weights": [1, 2, 1], "floor": 1e-4, "fisher_normalize": True,
     "want": fisher_merge([1, 2, 1], 1e-4, True)},
]
doc = {
    "names": names,
    "base": {n: base[n].tolist() for n in names},
    "models": [{n: m[n].tolist() for n in names} for m in models],
    "fisher": [{n: f[n].tolist() for n in names} for f in fisher],
    "cases": [dict(c, want={n: v.tolist() for n, v in c["want"].items()}) for c in cases],
    "uniform": {"seed": -5, "tensor": "w", "model": 1,
                "values": uniforms(stream_key(-5, "w", 1), 8).tolist()},
}
json.dump(doc, sys.stdout)
