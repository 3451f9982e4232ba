#!/usr/bin/env python3
"""PyTorch oracle for onnxpost's gradient graphs and diagonal Fisher.

Independent of onnxpost's Go code: the zoo's own torch modules
(models/gen.py) are loaded with the weights of an ONNX model (exported by
the Go test as an .npz keyed by initializer name), and PyTorch autograd
computes

  grad:   d(sum(S * logits(x)))/d theta for a seed matrix S   (one backward)
  fisher: F = mean_x sum_y p(y|x) (d log p(y|x)/d theta)^2     (per example,
          one backward per class; docs/ARCHITECTURE.md §5.2)

Run with Debian's PyTorch: /usr/bin/python3 tools/fisher_oracle.py ...
The CNN's ONNX export folds BatchNorm into the convolutions, so the CNN is
rebuilt without its BatchNorm layers and takes the folded weights.

Usage:
  fisher_oracle.py {grad|fisher|bench} --family F --weights W.npz --data D.npz
                   [--seed S.npz] [--n N] [--dtype float64|float32] --out OUT.npz
  fisher_oracle.py jobs JOBS.json   (a list of objects with the same keys, run
                                     in one process so torch loads once)
Outputs an .npz keyed by parameter name (bench: prints JSON timings).
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "models"))
import gen  # noqa: E402  the zoo's module definitions

torch.set_num_threads(1)


def build(family, weights, dtype):
    model = gen.FAMILIES[family]()
    if family == "cnn":  # BatchNorm is folded into the convs by the export
        model.bn1 = nn.Identity()
        model.bn2 = nn.Identity()
    state = {k: torch.tensor(np.asarray(v)) for k, v in weights.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SystemExit(f"weights do not fit the {family} module: missing {missing}, unexpected {unexpected}")
    model = model.to(dtype)
    model.eval()
    return model


def params_of(model):
    return [(n, p) for n, p in model.named_parameters()]


def grad(model, x, seed):
    names, ps = zip(*params_of(model))
    logits = model(x)
    loss = (logits * seed).sum()
    gs = torch.autograd.grad(loss, ps)
    return {n: g.detach().cpu().numpy() for n, g in zip(names, gs)}


def fisher(model, x):
    names, ps = zip(*params_of(model))
    acc = [torch.zeros_like(p) for p in ps]
    for i in range(x.shape[0]):
        logp = torch.log_softmax(model(x[i : i + 1]), dim=-1)[0]
        prob = logp.exp().detach()
        for y in range(logp.shape[0]):
            gs = torch.autograd.grad(logp[y], ps, retain_graph=y + 1 < logp.shape[0])
            for a, g in zip(acc, gs):
                a.add_(prob[y] * g * g)
    return {n: (a / x.shape[0]).detach().cpu().numpy() for n, a in zip(names, acc)}


def fisher_vmap(model, x, chunk=64):
    """The same Fisher with functorch: per-example Jacobians of log p over
    the classes (jacrev), vectorized over the examples (vmap)."""
    from functorch import jacrev, make_functional, vmap

    fmodel, params = make_functional(model)

    def logp(ps, xi):
        return torch.log_softmax(fmodel(ps, xi.unsqueeze(0)), dim=-1)[0]

    acc = [torch.zeros_like(p) for p in params]
    for i in range(0, x.shape[0], chunk):
        xb = x[i : i + chunk]
        jac = vmap(jacrev(logp), in_dims=(None, 0))(params, xb)  # per param [B, C, ...]
        prob = vmap(logp, in_dims=(None, 0))(params, xb).exp().detach()
        for a, j in zip(acc, jac):
            w = prob.reshape(prob.shape + (1,) * (j.dim() - 2))
            a.add_((w * j * j).sum(dim=(0, 1)))
    names = [n for n, _ in model.named_parameters()]
    return {n: (a / x.shape[0]).detach().cpu().numpy() for n, a in zip(names, acc)}


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "jobs":
        with open(sys.argv[2]) as f:
            for job in json.load(f):
                args = [job["mode"]]
                for k, v in job.items():
                    if k != "mode":
                        args += ["--" + k, str(v)]
                run(args)
        return
    run(sys.argv[1:])


def run(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["grad", "fisher", "fisher_vmap", "bench"])
    ap.add_argument("--family", required=True, choices=sorted(gen.FAMILIES))
    ap.add_argument("--weights", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--seed")
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    dtype = torch.float64 if a.dtype == "float64" else torch.float32
    w = dict(np.load(a.weights))
    model = build(a.family, w, dtype)
    x = np.load(a.data)["image"]
    if a.n:
        x = x[: a.n]
    x = torch.tensor(x, dtype=dtype)
    if a.mode == "grad":
        s = torch.tensor(np.load(a.seed)["seed"], dtype=dtype)
        res = grad(model, x, s)
    elif a.mode == "fisher":
        res = fisher(model, x)
    elif a.mode == "fisher_vmap":
        res = fisher_vmap(model, x)
    else:
        out = {"family": a.family, "examples": int(x.shape[0]), "torch": torch.__version__,
               "threads": torch.get_num_threads(), "dtype": a.dtype}
        for name, fn in (("loop", fisher), ("vmap", fisher_vmap)):
            t0 = time.perf_counter()
            try:
                fn(model, x)
            except Exception as e:  # functorch may not support every op
                out[name + "_error"] = str(e)[:200]
                continue
            dt = time.perf_counter() - t0
            out[name + "_seconds"] = dt
            out[name + "_examples_per_s"] = x.shape[0] / dt
        print(json.dumps(out))
        return
    np.savez(a.out, **res)


if __name__ == "__main__":
    main()
