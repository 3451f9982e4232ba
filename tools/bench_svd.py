#!/usr/bin/env python3
"""Exact SVD timing: onnxpost's OpenBLAS backend, gonum's pure Go, numpy.

One run measures, for each size n (Gaussian n x n float64 matrix, thin SVD
with both singular vector sets):
  - internal/linalg's BenchmarkSVD with the OpenBLAS backend (Dgesdd),
  - the same with gonum's pure-Go backend (Dgesvd),
  - numpy.linalg.svd(a, full_matrices=False) (LAPACK gesdd in numpy's
    bundled OpenBLAS),
interleaved, `--repeats` times, and prints wall and CPU seconds (user+sys of
all threads) and the ratios to numpy as a Markdown table. Then, unless
--solver-size 0, GPTQ (quant) and SparseGPT (compress/sparsity) at that
size with ONNXPOST_LINALG=go (before) and with the default backend (after).

numpy runs with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from its
environment (that command only): they are set on some machines for older
OpenBLAS builds and would slow numpy's current one. The kernel numpy's
OpenBLAS then picks is printed (threadpoolctl, when installed).

Usage (repo root): python3 tools/bench_svd.py [--sizes 1024,2048]
    [--repeats 3] [--solver-size 4096] [--solver-repeats 2] [--python PY]
`make bench-svd` runs it with the project's virtualenv.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

NUMPY_SNIPPET = r"""
import json, resource, sys, time
import numpy as np
n = int(sys.argv[1])
info = {}
try:
    import threadpoolctl
    info = [{k: p.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "filepath")}
            for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"]
except ImportError:
    info = "threadpoolctl not installed"
