#!/usr/bin/env python3
"""Run every onnxpost command on every model of the real-model corpus and check each output independently.

`make realmodels-matrix` (after `make realmodels`). For each model of
.cache/realmodels/manifest.json and each cell (a command line), this records:
the exit code; whether the written model changed anything (tensors whose bytes
differ from every tensor of the input, ops added or removed); onnx.checker's
full check; whether ONNX Runtime (Python) loads it; and the quality of the
model's meaningful output against the float model on the model's own dataset,
computed here, not by onnxpost: mean per-sample cosine, plus a task measure
(decoded-text agreement for the OCR recognizer, top-1 agreement for the
classifiers, speech/non-speech agreement at 0.5 for the voice-activity
detectors, IoU of the text masks at 0.3 for the text detector).

Results go to OUT/matrix.json and, with --doc, into the marked section of
docs/results/real-models.md.

Usage: matrix.py [--bin bin/onnxpost] [--corpus .cache/realmodels] [--out out/realmodels]
                 [--models a,b] [--cells x,y] [--doc docs/results/real-models.md]
"""

import argparse
import collections
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

CELLS = [
    # id, argv template ({m}: model, {d}: dataset, {o}: output, {p1}, {p2}: perturbed copies), writes a model?
    ("inspect", "inspect --json {m}", False),
    ("convert-ext", "convert --external-data -o {o} {m}", True),
    ("eval-self", "eval {m} --data {d} --ref {m} --json{b}", False),
    ("eval-perturbed", "eval {p1} --data {d} --ref {m} --json{b}", False),
    ("eval-cosine", "eval {p1} --data {d} --ref {m} --metrics cosine --json{b}", False),
    ("q-int8", "quantize --weights int8 -o {o} {m}", True),
    ("q-int8-dyn", "quantize --weights int8 --activations dynamic -o {o} {m}", True),
    ("q-int4", "quantize --weights int4 -o {o} {m}", True),
    ("q-fp16", "quantize --weights fp16 -o {o} {m}", True),
    ("sparsify-2:4", "sparsify --pattern 2:4 --quiet -o {o} {m}", True),
    ("lowrank-0.5", "lowrank --rank-ratio 0.5 -o {o} {m}", True),
    ("search-sparsity", "search --space sparsity --target 0.5 --calib {d} --generations 2 --offspring 2 "
                        "--tokens 4:16 --levels 2 --cache-dir '' --batch {bs} -o {o} {m}", True),
    ("q-fp16-gated", "quantize --weights fp16 --data {d} --gate cosine>=0.99 --batch {bs} --keep-rejected {o} -o {o} {m}", True),
    ("sparsify-gated", "sparsify --pattern 2:4 --quiet --data {d} --gate cosine>=0.9 --batch {bs} --keep-rejected {o} -o {o} {m}", True),
    ("merge-self", "merge --method linear -o {o} {m} {m}", True),
    ("merge-ties", "merge --method ties --base {m} -o {o} {p1} {p2}", True),
]


# cosine thresholds of the gated cells (their --gate "cosine>=T")
GATES = {"q-fp16-gated": 0.99, "sparsify-gated": 0.9}


def log(*a):
    print("matrix:", *a, flush=True)


# ---------------------------------------------------------------- model tensors


def tensors(model):
    """Every tensor of the model: initializers and Constant values of the main graph and of every subgraph."""
    out = []

    def walk(g):
        out.extend(g.initializer)
        for nd in g.node:
            for a in nd.attribute:
                if nd.op_type == "Constant" and a.name == "value":
                    out.append(a.t)
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                for sg in a.graphs:
                    walk(sg)
    walk(model.graph)
    return out


def ops(model):
    c = collections.Counter()

    def walk(g):
        for nd in g.node:
            c[nd.op_type] += 1
            for a in nd.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                for sg in a.graphs:
                    walk(sg)
    walk(model.graph)
    return c


def digest(t):
    a = numpy_helper.to_array(t)
    return hashlib.sha1(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).hexdigest()


