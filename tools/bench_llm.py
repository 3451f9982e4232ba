#!/usr/bin/env python3
"""LLM-scale benchmark (make bench-llm): onnxpost quantize/sparsify/merge on a
generated 1 B-parameter decoder with external data, beside ONNX Runtime's own
MatMulNBitsQuantizer on the same file, each in its own process, one at a time.

For every run it reports wall time, CPU time, peak RSS (the kernel's maxrss of
the process: anonymous memory plus the pages of mapped files that were
resident) and peak anonymous RSS (RssAnon sampled every 50 ms: heap and
runtime buffers, without the page cache of memory-mapped weights), and the
size of what was written. Output: a Markdown table on stdout and a JSON file.

  tools/bench_llm.py --bin bin/onnxpost --model models/big/llm1b.onnx \\
      --calib models/big/calib.npz --base2 models/big/llm1b-b.onnx --out out/bench-llm
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def model_bytes(model):
    """Size of a model file and its data files (those named after it)."""
    d, base = os.path.dirname(model) or ".", os.path.basename(model)
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)
               if f == base or f.startswith(base + ".") and f.endswith(".data"))


def measure(name, cmd, env=None, outdir=None):
    """Run cmd, sampling RssAnon; return a result dict."""
    print(f"## {name}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    t0 = time.time()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak_anon = [0]
    done = threading.Event()

    def sample():
        path = f"/proc/{p.pid}/status"
        while not done.is_set():
            try:
                with open(path) as f:
                    for line in f:
                        if line.startswith("RssAnon:"):
                            peak_anon[0] = max(peak_anon[0], int(line.split()[1]))
            except OSError:
                pass
            done.wait(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    done.set()
    th.join()
    wall = time.time() - t0
    rc = os.waitstatus_to_exitcode(status)
    tail = err.decode(errors="replace").strip().splitlines()[-3:]
    if rc != 0:
        print(f"   exit {rc}: " + "\n   ".join(tail), file=sys.stderr)
    res = {"name": name, "command": " ".join(cmd), "rc": rc, "wall_s": round(wall, 1),
           "cpu_s": round(ru.ru_utime + ru.ru_stime, 1),
           "peak_rss_mb": round(ru.ru_maxrss / 1024), "peak_anon_mb": round(peak_anon[0] / 1024),
           "stderr_tail": tail}
    if outdir and rc == 0:
        res["output_mb"] = round(dir_bytes(outdir) / 1e6)
    print(f"   {res['wall_s']} s, peak RSS {res['peak_rss_mb']} MB, peak anon {res['peak_anon_mb']} MB", file=sys.stderr, flush=True)
    return res


ORT_Q4 = r"""
import sys, onnx
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer, DefaultWeightOnlyQuantConfig
src, dst = sys.argv[1], sys.argv[2]
model = onnx.load(src, load_external_data=True)
cfg = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=False, accuracy_level=None)
q = MatMulNBitsQuantizer(model, block_size=32, is_symmetric=False, algo_config=cfg)
q.process()
q.model.save_model_to_file(dst, use_external_data_format=True)
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="bin/onnxpost")
    ap.add_argument("--model", required=True)
    ap.add_argument("--calib", required=True)
    ap.add_argument("--merge", help="MODEL1,MODEL2 of the same shape: TIES-merged onto --model as the base")
    ap.add_argument("--wide", action="store_true", help="the memory runs only: Wanda 50 %% and SparseGPT 2:4")
    ap.add_argument("--python", default=sys.executable, help="Python with onnxruntime and onnx (the bench venv)")
    ap.add_argument("--out", default="out/bench-llm")
    ap.add_argument("--only", default="", help="comma-separated run names (default: all)")
    ap.add_argument("--json", default="", help="write results here (default OUT/results.json)")
    a = ap.parse_args()
    only = set(filter(None, a.only.split(",")))
    os.makedirs(a.out, exist_ok=True)
    results = []
    size = model_bytes(a.model)
    print(f"model {a.model}: {size / 1e9:.2f} GB", file=sys.stderr)

    def run(name, cmd, env=None):
        if only and name not in only:
            return
        od = os.path.join(a.out, name)
        shutil.rmtree(od, ignore_errors=True)
        os.makedirs(od)
        cmd = [c.replace("{OUT}", od) for c in cmd]
        # the input is read once before each run so that every tool starts
        # from the page cache
        subprocess.run(["cat", a.model] + [os.path.join(os.path.dirname(a.model), f) for f in os.listdir(os.path.dirname(a.model)) if f.startswith(os.path.basename(a.model) + ".")], stdout=subprocess.DEVNULL)
        results.append(measure(name, cmd, env, od))
        shutil.rmtree(od, ignore_errors=True)  # 1-4 GB each: never keep two

    b = a.bin
    if a.wide:
        run("onnxpost-wanda-50%", [b, "sparsify", a.model, "--sparsity", "0.5", "--method", "wanda",
                                   "--calib", a.calib, "-o", "{OUT}/s.onnx", "--quiet"])
        run("onnxpost-sparsegpt-2:4", [b, "sparsify", a.model, "--pattern", "2:4", "--method", "sparsegpt",
                                       "--calib", a.calib, "-o", "{OUT}/s.onnx", "--quiet"])
    else:
        quantize_and_merge(a, b, run)
    finish(a, size, results)


def quantize_and_merge(a, b, run):
    run("onnxpost-int4-rtn", [b, "quantize", a.model, "--weights", "int4", "--block", "32", "-o", "{OUT}/q.onnx"])
    run("ort-matmulnbits-rtn", [a.python, "-c", ORT_Q4, a.model, "{OUT}/q.onnx"])
    run("onnxpost-int4-gptq", [b, "quantize", a.model, "--weights", "int4", "--block", "32", "--method", "gptq",
                               "--calib", a.calib, "-o", "{OUT}/q.onnx"])
    run("onnxpost-sparsegpt-2:4", [b, "sparsify", a.model, "--pattern", "2:4", "--method", "sparsegpt",
                                   "--calib", a.calib, "-o", "{OUT}/s.onnx", "--quiet"])
    if a.merge:
        run("onnxpost-ties", [b, "merge", "--method", "ties", "--base", a.model] + a.merge.split(",") + ["-o", "{OUT}/m.onnx"])


def finish(a, size, results):
    out = a.json or os.path.join(a.out, "results.json")
    with open(out, "w") as f:
        json.dump({"model": a.model, "model_bytes": size, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   "load": os.getloadavg(), "results": results}, f, indent=1)
    print("| run | exit | wall s | CPU s | peak RSS MB | peak anon MB | output MB |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['name']} | {r['rc']} | {r['wall_s']} | {r['cpu_s']} | {r['peak_rss_mb']} | {r['peak_anon_mb']} | {r.get('output_mb', '-')} |")


if __name__ == "__main__":
    main()
