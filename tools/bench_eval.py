#!/usr/bin/env python3
"""Side-by-side eval throughput: `onnxpost eval` (Go, onnxruntime_go) against
ONNX Runtime's own Python runner, same model, data, batch and threads.

Both sides time the same thing: each batch's run call (inputs in, outputs
out as host arrays) after 3 warm-up runs, over one pass of the dataset,
cycled to at least --timed-runs timed runs (default 200); throughput =
samples / total run time. Ratios above 1 favour Go: Go/Py thr is the
throughput ratio, Py/Go p50 the inverse ratio of median batch latencies (the
robust figure on a loaded machine).
Rounds alternate Go and Python so that load on a shared machine hits both;
the medians are reported.

    make build && .venv/bin/python tools/bench_eval.py
    .venv/bin/python tools/bench_eval.py --model models/zoo/cnn/base.onnx --batch 64 --threads 1 --rounds 7
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_runner(model, data, batch, threads, min_runs, warmup=3):
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    d = np.load(data)
    names = [i.name for i in sess.get_inputs()]
    arrays = {n: d[n] for n in names}
    n = len(next(iter(arrays.values())))
    b = min(batch, n)
    for _ in range(warmup):
        sess.run(None, {k: v[:b] for k, v in arrays.items()})
    times, samples, i = [], 0, 0
    while i < n or len(times) < min_runs:
        if i >= n:
            i = 0
        j = min(i + b, n)
        feed = {k: v[i:j] for k, v in arrays.items()}
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
        samples += j - i
        i = j
        if i >= n and len(times) >= min_runs:
            break
    return {
        "latency_p50_ms": float(np.percentile(times, 50)),
        "latency_p90_ms": float(np.percentile(times, 90)),
        "throughput": samples / (sum(times) / 1e3),
    }


def go_runner(binary, model, data, batch, threads, min_runs):
    cmd = [binary, "eval", model, "--data", data, "--metrics", "latency,throughput",
           "--batch", str(batch), "--threads", str(threads), "--warmup", "3",
           "--timed-runs", str(min_runs), "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["metrics"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", help="model(s); default: the zoo's base models")
    ap.add_argument("--data", default=os.path.join(ROOT, "models/data/digits_union_test.npz"))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--timed-runs", type=int, default=200, help="timed batch runs per round (each side)")
    ap.add_argument("--onnxpost", default=os.path.join(ROOT, "bin/onnxpost"))
    a = ap.parse_args()
    models = a.model or [os.path.join(ROOT, "models/zoo", f, "base.onnx") for f in ("mlp", "cnn", "transformer")]
    if not os.path.exists(a.onnxpost):
        sys.exit(f"{a.onnxpost} not found: run `make build` or pass --onnxpost")
    lib = os.environ.get("ONNXPOST_ORT_LIB", os.path.join(ROOT, ".cache/onnxruntime/libonnxruntime.so.1"))
    os.environ["ONNXPOST_ORT_LIB"] = lib
    print(f"onnxruntime (Python) {ort.__version__}; Go side: {a.onnxpost} with {lib}")
    print(f"data {os.path.relpath(a.data, ROOT)}, batch {a.batch}, threads {a.threads}, {a.rounds} alternating rounds, medians")
    print(f"{'model':34s} {'runner':8s} {'p50 ms':>9s} {'p90 ms':>9s} {'samples/s':>11s} {'Go/Py thr':>10s} {'Py/Go p50':>10s}")
    for m in models:
        res = {"go": [], "python": []}
        for _ in range(a.rounds):
            res["go"].append(go_runner(a.onnxpost, m, a.data, a.batch, a.threads, a.timed_runs))
            res["python"].append(python_runner(m, a.data, a.batch, a.threads, a.timed_runs))
        med = {k: {q: statistics.median(r[q] for r in v) for q in ("latency_p50_ms", "latency_p90_ms", "throughput")} for k, v in res.items()}
        ratio = med["go"]["throughput"] / med["python"]["throughput"]
        p50 = med["python"]["latency_p50_ms"] / med["go"]["latency_p50_ms"]
        for k in ("go", "python"):
            r = med[k]
            extra = f"{ratio:10.3f} {p50:10.3f}" if k == "go" else ""
            print(f"{os.path.relpath(m, ROOT):34s} {k:8s} {r['latency_p50_ms']:9.3f} {r['latency_p90_ms']:9.3f} {r['throughput']:11.0f} {extra}")


if __name__ == "__main__":
    main()
