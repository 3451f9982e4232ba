"""Independent numpy reference of onnxpost's merge methods (docs/ARCHITECTURE.md §5.1).

Usage: python oracle.py PLAN.json...
PLAN.json: {"method", "params": {...}, "base": path|null, "models": [paths],
            "fishers": [paths]|null, "output": path,
            "tensors": [{"out", "base", "models": [names], "fishers": [names]}]}
Prints a JSON list with, per plan, an object {tensor name: {"err": max abs
error, "scale": max |expected|, "ulp": float16 spacing or 0}} for every merged
tensor, plus "_copied": the number of other initializers checked equal to the
template's; with "data" (an .npz) the output is run in ONNX Runtime
("_ort_ran": number of outputs) and with "ort_equal" (a model path) its
outputs are compared exactly with that model's ("_ort_equal").

Written from the definitions, not from the Go code:
  linear         sum(w_i x_i) / sum(w_i)   (no division with normalize=false)
  task-arith     b + lam * sum(w_i (x_i - b))
  ties           tau_i = x_i - b; keep |tau_i| >= k-th largest |tau_i|, k = max(1, floor(d_i n)),
                 n over all merged tensors (global) or the tensor (tensor scope);
                 g = sign(sum trimmed), 0 -> +1; mean = sum_{sign(tau_i)=g} w_i tau_i / sum w_i;
                 b + lam * mean
  dare           keep entry j of model i iff U_i(j) < d_i, kept tau / d_i; b + lam * sum w_i tau_i
  dare-ties      same drops, then the TIES election and disjoint mean
  slerp          mergekit's slerp on flattened tensors, lerp if |cos| > 0.9995 or a norm <= 1e-8
  fisher         sum c_i max(F_i, floor) x_i / sum c_i max(F_i, floor), c_i = w_i (/ ||F_i|| if normalized)
"""
import json
import sys

import numpy as np
import onnx
from onnx import numpy_helper

M64 = (1 << 64) - 1
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix_np(x):
    with np.errstate(over="ignore"):
        z = x + GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def mix_int(x):
    return int(mix_np(np.array([x & M64], dtype=np.uint64))[0])


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for c in s.encode():
        h ^= c
        h = (h * 0x100000001B3) & M64
    return h


def stream_key(seed, name, model):
    return mix_int((seed & M64) + mix_int(fnv1a64(name) + model))


