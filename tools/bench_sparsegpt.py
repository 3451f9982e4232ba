#!/usr/bin/env python3
"""SparseGPT timing: PyTorch against onnxpost's Go implementation, one run.

Prunes a 4096x4096 layer to 2:4 with a 4096x4096 Hessian (the
Kac-Murdock-Szego matrix rho^|i-j|, rho = 0.9, as in the Go benchmark
BenchmarkSparseGPT in compress/sparsity/bench_test.go) with the algorithm of
the SparseGPT reference (Frantar & Alistarh 2023, fasterprune): dampening 1%
of the mean diagonal, Cholesky factor of H^-1, column blocks of 128, lazy
batched updates, 2:4 masks chosen when the sweep reaches each group. The
Hessian path runs in float64 (as in onnxpost), the weights in float32.

Usage (repo root, Debian's torch):
  /usr/bin/python3 tools/bench_sparsegpt.py [--size 4096] [--threads N] [--go]
--go also runs the Go benchmark at the same size right after, in the same
run, and prints both timings: wall seconds and CPU seconds (all threads),
the latter being the fairer comparison on a shared, loaded machine. Prints
one JSON object on stdout.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

import torch


def kms(d, rho=0.9):
    i = torch.arange(d, dtype=torch.float64)
    return rho ** (i[:, None] - i[None, :]).abs()


def sparsegpt(W, H, prunen=2, prunem=4, blocksize=128, percdamp=0.01):
    """Return W pruned to prunen zeros in every prunem consecutive columns."""
    W = W.clone().float()
    rows, cols = W.shape
    H = H.clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    damp = percdamp * torch.mean(torch.diag(H))
    idx = torch.arange(cols)
    H[idx, idx] += damp
    L = torch.linalg.cholesky(H)
    Hinv = torch.cholesky_inverse(L)
    U = torch.linalg.cholesky(Hinv, upper=True).float()
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        d1 = torch.diag(U1)
        mask1 = torch.zeros_like(W1, dtype=torch.bool)
        for i in range(count):
            w = W1[:, i]
            d = U1[i, i]
            if i % prunem == 0:
                tmp = W1[:, i:i + prunem] ** 2 / d1[i:i + prunem].reshape(1, -1) ** 2
                mask1.scatter_(1, i + torch.topk(tmp, prunen, dim=1, largest=False)[1], True)
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(U1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(U[i1:i2, i2:])
    return W


def go_bench(size):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = ["go", "test", "-run", "^$", "-bench", f"^BenchmarkSparseGPT$/^{size}x{size}$",
           "-benchtime", "1x", "-count", "1", "./compress/sparsity"]
    out = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=True).stdout
    m = re.search(r"BenchmarkSparseGPT/\S+\s+\d+\s+(\d+) ns/op\s+([\d.]+) cpu-s/op", out)
    if not m:
        sys.exit("no benchmark line in:\n" + out)
    return int(m.group(1)) / 1e9, float(m.group(2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--go", action="store_true", help="also run the Go benchmark")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(1)
    W = torch.randn(a.size, a.size, generator=g)
    H = kms(a.size)
    t0, c0 = time.perf_counter(), time.process_time()
    Wp = sparsegpt(W, H)
    t_torch, c_torch = time.perf_counter() - t0, time.process_time() - c0
    groups = (Wp.reshape(a.size, -1, 4) != 0).sum(-1)
    res = {
        "size": a.size, "pattern": "2:4", "blocksize": 128,
        "torch_version": torch.__version__, "torch_threads": torch.get_num_threads(),
        "torch_seconds": round(t_torch, 3), "torch_cpu_seconds": round(c_torch, 3),
        "torch_max_nonzeros_per_group": int(groups.max()),
        "cpus": os.cpu_count(), "load_average": os.getloadavg(),
    }
    if a.go:
        t_go, c_go = go_bench(a.size)
        res["go_seconds"] = round(t_go, 3)
        res["go_cpu_seconds"] = round(c_go, 3)
        res["go_over_torch_wall"] = round(t_go / t_torch, 2)
        res["go_over_torch_cpu"] = round(c_go / c_torch, 2)
        res["load_average_after"] = os.getloadavg()
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
