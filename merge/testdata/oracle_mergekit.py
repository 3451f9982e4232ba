"""Independent numpy reference of onnxpost's mergekit methods (merge/*.go doc
comments, docs/ARCHITECTURE.md section 5.1), written from the definitions.

Usage: python oracle_mergekit.py PLAN.json...
A plan is either inline ({"method", "params", "shape", "name", "base": list|null,
"models": [lists], "got": list}) or a merged model ({"method", "params",
"base": path|null, "models": [paths], "output": path, "tensors": [...]}).
params holds the merge's provenance parameters as strings (Options.Params).
Prints a JSON list with, per plan, {tensor: {"err": max abs error, "scale":
max |expected|, "ulp": float16 spacing of the expected values or 0}}.

Random drops use the same counter-based generator as merge/rng.go (written
here from its documented formula), so masks agree entry for entry.
"""
import json
import sys

import numpy as np

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


def uniforms(seed, name, model, n):
    key = mix_int((seed & M64) + mix_int(fnv1a64(name) + model))
    j = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = np.uint64(key) + j * GOLDEN
    return (mix_np(x) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def floats(s):
    return [float(x) for x in s.split(",")] if s else []


def flag(p, k, default):
    return p[k] == "true" if k in p else default


def rescale_l1(tau, kept):
    before, after = np.abs(tau).sum(), np.abs(kept).sum()
    if before < 1e-7 or after < 1e-7:
        return kept
    return kept * (before / after)


def gta(method, p, b, X, shape, name):
    w = floats(p["weights"])
    dens = floats(p["densities"])
    lam = float(p.get("lambda", "1"))
    rescale = flag(p, "rescale", False)
    normalize = flag(p, "normalize", False)
    consensus = method in ("breadcrumbs-ties", "della")
    taus = []
    for i, x in enumerate(X):
        tau = x - b
        n = tau.size
        d = dens[i]
        if d < 1:
            if method == "dare-linear":
                keep = uniforms(int(p["seed"]), name, i, n) < d
            elif method.startswith("breadcrumbs"):
                g = floats(p["gammas"])[i]
                k, top = int(d * n), int(g * n)
                bottom = n - k - top
                if bottom < 0:
                    top, bottom = top + bottom, 0
                order = np.argsort(np.abs(tau), kind="stable")
                keep = np.zeros(n, bool)
                keep[order[bottom:n - top]] = True
            else:  # della: rows along axis 1 (1-D: one row)
                eps = floats(p["epsilons"])[i]
                if len(shape) >= 2:
                    a = np.moveaxis(np.abs(tau).reshape(shape), 1, -1)
                    idx = np.moveaxis(np.arange(n).reshape(shape), 1, -1)
                else:
                    a, idx = np.abs(tau)[None, :], np.arange(n)[None, :]
                m = a.shape[-1]
                a2, idx2 = a.reshape(-1, m), idx.reshape(-1, m)
                prob = np.empty(n)
                for r in range(a2.shape[0]):
                    order = np.argsort(a2[r], kind="stable")
                    ranks = np.empty(m)
                    ranks[order] = np.arange(m)
                    prob[idx2[r]] = (d - eps) + 2 * eps * ranks / (m - 1) if m > 1 else d
                keep = uniforms(int(p["seed"]), name, i, n) < prob
            kept = np.where(keep, tau, 0.0)
            tau = rescale_l1(tau, kept) if rescale else kept
        taus.append(tau)
    D = np.stack(taus) * np.asarray(w)[:, None]
    W = np.asarray(w)[:, None] * np.ones_like(D)
    if consensus:
        g = np.where(D.sum(0) >= 0, 1.0, -1.0)
        agree = np.sign(D) == g
        mixed = np.where(agree, D, 0).sum(0)
        div = np.where(agree, W, 0).sum(0)
        div = np.where(div == 0, 1.0, div)
    else:
        mixed = D.sum(0)
        div = sum(w)
        if abs(div) < 1e-8:
            div = 1.0
    if normalize:
        mixed = mixed / div
    return b + lam * mixed


def vectors(a, shape, axis):
    """a as rows: vectors along axis of shape (row, position)."""
    return np.moveaxis(a.reshape(shape), axis, -1)


def model_stock(p, b, X, shape):
    fw = flag(p, "filter_wise", False)
    if fw and len(shape) > 0:
        B = b.reshape(shape)
        Xs = [x.reshape(shape) for x in X]
        ax = -1
    else:
        B, Xs, ax = b, X, -1
    taus = [x - B for x in Xs]
    cs = []
    for i in range(len(taus)):
        for j in range(i + 1, len(taus)):
            num = (taus[i] * taus[j]).sum(ax, keepdims=True)
            den = np.maximum(np.linalg.norm(taus[i], axis=ax, keepdims=True) * np.linalg.norm(taus[j], axis=ax, keepdims=True), 1e-6)
            cs.append(np.clip(num / den, -1, 1))
    c = np.mean(cs, axis=0)
    N = len(X)
    den = 1 + (N - 1) * c
    t = np.where(den == 0, 0.0, N * c / np.where(den == 0, 1.0, den))
    return (t * np.mean(Xs, axis=0) + (1 - t) * B).ravel()


def nuslerp(p, b, X, shape):
    w = floats(p["weights"])
    t = 0.5 if abs(w[0] + w[1]) < 1e-6 else w[1] / (w[0] + w[1])
    v0, v1 = (X[0] - b, X[1] - b) if b is not None else (X[0], X[1])
    flat = flag(p, "nuslerp_flatten", True)
    if flat or len(shape) == 0:
        A, C = v0[None, :], v1[None, :]
        back = lambda r: r.ravel()
    else:
        ax = 0 if flag(p, "nuslerp_row_wise", False) else len(shape) - 1
        A, C = vectors(v0, shape, ax), vectors(v1, shape, ax)
        back = lambda r: np.moveaxis(r, -1, ax).ravel()
    ua = A / np.maximum(np.linalg.norm(A, axis=-1, keepdims=True), 1e-7)
    uc = C / np.maximum(np.linalg.norm(C, axis=-1, keepdims=True), 1e-7)
    th = np.arccos(np.clip((ua * uc).sum(-1, keepdims=True), -1, 1))
    s = np.sin(th)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (np.sin((1 - t) * th) * A + np.sin(t * th) * C) / s
    r = np.where(np.abs(s) < 1e-8, (1 - t) * A + t * C, r)
    r = back(r)
    return r + b if b is not None else r


def multislerp(p, b, X):
    w = np.asarray(floats(p["weights"]))
    V = np.stack([x - b if b is not None else x for x in X])
    if len(X) == 1:
        return X[0]
    if flag(p, "normalize_weights", True):
        w = w / w.sum()
    norms = np.linalg.norm(V, axis=1)
    U = V / (norms[:, None] + 1e-8)
    mu = (U * w[:, None]).sum(0)
    mn = np.linalg.norm(mu)
    if mn < 1e-8:
        r = w[0] * V[0] + w[1] * V[1]
    else:
        mu = mu / mn
        tang = U - (U @ mu)[:, None] * mu[None, :]
        T = (tang * w[:, None]).sum(0)
        nu = np.linalg.norm(T) + 1e-8
        r = (mu * np.cos(nu) + T * np.sin(nu) / nu) * (norms * w).sum()
    return r + b if b is not None else r


def karcher(p, X):
    it, tol = int(p["max_iter"]), float(p["tol"])
    n = len(X)
    norms = [np.linalg.norm(x) for x in X]
    valid = [i for i in range(n) if norms[i] > tol]
    if not valid:
        return np.zeros_like(X[0])
    a = 1.0 / len(valid)
    units = {i: X[i] / norms[i] for i in valid}
    u = sum(a * units[i] for i in valid)
    nu = np.linalg.norm(u)
    u = units[valid[0]].copy() if nu < tol else u / nu
    for _ in range(it):
        T = np.zeros_like(u)
        for i in valid:
            c = np.clip(u @ units[i], -1, 1)
            th = np.arccos(c)
            if th < tol:
                continue
            T += a * th / np.sin(th) * (units[i] - c * u)
        nt = np.linalg.norm(T)
        if nt < tol:
            break
        u = np.cos(nt) * u + np.sin(nt) * T / nt
        nu = np.linalg.norm(u)
        if nu > tol:
            u = u / nu
    return sum(norms) / n * u


def sce(p, b, X):
    k = float(p.get("select_topk", "1"))
    taus = np.stack([x - b for x in X])
    if k < 1:
        var = taus.var(axis=0)
        keep = np.zeros(b.size, bool)
        if k > 0:
            nz = np.flatnonzero(var != 0)
            kk = int(nz.size * k)
            order = nz[np.argsort(-var[nz], kind="stable")]
            keep[order[:kk]] = True
        taus = np.where(keep[None, :], taus, 0.0)
    w = (taus**2).mean(axis=1)
    w = np.full(len(X), 1.0 / len(X)) if abs(w.sum()) < 1e-6 else w / w.sum()
    g = np.where(taus.sum(0) >= 0, 1.0, -1.0)
    agree = np.sign(taus) == g
    ew = np.where(agree, w[:, None], 0.0)
    return b + (taus * ew).sum(0) / np.maximum(ew.sum(0), 1e-6)


def nearswap(p, b, X):
    t = float(p["t"])
    w = np.clip(t / np.maximum(np.abs(b - X[0]), 1e-6), 0, 1)
    return w * X[0] + (1 - w) * b


def arcee_fusion(b, X, shape):
    x = X[0]
    sh = shape if len(shape) else [b.size]
    B, Xr = b.reshape(sh), x.reshape(sh)

    def softmax(a):
        e = np.exp(a - a.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    pp, qq = softmax(Xr) + 1e-8, softmax(B) + 1e-8
    kl = (pp * np.log(pp / qq)).sum(-1, keepdims=True)
    s = (np.abs(Xr - B) * kl).ravel()
    srt = np.sort(s)
    q = lambda f: srt[int(f * (srt.size - 1))]
    thr = q(0.5) + 1.5 * (q(0.75) - q(0.25))
    return np.where(s >= thr, x, b)


def expected(method, p, b, X, shape, name):
    if method in ("dare-linear", "breadcrumbs", "breadcrumbs-ties", "della", "della-linear"):
        return gta(method, p, b, X, shape, name)
    if method == "model-stock":
        return model_stock(p, b, X, shape)
    if method == "nuslerp":
        return nuslerp(p, b, X, shape)
    if method == "multislerp":
        return multislerp(p, b, X)
    if method == "karcher":
        return karcher(p, X)
    if method == "sce":
        return sce(p, b, X)
    if method == "nearswap":
        return nearswap(p, b, X)
    if method == "arcee-fusion":
        return arcee_fusion(b, X, shape)
    raise SystemExit("unknown method " + method)


def f64(a):
    return np.asarray(a, dtype=np.float64).ravel()


def compare(got, exp, raw=None):
    ulp = 0.0
    if raw is not None and raw.dtype == np.float16 and exp.size:
        # the output is rounded to float16: allow one unit in the last place
        ulp = float(np.max(np.spacing(np.abs(exp).astype(np.float16)).astype(np.float64)))
    return {"err": float(np.max(np.abs(got - exp))) if exp.size else 0.0,
            "scale": float(np.max(np.abs(exp))) if exp.size else 0.0,
            "ulp": ulp}


def check(plan):
    method, p = plan["method"], plan["params"]
    if "got" in plan:
        b = f64(plan["base"]) if plan.get("base") is not None else None
        X = [f64(x) for x in plan["models"]]
        exp = expected(method, p, b, X, plan["shape"], plan["name"])
        return {plan["name"]: compare(f64(plan["got"]), exp)}
    import onnx
    from onnx import numpy_helper

    def load(path):
        m = onnx.load(path, load_external_data=True)
        return {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}

    models = [load(x) for x in plan["models"]]
    base = load(plan["base"]) if plan.get("base") else None
    out = load(plan["output"])
    res = {}
    for t in plan["tensors"]:
        X = [f64(models[i][t["models"][i]]) for i in range(len(models))]
        b = f64(base[t["base"]]) if base is not None else None
        exp = expected(method, p, b, X, t["shape"], t["out"])
        res[t["out"]] = compare(f64(out[t["out"]]), exp, out[t["out"]])
    return res


def main():
    json.dump([check(json.load(open(x))) for x in sys.argv[1:]], sys.stdout)


if __name__ == "__main__":
    main()
