#!/usr/bin/env python3
"""Side-by-side benchmark: `onnxpost quantize` versus ONNX Runtime's Python
quantizer (quantize_dynamic, quantize_static, MatMulNBitsQuantizer RTN and
GPTQ, onnxruntime.transformers.float16) on the same models and data.

For every zoo model family (models/zoo/<family>/base.onnx) and every mode it
measures, on the same test set and with the same ONNX Runtime (the Python
wheel, CPU, one thread):
  accuracy, agreement and mean cosine against the float model's logits,
  file size, median latency per batch of 64, and the quantization time
  (wall and CPU time: the onnxpost process's, without evaluation, including
  start-up, model load and save; the ORT Python call's, in process). On a
  shared, loaded machine the CPU times are the comparable figures.

Usage (from the repository root, after `make build`):
  .venv/bin/python tools/bench_quant.py [--bin bin/onnxpost] [--out quant/RESULTS.json]
        [--families mlp,cnn,transformer] [--markdown quant/results_table.md]

Notes on fairness, printed with the table:
  * ORT's MatMulNBitsQuantizer only quantizes MatMul; Gemm nodes are
    rewritten to MatMul (+Add) first so that both tools quantize the same
    layers (onnxpost handles Gemm itself).
  * Both tools quantize int4 with block 32, asymmetric; int8 per channel,
    symmetric int8 weights; static activations int8 from the same
    calibration samples (val split), MinMax.
"""

import argparse
import resource
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import helper, numpy_helper
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_dynamic, quantize_static)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "models", "data")
TEST = os.path.join(DATA, "digits_clean_test.npz")
VAL = os.path.join(DATA, "digits_clean_val.npz")
CALIB_SAMPLES = 256


def load(path):
    d = np.load(path)
    return d["image"].astype(np.float32), d["labels"]


class Reader(CalibrationDataReader):
    def __init__(self, x, name, batch=32):
        self.batches = [x[i:i + batch] for i in range(0, len(x), batch)]
        self.name = name
        self.i = 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {self.name: self.batches[self.i - 1]}

    def rewind(self):
        self.i = 0


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def evaluate(path, x, y, ref_logits, batch=64):
    s = session(path)
    name = s.get_inputs()[0].name
    outs = []
    for i in range(0, len(x), batch):
        outs.append(s.run(None, {name: x[i:i + batch]})[0])
    logits = np.concatenate(outs).astype(np.float64)
    res = {"accuracy": float((logits.argmax(1) == y).mean())}
    if ref_logits is not None:
        res["agreement"] = float((logits.argmax(1) == ref_logits.argmax(1)).mean())
        num = (logits * ref_logits).sum(1)
        den = np.linalg.norm(logits, axis=1) * np.linalg.norm(ref_logits, axis=1)
        res["cosine"] = float(np.mean(num / np.maximum(den, 1e-30)))
    res["bytes"] = os.path.getsize(path) + sum(
        os.path.getsize(os.path.join(os.path.dirname(path), f)) for f in os.listdir(os.path.dirname(path))
        if f.startswith(os.path.basename(path) + ".") and f.endswith(".data"))
    return res, logits


def latencies(paths, x, rounds, batch=64):
    """Median ms per batch of each model, measured round-robin (one pass over
    x per model per round) so that load drift on a shared machine hits every
    model alike."""
    sess = [session(p) for p in paths]
    names = [s.get_inputs()[0].name for s in sess]
    times = [[] for _ in paths]
    for s, n in zip(sess, names):  # warm-up
        s.run(None, {n: x[:batch]})
    for _ in range(rounds):
        for k, (s, n) in enumerate(zip(sess, names)):
            for i in range(0, len(x), batch):
                t0 = time.perf_counter()
                s.run(None, {n: x[i:i + batch]})
                times[k].append(time.perf_counter() - t0)
    return [1000 * float(np.median(t)) for t in times]


def gemm_to_matmul(src, dst):
    """Rewrite Gemm (transA=0, alpha=1, constant B) as MatMul (+ Add)."""
    m = onnx.load(src)
    inits = {t.name: t for t in m.graph.initializer}
    nodes = []
    for n in m.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type != "Gemm" or attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or n.input[1] not in inits:
            nodes.append(n)
            continue
        b = numpy_helper.to_array(inits[n.input[1]])
        if attrs.get("transB", 0):
            b = b.T.copy()
        inits[n.input[1]].CopyFrom(numpy_helper.from_array(b, n.input[1]))
        if len(n.input) > 2 and n.input[2]:
            mid = n.output[0] + "_mm"
            c = n.input[2]
            beta = attrs.get("beta", 1.0)
            if beta != 1.0:
                cv = numpy_helper.to_array(inits[c]) * np.float32(beta)
                inits[c].CopyFrom(numpy_helper.from_array(cv.astype(np.float32), c))
            nodes.append(helper.make_node("MatMul", [n.input[0], n.input[1]], [mid], name=n.name + "_MatMul"))
            nodes.append(helper.make_node("Add", [mid, c], [n.output[0]], name=n.name + "_Add"))
        else:
            nodes.append(helper.make_node("MatMul", [n.input[0], n.input[1]], [n.output[0]], name=n.name))
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    onnx.save(m, dst)