def uniforms(key, n):
    j = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = np.uint64(key) + j * GOLDEN
    return (mix_np(x) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def load(path):
    m = onnx.load(path, load_external_data=True)
    return m, {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}


def f64(a):
    return np.asarray(a, dtype=np.float64).ravel()


def kth_largest(v, k):
    return np.partition(v, v.size - k)[v.size - k]


def elect_mean(taus, w):
    s = taus.sum(axis=0)
    g = np.where(s >= 0, 1.0, -1.0)
    agree = (np.sign(taus) == g) & (taus != 0)
    wcol = np.asarray(w)[:, None]
    num = (np.where(agree, taus, 0.0) * wcol).sum(axis=0)
    den = (agree * wcol).sum(axis=0)
    return np.where(den != 0, num / np.where(den != 0, den, 1), 0.0)


def run_ort(path, data):
    import onnxruntime as ort
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feed = {i.name: data[i.name] for i in sess.get_inputs()}
    return sess.run(None, feed)


def check(plan):
    method, p = plan["method"], plan["params"]
    models = [load(x)[1] for x in plan["models"]]
    base = load(plan["base"])[1] if plan.get("base") else None
    fishers = [load(x)[1] for x in plan["fishers"]] if plan.get("fishers") else None
    out_model, out = load(plan["output"])
    w = [float(x) for x in p["weights"]]
    dens = [float(x) for x in p.get("densities", [1] * len(models))]
    lam = float(p.get("lambda", 1))
    T = plan["tensors"]

    def xs(t):
        return [f64(models[i][t["models"][i]]) for i in range(len(models))]

    thresholds = {}
    if method == "ties":
        if p["trim_scope"] == "global":
            for i in range(len(models)):
                allabs = np.concatenate([np.abs(f64(models[i][t["models"][i]]) - f64(base[t["base"]])) for t in T])
                k = max(1, int(np.floor(dens[i] * allabs.size)))
                thresholds[i] = kth_largest(allabs, k)

    res = {}
    for t in T:
        X = xs(t)
        if method == "linear":
            acc = sum(wi * x for wi, x in zip(w, X))
            exp = acc / sum(w) if p["normalize"] == "true" else acc
        elif method == "task-arithmetic":
            b = f64(base[t["base"]])
            exp = b + lam * sum(wi * (x - b) for wi, x in zip(w, X))
        elif method == "ties":
            b = f64(base[t["base"]])
            taus = np.stack([x - b for x in X])
            for i in range(len(X)):
                a = np.abs(taus[i])
                thr = thresholds[i] if p["trim_scope"] == "global" else kth_largest(a, max(1, int(np.floor(dens[i] * a.size))))
                taus[i] = np.where(a >= thr, taus[i], 0.0)
            exp = b + lam * elect_mean(taus, w)
        elif method in ("dare", "dare-ties"):
            b = f64(base[t["base"]])
            seed = int(p["seed"])
            taus = np.stack([x - b for x in X])
            for i in range(len(X)):
                keep = uniforms(stream_key(seed, t["out"], i), b.size) < dens[i]
                taus[i] = np.where(keep, taus[i] / dens[i], 0.0)
            if method == "dare":
                exp = b + lam * (taus * np.asarray(w)[:, None]).sum(axis=0)
            else:
                exp = b + lam * elect_mean(taus, w)
        elif method == "slerp":
            tt = float(p["t"])
            if plan.get("base"):
                v0, v1 = f64(base[t["base"]]), X[0]
            else:
                v0, v1 = X
            n0, n1 = np.linalg.norm(v0), np.linalg.norm(v1)
            if n0 <= 1e-8 or n1 <= 1e-8:
                exp = (1 - tt) * v0 + tt * v1
            else:
                dot = np.sum((v0 / n0) * (v1 / n1))
                if abs(dot) > 0.9995:
                    exp = (1 - tt) * v0 + tt * v1
                else:
                    th0 = np.arccos(dot)
                    s0 = np.sin(th0 - th0 * tt) / np.sin(th0)
                    s1 = np.sin(th0 * tt) / np.sin(th0)
                    exp = s0 * v0 + s1 * v1
        elif method == "fisher":
            floor = float(p["fisher_floor"])
            c = list(w)
            if p["fisher_normalize"] == "true":
                for i in range(len(models)):
                    sq = sum(np.sum(f64(fishers[i][u["fishers"][i]]) ** 2) for u in T)
                    c[i] = w[i] / np.sqrt(sq)
            F = [np.maximum(f64(fishers[i][t["fishers"][i]]), floor) * c[i] for i in range(len(models))]
            num = sum(f * x for f, x in zip(F, X))
            den = sum(F)
            exp = num / den
        else:
            raise SystemExit("unknown method " + method)
        raw = out[t["out"]]
        got = f64(raw)
        ulp = 0.0
        if raw.dtype == np.float16 and exp.size:
            # the output is rounded to float16: allow one unit in the last place
            ulp = float(np.max(np.spacing(np.abs(exp).astype(np.float16)).astype(np.float64)))
        res[t["out"]] = {"err": float(np.max(np.abs(got - exp))) if exp.size else 0.0,
                         "scale": float(np.max(np.abs(exp))) if exp.size else 0.0,
                         "ulp": ulp}

    # every other initializer equals the template's
    template = base if base is not None else models[0]
    merged = {t["out"] for t in T}
    copied = 0
    for name, arr in out.items():
        if name in merged:
            continue
        if name not in template or template[name].dtype != arr.dtype or not np.array_equal(template[name], arr):
            raise SystemExit("initializer %s differs from the template's" % name)
        copied += 1
    res["_copied"] = copied
    if plan.get("data") or plan.get("feed"):
        if plan.get("data"):
            data = dict(np.load(plan["data"]))
        else:
            data = {k: np.asarray(v) for k, v in plan["feed"].items()}
        outs = run_ort(plan["output"], data)
        res["_ort_ran"] = len(outs)
        if plan.get("ort_equal"):
            ref = run_ort(plan["ort_equal"], data)
            res["_ort_equal"] = all(np.array_equal(a, b) for a, b in zip(outs, ref))
    return res


def main():
    json.dump([check(json.load(open(p))) for p in sys.argv[1:]], sys.stdout)


if __name__ == "__main__":
    main()