def perturb(src, dst, seed, scale=0.02):
    """A 'fine-tuned' copy: every float tensor of rank ≥ 2 (initializers, Constant values, subgraphs) times 1 + scale·N(0,1)."""
    m = onnx.load(src)
    rng = np.random.default_rng(seed)
    n = 0
    for t in tensors(m):
        if t.data_type != onnx.TensorProto.FLOAT or len(t.dims) < 2:
            continue
        a = numpy_helper.to_array(t)
        b = (a * (1 + scale * rng.standard_normal(a.shape))).astype(np.float32)
        t.CopyFrom(numpy_helper.from_array(b, t.name))
        n += 1
    onnx.save(m, dst)
    return n


# ---------------------------------------------------------------- running and judging


class Runner:
    """Runs a model on the dataset of a corpus entry with ONNX Runtime (Python) and returns its meaningful output."""

    def __init__(self, entry, corpus):
        self.e = entry
        self.dir = os.path.join(corpus, entry["name"])
        z = np.load(os.path.join(self.dir, "data.npz"))
        self.data = {k: z[k] for k in z.files if k != "labels"}

    def run(self, path):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        so.log_severity_level = 3
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        names = [o.name for o in s.get_outputs()]
        want = self.e["output"]
        name = want if want in names else names[0]
        if self.e["name"] == "akiki-vad":  # fixed batch 1, state h [1, N, 128]
            x, h = self.data["audio_with_context"], self.data["h"]
            out = [s.run([name], {"audio_with_context": x[i:i + 1], "h": h[:, i:i + 1]})[0] for i in range(len(x))]
            return np.concatenate([np.reshape(o, (1, -1)) for o in out]), name
        if self.e["name"] == "ppocr-det":  # pages one at a time (memory)
            x = self.data["x"]
            return np.concatenate([s.run([name], {"x": x[i:i + 1]})[0] for i in range(len(x))]), name
        return s.run([name], self.data)[0], name


def cosine(a, b):
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(np.where(den > 0, num / np.maximum(den, 1e-300), (np.abs(a - b).max(1) == 0).astype(float))))


def ctc(probs, chars):
    out = []
    for p in probs:
        idx, s, prev = p.argmax(-1), [], -1
        for i in idx:
            if i != prev and i != 0:
                s.append(chars[i] if i < len(chars) else "?")
            prev = i
        out.append("".join(s))
    return out


def judge(entry, corpus, ref, cand):
    """Quality of cand against ref (the float model's output): a dict of named measures."""
    q = {"cosine": cosine(ref, cand) if ref.shape == cand.shape else None}
    if ref.shape != cand.shape:
        q["note"] = "output shape %s, float model's %s" % (list(cand.shape), list(ref.shape))
        return q
    if not np.all(np.isfinite(cand)):
        q["nonfinite"] = int((~np.isfinite(cand)).sum())
    kind = entry["quality"]
    d = os.path.join(corpus, entry["name"])
    if kind == "ctc":
        chars = open(os.path.join(d, "chars.txt"), encoding="utf-8").read().split("\n")[:-1]
        r, c = ctc(ref, chars), ctc(cand, chars)
        q["text_agreement"] = float(np.mean([a == b for a, b in zip(r, c)]))
    elif kind == "class":
        q["top1_agreement"] = float((ref.argmax(-1) == cand.argmax(-1)).mean())
    elif kind == "vad":
        q["speech_agreement"] = float(((ref.ravel() > 0.5) == (cand.ravel() > 0.5)).mean())
    elif kind == "tokens":
        mask = np.load(os.path.join(d, "truth.npz"))["mask"].astype(bool)
        q["token_agreement"] = float((ref.argmax(-1) == cand.argmax(-1))[mask].mean())
    elif kind == "map":
        a, b = ref > 0.3, cand > 0.3
        q["mask_iou"] = float((a & b).sum() / max(1, (a | b).sum()))
    return q


