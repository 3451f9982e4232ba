"""Independent numpy reference for compress/sparsity (Wanda and SparseGPT).

Usage: oracle.py MODEL.onnx WEIGHT DATASET.npz OUT.json

Captures the input activations X of the Gemm/MatMul node that consumes
WEIGHT with ONNX Runtime on DATASET, then prunes WEIGHT (viewed as
output units x reduction) with numpy implementations written from the
papers' definitions:

- Wanda (Sun et al. 2023): score |W_ij| * ||X_j||_2 (mean squared norm over
  samples), compared within each output row (unstructured) or within each
  group of M consecutive inputs (N:M).
- SparseGPT (Frantar & Alistarh 2023, Algorithm 1 and the reference
  fasterprune): H = X^T X, dead inputs (H_jj = 0) zeroed with H_jj = 1,
  lambda = damp * mean(diag H), Hinv = inverse(H + lambda I), U = upper
  Cholesky factor of Hinv; columns swept in blocks of B with lazy updates;
  N:M masks chosen when the sweep reaches a group (lowest w^2 / U_jj^2);
  unstructured masks chosen per block from w^2 / U_jj^2 over the block.

Counting rule shared with the Go package (its doc): unit u of size n_u at
offset o_u prunes floor(S*(o_u+n_u)) - floor(S*o_u) weights (units: rows for
Wanda, column blocks for SparseGPT); ties prune the higher index first.
"""
import base64
import json
import sys
from fractions import Fraction

import numpy as np
import onnx
import onnxruntime as ort


def floor_count(s, n):
    return int(Fraction(repr(s)) * n)  # floor for non-negative values


def unit_counts(s, sizes):
    out, off, prev = [], 0, 0
    for n in sizes:
        off += n
        c = floor_count(s, off)
        out.append(c - prev)
        prev = c
    return out


def lowest(scores, k):
    """Indices of the k lowest scores, higher index first among ties."""
    n = len(scores)
    order = sorted(range(n), key=lambda i: (scores[i], -i))
    return np.array(order[:k], dtype=np.int64)


def capture(model_path, weight, data_path):
    m = onnx.load(model_path)
    node = next(nd for nd in m.graph.node if weight in list(nd.input))
    assert node.op_type in ("Gemm", "MatMul"), node.op_type
    x_name = node.input[0]
    trans_b = any(a.name == "transB" and a.i == 1 for a in node.attribute)
    m.graph.output.append(onnx.helper.make_empty_tensor_value_info(x_name))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    data = np.load(data_path)
    feeds = {i.name: data[i.name] for i in sess.get_inputs()}
    x = sess.run([x_name], feeds)[0].astype(np.float64)
    x = x.reshape(x.shape[0], -1)
    w = next(onnx.numpy_helper.to_array(t) for t in m.graph.initializer if t.name == weight)
    w = w.astype(np.float32)
    rows = w if trans_b else w.T  # output units x reduction
    return np.ascontiguousarray(rows), x


def wanda(w, xtx, n, pattern=None, sparsity=0.0):
    norm = np.sqrt(np.diag(xtx) / n)
    score = np.abs(w.astype(np.float64)) * norm[None, :]
    out = w.copy()
    rows, cols = w.shape
    if pattern:
        keep_n, m = pattern
        for r in range(rows):
            for g in range(0, cols, m):
                for j in lowest(list(score[r, g:g + m]), m - keep_n):
                    out[r, g + j] = 0
    else:
        counts = unit_counts(sparsity, [cols] * rows)
        for r in range(rows):
            out[r, lowest(list(score[r]), counts[r])] = 0
    return out


def sparsegpt(w, xtx, pattern=None, sparsity=0.0, damp=0.01, block=128):
    W = w.astype(np.float64).copy()
    H = xtx.copy()
    rows, cols = W.shape
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H[np.diag_indices(cols)] += damp * np.mean(np.diag(H))
    Hinv = np.linalg.inv(H)
    Hinv = (Hinv + Hinv.T) / 2
    U = np.linalg.cholesky(Hinv).T  # upper: U^T U = Hinv
    mask = np.zeros_like(W, dtype=bool)
    counts = None
    if not pattern:
        counts = unit_counts(sparsity, [rows * (min(i + block, cols) - i) for i in range(0, cols, block)])
    for b, i1 in enumerate(range(0, cols, block)):
        i2 = min(i1 + block, cols)
        W1 = W[:, i1:i2].copy()
        Err1 = np.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        d = np.diag(U1)
        if not pattern:
            tmp = (W1 ** 2 / d[None, :] ** 2).ravel()
            m1 = np.zeros(tmp.size, dtype=bool)
            m1[lowest(list(tmp), counts[b])] = True
            mask[:, i1:i2] = m1.reshape(W1.shape)
        for i in range(i2 - i1):
            if pattern and i % pattern[1] == 0:
                keep_n, m = pattern
                tmp = W1[:, i:i + m] ** 2 / d[None, i:i + m] ** 2
                for r in range(rows):
                    mask[r, i1 + i + lowest(list(tmp[r]), m - keep_n)] = True
            w_col = W1[:, i]
            q = np.where(mask[:, i1 + i], 0.0, w_col)
            err = (w_col - q) / U1[i, i]
            W1[:, i:] -= np.outer(err, U1[i, i:])
            W1[:, i] = q
            Err1[:, i] = err
        W[:, i1:i2] = W1
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]
    return W.astype(np.float32)


def b64(a, dt):
    return base64.b64encode(np.ascontiguousarray(a, dtype=dt).tobytes()).decode()


def main():
    model, weight, data, out = sys.argv[1:5]
    w, x = capture(model, weight, data)
    xtx = x.T @ x
    n = x.shape[0]
    cases = []
    for name, fn in [
        ("wanda 2:4", lambda: wanda(w, xtx, n, pattern=(2, 4))),
        ("wanda 4:8", lambda: wanda(w, xtx, n, pattern=(4, 8))),
        ("wanda 0.5", lambda: wanda(w, xtx, n, sparsity=0.5)),
        ("wanda 0.7", lambda: wanda(w, xtx, n, sparsity=0.7)),
        ("sparsegpt 2:4", lambda: sparsegpt(w, xtx, pattern=(2, 4))),
        ("sparsegpt 4:8 block 16", lambda: sparsegpt(w, xtx, pattern=(4, 8), block=16)),
        ("sparsegpt 0.5", lambda: sparsegpt(w, xtx, sparsity=0.5)),
        ("sparsegpt 0.7 block 24", lambda: sparsegpt(w, xtx, sparsity=0.7, block=24)),
    ]:
        cases.append({"name": name, "w": b64(fn(), "<f4")})
    doc = {
        "model": model.split("/")[-1], "weight": weight, "rows": w.shape[0], "cols": w.shape[1],
        "n": int(n), "w": b64(w, "<f4"), "xtx": b64(xtx, "<f8"), "cases": cases,
    }
    with open(out, "w") as f:
        json.dump(doc, f)


if __name__ == "__main__":
    main()