np.linalg.svd(np.eye(16) + 1.0, full_matrices=False)  # warm up the thread pool
a = np.random.default_rng(n).standard_normal((n, n))
r0 = resource.getrusage(resource.RUSAGE_SELF)
t0 = time.perf_counter()
u, s, vt = np.linalg.svd(a, full_matrices=False)
wall = time.perf_counter() - t0
r1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
print(json.dumps({"wall": wall, "cpu": cpu, "numpy": np.__version__, "blas": info}))
"""

BENCH_LINE = re.compile(r"^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(\d+) ns/op(?:\s+([\d.]+) cpu-s/op)?")


def compile_test(pkg, out):
    subprocess.run(["go", "test", "-c", "-o", out, pkg], check=True)


def run_bench(binary, pattern, env):
    e = dict(os.environ)
    e.update(env)
    p = subprocess.run([binary, "-test.run", "^$", "-test.bench", pattern, "-test.benchtime", "1x",
                        "-test.timeout", "0"], env=e, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{binary} {pattern} failed:\n{p.stdout}\n{p.stderr}")
    out = {}
    for line in p.stdout.splitlines():
        m = BENCH_LINE.match(line)
        if m:
            out[m.group(1)] = (int(m.group(2)) / 1e9, float(m.group(3)) if m.group(3) else float("nan"))
    return out


def run_numpy(py, n):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    p = subprocess.run([py, "-c", NUMPY_SNIPPET, str(n)], env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"numpy failed:\n{p.stderr}")
    return json.loads(p.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1024,2048")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-go", action="store_true", help="skip the pure-Go SVD (minutes at 2048²)")
    ap.add_argument("--solver-size", type=int, default=4096, help="GPTQ/SparseGPT size (0: skip)")
    ap.add_argument("--solver-repeats", type=int, default=2)
    ap.add_argument("--sparsegpt-size", type=int, default=2048, help="whole SparseGPT run size (its setup is always 4096)")
    ap.add_argument("--python", default=".venv/bin/python" if os.path.exists(".venv/bin/python") else "/usr/bin/python3")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    tmp = tempfile.mkdtemp(prefix="bench_svd")
    linalg_bin = os.path.join(tmp, "linalg.test")
    compile_test("./internal/linalg", linalg_bin)
    probe = subprocess.run([linalg_bin, "-test.run", "TestDefaultFollowsEnv", "-test.v"], capture_output=True, text=True)
    backend = next((l.split("backend: ", 1)[1] for l in probe.stdout.splitlines() if "backend: " in l), "?")
    print(f"onnxpost linalg: {backend}")
    if not backend.startswith("openblas"):
        print("warning: OpenBLAS backend not in use (install libopenblas0; make bench-svd does)")
    env_notes = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "GOMAXPROCS")}
    print(f"environment (onnxpost runs): {env_notes}; numpy runs without OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE")
    print(f"load average at start: {os.getloadavg()}; {os.cpu_count()} CPUs")
    rows = []
    shown = False
    for rep in range(a.repeats):
        for n in sizes:
            ob = run_bench(linalg_bin, "^BenchmarkSVD$/openblas/", {"ONNXPOST_BENCH_SVD_SIZES": str(n), "ONNXPOST_BENCH_BACKENDS": "openblas"})
            npy = run_numpy(a.python, n)
            go = {} if a.no_go else run_bench(linalg_bin, "^BenchmarkSVD$/go/", {"ONNXPOST_BENCH_SVD_SIZES": str(n), "ONNXPOST_BENCH_BACKENDS": "go"})
            if not shown:
                print(f"numpy {npy['numpy']} ({a.python}), BLAS: {json.dumps(npy['blas'])}")
                shown = True
            obv = next(iter(ob.values()), (float("nan"), float("nan")))
            gov = next(iter(go.values()), (float("nan"), float("nan")))
            rows.append((n, rep + 1, obv, gov, (npy["wall"], npy["cpu"])))
            print(f"  {n}² run {rep + 1}: openblas {obv[0]:.2f} s, go {gov[0]:.2f} s, numpy {npy['wall']:.2f} s; load average {os.getloadavg()[0]:.1f}", flush=True)
    print()
    print("| n×n | run | OpenBLAS wall / CPU s | pure Go wall / CPU s | numpy wall / CPU s | OpenBLAS ÷ numpy (wall, CPU) | Go ÷ numpy (wall, CPU) |")
    print("|---|---|---|---|---|---|---|")
    for n, rep, ob, go, npy in rows:
        print(f"| {n}² | {rep} | {ob[0]:.2f} / {ob[1]:.2f} | {go[0]:.1f} / {go[1]:.1f} | {npy[0]:.2f} / {npy[1]:.2f} | "
              f"{ob[0] / npy[0]:.2f}×, {ob[1] / npy[1]:.2f}× | {go[0] / npy[0]:.1f}×, {go[1] / npy[1]:.1f}× |")
    for n in sizes:
        rs = [r for r in rows if r[0] == n]
        med = lambda f: statistics.median(f(r) for r in rs)
        print(f"| {n}² | median | {med(lambda r: r[2][0]):.2f} / {med(lambda r: r[2][1]):.2f} | "
              f"{med(lambda r: r[3][0]):.1f} / {med(lambda r: r[3][1]):.1f} | {med(lambda r: r[4][0]):.2f} / {med(lambda r: r[4][1]):.2f} | "
              f"{med(lambda r: r[2][0] / r[4][0]):.2f}×, {med(lambda r: r[2][1] / r[4][1]):.2f}× | "
              f"{med(lambda r: r[3][0] / r[4][0]):.1f}×, {med(lambda r: r[3][1] / r[4][1]):.1f}× |")
    if a.solver_size <= 0:
        return
    d = a.solver_size
    quant_bin = os.path.join(tmp, "quant.test")
    sp_bin = os.path.join(tmp, "sparsity.test")
    compile_test("./quant", quant_bin)
    compile_test("./compress/sparsity", sp_bin)
    print()
    print(f"| {d}×{d} | go (before) wall / CPU s | {backend.split(';')[0]} (after) wall / CPU s | speed-up (wall) |")
    print("|---|---|---|---|")
    cases = [
        ("GPTQ setup (Cholesky of H⁻¹)", quant_bin, "^BenchmarkGPTQHinv$", {"ONNXPOST_BENCH_GPTQ_SIZE": str(d)}),
        ("GPTQ 4-bit, block 128", quant_bin, "^BenchmarkGPTQLarge$", {"ONNXPOST_BENCH_GPTQ_SIZE": str(d)}),
        ("SparseGPT setup (4096, fixed)", sp_bin, "^BenchmarkSparseGPTHinv$", {}),
        (f"SparseGPT 2:4 at {a.sparsegpt_size}²", sp_bin, f"^BenchmarkSparseGPT$/^{a.sparsegpt_size}x{a.sparsegpt_size}$", {}),
    ]
    for rep in range(a.solver_repeats):
        for name, binary, pat, env in cases:
            before = next(iter(run_bench(binary, pat, dict(env, ONNXPOST_LINALG="go")).values()))
            after = next(iter(run_bench(binary, pat, env).values()))
            print(f"| {name} (run {rep + 1}, load {os.getloadavg()[0]:.1f}) | {before[0]:.2f} / {before[1]:.2f} | {after[0]:.2f} / {after[1]:.2f} | {before[0] / after[0]:.1f}× |", flush=True)


if __name__ == "__main__":
    main()