def headline(q):
    """One short quality string for the table."""
    if not q:
        return ""
    if q.get("note"):
        return q["note"]
    parts = []
    for k, label in (("text_agreement", "text"), ("top1_agreement", "top1"), ("speech_agreement", "speech"), ("mask_iou", "IoU"),
                     ("token_agreement", "tokens")):
        if k in q:
            parts.append("%s %.3f" % (label, q[k]))
    if q.get("cosine") is not None:
        parts.append("cos %.4f" % q["cosine"])
    if q.get("nonfinite"):
        parts.append("%d non-finite" % q["nonfinite"])
    return ", ".join(parts)


def first_error(text):
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("onnxpost:") or "panic" in ln or "internal error" in ln or "Error" in ln:
            return ln[:300]
    return lines[-1][:300] if lines else ""


def check_file(path):
    """onnx.checker full check and ONNX Runtime load of a written model: (checker, ort) as 'ok' or the error."""
    try:
        onnx.checker.check_model(path, full_check=True)
        chk = "ok"
    except Exception as ex:  # noqa: BLE001 - the message is the result
        chk = "FAIL: " + str(ex).strip().splitlines()[0][:200]
    try:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        lo = "ok"
    except Exception as ex:  # noqa: BLE001
        lo = "FAIL: " + str(ex).strip().splitlines()[0][:200]
    return chk, lo