def ort_int4(src, dst, xcal, name, method, block=32):
    from onnxruntime.quantization.matmul_nbits_quantizer import (DefaultWeightOnlyQuantConfig,
                                                                 GPTQWeightOnlyQuantConfig, MatMulNBitsQuantizer)
    pre = dst + ".pre.onnx"
    gemm_to_matmul(src, pre)
    model = onnx.load(pre)
    if method == "gptq":
        cfg = GPTQWeightOnlyQuantConfig(calibration_data_reader=Reader(xcal, name), percdamp=0.01, block_size=block,
                                        actorder=False, mse=False, perchannel=True)
        q = MatMulNBitsQuantizer(model, block_size=block, is_symmetric=False, algo_config=cfg)
    else:
        cfg = DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=False)
        q = MatMulNBitsQuantizer(model, block_size=block, is_symmetric=False, algo_config=cfg)
    t0 = time.perf_counter()
    q.process()
    q.model.save_model_to_file(dst, use_external_data_format=False)
    t = time.perf_counter() - t0
    os.remove(pre)
    return t


def ort_quantize(mode, src, dst, xcal, name):
    t0 = time.perf_counter()
    if mode == "int8-dynamic":
        quantize_dynamic(src, dst, per_channel=True, weight_type=QuantType.QInt8)
    elif mode.startswith("int8-static"):
        method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                  "entropy": CalibrationMethod.Entropy}[mode.split("-")[-1]]
        quantize_static(src, dst, Reader(xcal, name), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibrate_method=method)
    elif mode.startswith("int4-rtn") or mode.startswith("int4-gptq"):
        block = 128 if mode.endswith("-b128") else 32
        return ort_int4(src, dst, xcal, name, mode.split("-")[1], block)
    elif mode == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16
        m = convert_float_to_float16(onnx.load(src), keep_io_types=True)
        onnx.save(m, dst)
    else:
        return None
    return time.perf_counter() - t0


OURS = {
    "int8-qdq": [],
    "int8-dynamic": ["--activations", "dynamic"],
    "int8-static-minmax": ["--activations", "int8", "--calib", VAL, "--calibrate", "minmax"],
    "int8-static-percentile": ["--activations", "int8", "--calib", VAL, "--calibrate", "percentile"],
    "int8-static-entropy": ["--activations", "int8", "--calib", VAL, "--calibrate", "entropy"],
    "int4-rtn": ["--weights", "int4", "--block", "32"],
    "int4-gptq": ["--weights", "int4", "--block", "32", "--method", "gptq", "--calib", VAL],
    "int4-rtn-b128": ["--weights", "int4", "--block", "128"],
    "int4-gptq-b128": ["--weights", "int4", "--block", "128", "--method", "gptq", "--calib", VAL],
    "int4-qdq-rtn": ["--weights", "int4", "--block", "32", "--format", "qdq"],
    "fp16": ["--weights", "fp16"],
    "bf16": ["--weights", "bf16"],
}


