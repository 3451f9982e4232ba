#!/usr/bin/env python3
"""Check onnxpost's Wanda N:M masks on the zoo LM against the paper's definition, layer by layer.

  python tools/lm_wanda_check.py PRUNED.onnx [--model models/zoo/lm/base.onnx]
        [--calib models/data/lm_pydoc_calib.npz] [--samples 256] [--n 2 --m 4]

PRUNED.onnx is `onnxpost sparsify MODEL --pattern N:M --method wanda
--calib CALIB --calib-samples SAMPLES` (one shot, all layers from the dense
model's activations). For every pruned MatMul weight W [K, N] (x @ W) the
script captures the weight's input activations X with ONNX Runtime on the
calibration windows, keeps the token positions whose attention_mask is 1,
and computes Wanda's score |W[k, n]| * ||X[:, k]||_2 (Sun et al., 2023: the
weight magnitude times the L2 norm of its input feature over all calibration
tokens), then, for every output unit n and every group of M consecutive
inputs k, keeps the N largest scores. It prints, per layer, the fraction of
weights whose kept/pruned decision differs from onnxpost's output (ties in
the score can legitimately break differently; they are counted apart).
With --compare OTHER.onnx (e.g. the magnitude-pruned model) it also
prints, per layer, the relative output error ||X(W - W')||_F / ||XW||_F on
the calibration tokens of PRUNED and OTHER, and the spread of the input
feature norms (max / median of ||X[:, k]||_2), the quantity Wanda's score
exploits. --unstructured checks per-output-row unstructured masks (the
fraction of each row given by the pruned model) instead of N:M.
Needs numpy, onnx and onnxruntime.
"""

import argparse

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pruned")
    ap.add_argument("--model", default="models/zoo/lm/base.onnx")
    ap.add_argument("--calib", default="models/data/lm_pydoc_calib.npz")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--m", type=int, default=4)
    ap.add_argument("--compare", help="a second pruned model: print both models' per-layer output errors")
    ap.add_argument("--unstructured", action="store_true", help="per-output-row unstructured masks instead of N:M")
    a = ap.parse_args()
    other = {t.name: numpy_helper.to_array(t) for t in onnx.load(a.compare).graph.initializer} if a.compare else None

    dense = onnx.load(a.model)
    pruned = {t.name: numpy_helper.to_array(t) for t in onnx.load(a.pruned).graph.initializer}
    inits = {t.name: numpy_helper.to_array(t) for t in dense.graph.initializer}
    layers = []  # (weight name, activation name)
    for node in dense.graph.node:
        if node.op_type == "MatMul" and node.input[1] in inits and inits[node.input[1]].ndim == 2:
            w = node.input[1]
            if w in pruned and (pruned[w] == 0).any():
                layers.append((w, node.input[0]))
    m = onnx.load(a.model)
    have = {o.name for o in m.graph.output}
    for _, act in layers:
        if act not in have:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(act))
            have.add(act)
    sess = ort.InferenceSession(m.SerializeToString())
    d = np.load(a.calib)
    ids, mask = d["input_ids"][: a.samples], d["attention_mask"][: a.samples]
    names = [o.name for o in sess.get_outputs()]
    sq, gram = {}, {}
    for i in range(0, len(ids), 32):
        outs = dict(zip(names, sess.run(None, {"input_ids": ids[i:i + 32], "attention_mask": mask[i:i + 32]})))
        keep = mask[i:i + 32].reshape(-1) != 0
        for _, act in layers:
            x = outs[act].astype(np.float64).reshape(-1, outs[act].shape[-1])[keep]
            sq[act] = sq.get(act, 0) + (x * x).sum(axis=0)
            gram[act] = gram.get(act, 0) + x.T @ x
    worst = 0.0
    for w, act in layers:
        W = inits[w].astype(np.float64)  # [K, N]
        score = np.abs(W) * np.sqrt(sq[act])[:, None]
        K, N = W.shape
        if other is not None:
            def oerr(Wp):
                D = W - Wp.astype(np.float64)
                return np.sqrt(np.trace(D.T @ gram[act] @ D) / np.trace(W.T @ gram[act] @ W))
            norms = np.sqrt(sq[act])
            print(f"{w:40s} output error {oerr(pruned[w]):.4f} vs other {oerr(other[w]):.4f}; "
                  f"input norms max/median {norms.max() / np.median(norms):.1f}")
        if a.unstructured:
            k = int((pruned[w] == 0).sum(axis=0).max())
            order = np.argsort(score, axis=0, kind="stable")
            want = np.ones_like(W, dtype=bool)
            np.put_along_axis(want, order[:k, :], False, axis=0)
            got = pruned[w] != 0
            diff = got != want
            print(f"{w:40s} [{K}x{N}]  per-row unstructured mismatches {diff.sum()} ({diff.mean():.2e})")
            worst = max(worst, diff.mean())
            continue
        g = score.reshape(K // a.m, a.m, N)
        order = np.argsort(-g, axis=1, kind="stable")
        keep = np.zeros_like(g, dtype=bool)
        np.put_along_axis(keep, order[:, : a.n, :], True, axis=1)
        # ties at the N-th largest score: either decision is Wanda's
        srt = -np.sort(-g, axis=1)
        tie = np.isclose(g, srt[:, a.n - 1: a.n, :], rtol=1e-6, atol=0) & np.isclose(g, srt[:, a.n: a.n + 1, :], rtol=1e-6, atol=0)
        got = (pruned[w] != 0).reshape(K // a.m, a.m, N)
        diff = (got != keep) & ~tie
        frac = diff.mean()
        worst = max(worst, frac)
        print(f"{w:40s} [{K}x{N}]  mismatched decisions {diff.sum():6d} ({frac:.2e}), ties {tie.sum()}")
    print(f"worst mismatch fraction {worst:.3e} over {len(layers)} layers")


if __name__ == "__main__":
    main()