def changes(src_model, path):
    m = onnx.load(path)
    before = {digest(t) for t in tensors(src_model)}
    after = tensors(m)
    new = sum(1 for t in after if digest(t) not in before)
    oa, ob = ops(src_model), ops(m)
    delta = []
    for k in sorted(set(oa) | set(ob)):
        if oa[k] != ob[k]:
            delta.append("%s%+d" % (k, ob[k] - oa[k]))
    return new, delta


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="bin/onnxpost")
    ap.add_argument("--corpus", default=".cache/realmodels")
    ap.add_argument("--out", default="out/realmodels")
    ap.add_argument("--models", default="")
    ap.add_argument("--cells", default="")
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--doc", default="")
    ap.add_argument("--doc-only", action="store_true", help="only rewrite --doc from OUT/matrix.json")
    args = ap.parse_args()
    if args.doc_only:
        import report
        report.write(args.doc, json.load(open(os.path.join(args.corpus, "manifest.json"))),
                     json.load(open(os.path.join(args.out, "matrix.json"))))
        return
    manifest = json.load(open(os.path.join(args.corpus, "manifest.json")))
    if args.models:
        keep = args.models.split(",")
        manifest = [e for e in manifest if e["name"] in keep]
    cells = [c for c in CELLS if not args.cells or c[0] in args.cells.split(",")]
    os.makedirs(args.out, exist_ok=True)
    resfile = os.path.join(args.out, "matrix.json")
    results = json.load(open(resfile)) if os.path.exists(resfile) else {}
    env = dict(os.environ)
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or "?"
    results["_run"] = {"utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "commit": rev,
                       "ort": ort.__version__, "cells": [c[0] for c in cells]}
    for e in manifest:
        name = e["name"]
        mdir = os.path.join(args.corpus, name)
        m = os.path.join(mdir, "model.onnx")
        d = os.path.join(mdir, "data.npz")
        od = os.path.join(args.out, name)
        os.makedirs(od, exist_ok=True)
        p1, p2 = os.path.join(od, "perturbed1.onnx"), os.path.join(od, "perturbed2.onnx")
        nperturbed = perturb(m, p1, 1)
        perturb(m, p2, 2)
        runner = Runner(e, args.corpus)
        ref, outname = runner.run(m)
        src = onnx.load(m)
        row = results.setdefault(name, {})
        row["_perturbed_tensors"] = nperturbed
        bs = "1" if name == "akiki-vad" else "64"
        for cid, tmpl, writes in cells:
            o = os.path.join(od, cid.replace(":", "") + ".onnx")
            for f in (o, o + ".data"):
                if os.path.exists(f):
                    os.remove(f)
            argv = tmpl.format(m=m, d=d, o=o, p1=p1, p2=p2, bs=bs, b=(" --batch 1" if name == "akiki-vad" else ""))
            cmd = [args.bin] + shlex.split(argv)
            t0 = time.time()
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
                rc, so, se = r.returncode, r.stdout, r.stderr
            except subprocess.TimeoutExpired as ex:
                rc, so, se = "timeout", (ex.stdout or b"").decode(errors="replace") if isinstance(ex.stdout, bytes) else (ex.stdout or ""), "timed out after %d s" % args.timeout
            cell = {"cmd": "onnxpost " + argv, "rc": rc, "seconds": round(time.time() - t0, 1)}
            if rc != 0:
                cell["error"] = first_error(se) or first_error(so)
            if cid == "inspect" and rc == 0:
                try:
                    j = json.loads(so)
                    cell["params"] = j.get("params")
                    cell["weights"] = len(j.get("weights") or [])
                except ValueError as ex:
                    cell["error"] = "inspect --json printed no JSON: %s" % ex
            if cid.startswith("eval") and rc == 0:
                try:
                    j = json.loads(so)
                    met = j.get("metrics") or {}
                    cell["onnxpost_metrics"] = {k: v for k, v in met.items() if not isinstance(v, dict)}
                except ValueError as ex:
                    cell["error"] = "eval --json printed no JSON: %s" % ex
                cand = m if cid == "eval-self" else p1
                try:
                    out, _ = runner.run(cand)
                    cell["quality"] = judge(e, args.corpus, ref, out)
                except Exception as ex:  # noqa: BLE001
                    cell["quality"] = {"note": "python run failed: %s" % str(ex).splitlines()[0][:200]}
                oc = (cell.get("onnxpost_metrics") or {}).get("cosine")
                pc = (cell.get("quality") or {}).get("cosine")
                if oc is not None and pc is not None:
                    cell["cosine_matches_python"] = abs(oc - pc) <= 1e-4
            gate = GATES.get(cid)
            if gate and rc in (0, 3):
                cell["gate"] = {"threshold": gate, "passed": rc == 0}
            if writes and (rc == 0 or (gate and rc == 3)):
                if not os.path.exists(o):
                    cell["written"] = False
                else:
                    cell["written"] = True
                    cell["checker"], cell["ort"] = check_file(o)
                    try:
                        new, delta = changes(src, o)
                        cell["changed_tensors"], cell["op_delta"] = new, delta
                    except Exception as ex:  # noqa: BLE001
                        cell["changed_tensors"], cell["op_delta"] = None, ["load failed: %s" % str(ex)[:100]]
                    if cell["ort"] == "ok":
                        try:
                            out, _ = runner.run(o)
                            cell["quality"] = judge(e, args.corpus, ref, out)
                        except Exception as ex:  # noqa: BLE001
                            cell["quality"] = {"note": "run failed: %s" % str(ex).strip().splitlines()[0][:200]}
            if gate and rc in (0, 3) and (cell.get("quality") or {}).get("cosine") is not None:
                # the gate's decision against the script's own cosine of the same candidate
                cell["gate"]["consistent"] = (rc == 0) == (cell["quality"]["cosine"] >= gate)
            row[cid] = cell
            log("%-16s %-16s rc=%-3s %5.1fs %s %s" % (name, cid, rc, cell["seconds"], cell.get("error", ""),
                                                       headline(cell.get("quality"))))
            with open(resfile, "w") as f:
                json.dump(results, f, indent=1)
        for f in os.listdir(od):  # the written models are large; keep the results and the perturbed copies
            if (f.endswith(".onnx") or f.endswith(".data")) and not f.startswith("perturbed"):
                os.remove(os.path.join(od, f))
    if args.doc:
        import report
        report.write(args.doc, json.load(open(os.path.join(args.corpus, "manifest.json"))), results)
        log("wrote", args.doc)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
