#!/usr/bin/env python3
"""Merge results on the reference zoo, with the built onnxpost CLI.

Usage: tools/bench_merge_results.py [--onnxpost bin/onnxpost] [--out docs/results/merge.md]

For each zoo family (mlp, cnn, transformer) it evaluates the base, each
fine-tune alone, and merges of the four fine-tunes (linear average, task
arithmetic, TIES with global and per-tensor trim, DARE-TIES, greedy soup)
on the union of tasks (digits_union: clean + shifted + mirrored digits).
Merge coefficients λ are chosen on the validation split
(digits_union_val.npz) from a small grid, as the TIES paper does; the table
reports accuracy on the test split (digits_union_test.npz). Only the
standard library is needed (no numpy).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO = os.path.join(ROOT, "models", "zoo")
VAL = os.path.join(ROOT, "models", "data", "digits_union_val.npz")
TEST = os.path.join(ROOT, "models", "data", "digits_union_test.npz")
FTS = ["ft_low", "ft_high", "ft_shift", "ft_flip"]
LAMBDAS = [0.2, 0.4, 0.6, 0.8, 1.0, 1.5]


def sh(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("failed: %s\n%s" % (" ".join(cmd), r.stderr))
    return r.stdout


def acc(onnxpost, model, data):
    return json.loads(sh([onnxpost, "eval", model, "--data", data, "--json"]))["metrics"]["accuracy"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnxpost", default=os.path.join(ROOT, "bin", "onnxpost"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "results", "merge.md"))
    a = ap.parse_args()
    op = a.onnxpost
    tmp = tempfile.mkdtemp(prefix="merge-results-")
    fams = ["mlp", "cnn", "transformer"]
    table = {}  # row -> fam -> (val, test, note)
    order = []

    def put(row, fam, val, test, note=""):
        if row not in table:
            table[row] = {}
            order.append(row)
        table[row][fam] = (val, test, note)

    for fam in fams:
        d = os.path.join(ZOO, fam)
        base = os.path.join(d, "base.onnx")
        fts = [os.path.join(d, f + ".onnx") for f in FTS]
        put("base (pre-trained)", fam, acc(op, base, VAL), acc(op, base, TEST))
        for f, p in zip(FTS, fts):
            put("fine-tune %s alone" % f[3:], fam, acc(op, p, VAL), acc(op, p, TEST))

        def merged(name, args):
            out = os.path.join(tmp, "%s-%s.onnx" % (fam, name))
            sh([op, "merge"] + args + ["-o", out] + fts)
            return out

        def sweep(row, name, args):
            best = None
            for lam in LAMBDAS:
                out = merged("%s-%g" % (name, lam), args + ["--lambda", str(lam)])
                v = acc(op, out, VAL)
                if best is None or v > best[0]:
                    best = (v, lam, out)
            put(row, fam, best[0], acc(op, best[2], TEST), "λ=%g" % best[1])

        out = merged("linear", ["--method", "linear"])
        put("linear (uniform average)", fam, acc(op, out, VAL), acc(op, out, TEST))
        out = merged("ta1", ["--method", "task-arithmetic", "--base", base])
        put("task arithmetic, λ=1", fam, acc(op, out, VAL), acc(op, out, TEST))
        sweep("task arithmetic, λ on val", "ta", ["--method", "task-arithmetic", "--base", base])
        sweep("TIES global trim, density 0.2", "tiesg", ["--method", "ties", "--base", base, "--trim-scope", "global"])
        sweep("TIES per-tensor trim, density 0.2", "tiest", ["--method", "ties", "--base", base, "--trim-scope", "tensor"])
        sweep("DARE-TIES, density 0.5, seed 0", "dareties", ["--method", "dare-ties", "--base", base, "--seed", "0"])
        soup = os.path.join(tmp, fam + "-greedy.onnx")
        r = json.loads(sh([op, "soup", "--greedy", "--data", VAL, "--json", "-o", soup] + fts))
        ing = "+".join(os.path.basename(p)[3:-5] for p in r["soup"]["ingredients"])
        put("greedy soup (val accuracy)", fam, acc(op, soup, VAL), acc(op, soup, TEST), ing)

    lines = [
        "# Merge results on the reference zoo",
        "",
        "Accuracy on the union of tasks (`models/data/digits_union_test.npz`: clean, shifted and",
        "mirrored digits) of each fine-tune alone and of merges of the four fine-tunes",
        "(`ft_low`, `ft_high`, `ft_shift`, `ft_flip`; base `base.onnx`). Where a λ is shown it was",
        "chosen on `digits_union_val.npz` from {%s}; the greedy soup is scored on the same" % ", ".join("%g" % l for l in LAMBDAS),
        "validation split. Cells: test accuracy (validation accuracy in parentheses).",
        "",
        "Produced by `tools/bench_merge_results.py --onnxpost bin/onnxpost` (ONNX Runtime CPU).",
        "",
        "| model | " + " | ".join(fams) + " |",
        "|---|" + "---|" * len(fams),
    ]
    for row in order:
        cells = []
        for fam in fams:
            v, t, note = table[row][fam]
            c = "%.4f (%.4f)" % (t, v)
            if note:
                c += " " + note
            cells.append(c)
        lines.append("| %s | %s |" % (row, " | ".join(cells)))
    lines.append("")
    with open(a.out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


main()