def synthetic(dirname, rng, d=1024, h=4096, classes=10, n=360):
    """A wider MLP (MatMul weights 1024×4096, 4096×1024, 1024×10; 8.4 M
    parameters) with random weights, for quantization-time comparisons at a
    size where fixed start-up costs matter less. Its 'labels' are the float
    model's own predictions, so accuracy equals agreement."""
    from onnx import TensorProto
    os.makedirs(os.path.join(dirname, "synthetic"), exist_ok=True)
    ws = [(rng.standard_normal((d, h)) / np.sqrt(d)).astype(np.float32),
          (rng.standard_normal((h, d)) / np.sqrt(h)).astype(np.float32),
          (rng.standard_normal((d, classes)) / np.sqrt(d)).astype(np.float32)]
    inits = [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(ws)]
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h0"]), helper.make_node("Relu", ["h0"], ["a0"]),
             helper.make_node("MatMul", ["a0", "w1"], ["h1"]), helper.make_node("Relu", ["h1"], ["a1"]),
             helper.make_node("MatMul", ["a1", "w2"], ["logits"])]
    g = helper.make_graph(nodes, "synthetic", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", d])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = os.path.join(dirname, "synthetic", "base.onnx")
    onnx.save(m, path)
    x = rng.standard_normal((n, d)).astype(np.float32)
    xc = rng.standard_normal((n, d)).astype(np.float32)
    a = np.maximum(np.maximum(x @ ws[0], 0) @ ws[1], 0) @ ws[2]
    y = a.argmax(1)
    test, calib = os.path.join(dirname, "synthetic_test.npz"), os.path.join(dirname, "synthetic_calib.npz")
    np.savez(test, x=x, labels=y)
    np.savez(calib, x=xc, labels=y)
    return path, test, calib


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "bin", "onnxpost"))
    ap.add_argument("--families", default="mlp,cnn,transformer,synthetic")
    ap.add_argument("--zoo", default=os.path.join(ROOT, "models", "zoo"), help="folder holding <family>/base.onnx")
    ap.add_argument("--test", default=TEST, help="evaluation .npz")
    ap.add_argument("--calib", default=VAL, help="calibration .npz")
    ap.add_argument("--modes", default=",".join(OURS))
    ap.add_argument("--out", default="")
    ap.add_argument("--markdown", default="")
    ap.add_argument("--repeat", type=int, default=3, help="quantization timings: best of N runs")
    ap.add_argument("--latency-rounds", type=int, default=20, help="round-robin latency passes over the test set")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench_quant_")
    rows = []
    for fam in args.families.split(","):
        src = os.path.join(args.zoo, fam, "base.onnx")
        test, calib = args.test, args.calib
        if fam == "synthetic":
            src, test, calib = synthetic(tmp, np.random.default_rng(0))
        dx = np.load(test)
        x, y = dx[list(k for k in dx.files if k != "labels")[0]].astype(np.float32), dx["labels"]
        dv = np.load(calib)
        xcal = dv[list(k for k in dv.files if k != "labels")[0]].astype(np.float32)[:CALIB_SAMPLES]
        name = onnx.load(src).graph.input[0].name
        base, ref_logits = evaluate(src, x, y, None)
        fam_rows = [{"model": fam, "mode": "float32", "tool": "-", "path": src, **base}]
        for mode in args.modes.split(","):
            out = os.path.join(tmp, f"{fam}_{mode}_onnxpost.onnx")
            best, best_cpu, err = None, None, ""
            for _ in range(args.repeat):
                ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                cmd = [args.bin, "quantize", src, "-o", out] + [calib if a == VAL else a for a in OURS[mode]]
                if "--calib" in OURS[mode]:
                    cmd += ["--calib-samples", str(CALIB_SAMPLES)]
                p = subprocess.run(cmd, capture_output=True, text=True)
                dt = time.perf_counter() - t0
                ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
                best_cpu = cpu if best_cpu is None else min(best_cpu, cpu)
                if p.returncode != 0:
                    err = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"
                    break
                best = dt if best is None else min(best, dt)
            if err:
                fam_rows.append({"model": fam, "mode": mode, "tool": "onnxpost", "error": err})
            else:
                r, _ = evaluate(out, x, y, ref_logits)
                fam_rows.append({"model": fam, "mode": mode, "tool": "onnxpost", "quant_s": best, "quant_cpu_s": best_cpu,
                                 "path": out, **r})
            omode = mode
            if omode in ("int8-qdq", "int4-qdq-rtn", "bf16"):
                continue  # no direct ORT counterpart
            oout = os.path.join(tmp, f"{fam}_{mode}_ort.onnx")
            try:
                ts, cpus = [], []
                for _ in range(args.repeat):
                    c0 = time.process_time()
                    t = ort_quantize(omode, src, oout, xcal, name)
                    cpus.append(time.process_time() - c0)
                    ts.append(t)
                r, _ = evaluate(oout, x, y, ref_logits)
                fam_rows.append({"model": fam, "mode": mode, "tool": "ORT python", "quant_s": min(ts), "quant_cpu_s": min(cpus),
                                 "path": oout, **r})
            except Exception as e:  # report, keep going
                fam_rows.append({"model": fam, "mode": mode, "tool": "ORT python", "error": f"{type(e).__name__}: {e}"[:200]})
        timed = [r for r in fam_rows if "path" in r]
        for r, ms in zip(timed, latencies([r["path"] for r in timed], x, args.latency_rounds)):
            r["latency_ms"] = ms
        for r in fam_rows:
            r.pop("path", None)
        rows += fam_rows
    doc = {"onnxruntime": ort.__version__, "test": args.test, "calib": args.calib,
           "calib_samples": CALIB_SAMPLES, "rows": rows}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)
    md = table(rows)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md)
    print(md)


def table(rows):
    lines = ["| model | mode | tool | accuracy | agreement | cosine | bytes | latency ms/batch64 | quant wall s | quant CPU s | CPU ratio onnxpost/ORT |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    ort_c = {(r["model"], r["mode"]): r.get("quant_cpu_s") for r in rows if r["tool"] == "ORT python"}
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['mode']} | {r['tool']} | error: {r['error']} | | | | | | | |")
            continue
        ratio = ""
        if r["tool"] == "onnxpost" and ort_c.get((r["model"], r["mode"])):
            ratio = f"{r['quant_cpu_s'] / ort_c[(r['model'], r['mode'])]:.2f}"
        f = lambda k, fmt: (fmt % r[k]) if k in r and r[k] is not None else "-"
        lines.append(f"| {r['model']} | {r['mode']} | {r['tool']} | {f('accuracy', '%.4f')} | {f('agreement', '%.4f')} | "
                     f"{f('cosine', '%.6f')} | {r['bytes']} | {f('latency_ms', '%.3f')} | {f('quant_s', '%.3f')} | "
                     f"{f('quant_cpu_s', '%.3f')} | {ratio} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
