#!/usr/bin/env python3
"""Masked next-token perplexity of an ONNX decoder on a text dataset, with ONNX Runtime and numpy (an oracle for onnxpost eval).

  python tools/lm_perplexity.py MODEL.onnx DATA.npz [--batch 32] [--json]

DATA.npz holds input_ids and attention_mask int64 [N,T], optionally labels
int64 [N,T] (tools/textwindows.py writes them). The model's logits [N,T,V]
at position t predict token t+1. Position t counts when attention_mask[t]
and attention_mask[t+1] are both 1 and, when labels are present, labels[t+1]
is not -100; the target is labels[t+1] when labels are present, else
input_ids[t+1]. Perplexity = exp(sum of -log softmax(logits[t])[target] /
number of counted positions), log-softmax in float64.

Inputs the dataset lacks are fed as the ecosystem's exporters expect:
past_key_values.* empty (past length 0, the other dimensions from the
model's declared shape), use_cache_branch false, position_ids
cumsum(attention_mask) - 1 clamped at 0. Needs numpy and onnxruntime.
"""

import argparse
import json
import math
import sys

import numpy as np
import onnxruntime as ort

ELEM = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def feeds_for(sess, ids, mask):
    """Model inputs for one batch: the dataset's arrays plus the defaults for the inputs it lacks."""
    n = ids.shape[0]
    out = {}
    for i in sess.get_inputs():
        if i.name == "input_ids":
            out[i.name] = ids
        elif i.name == "attention_mask":
            out[i.name] = mask
        elif i.name == "position_ids":
            out[i.name] = np.maximum(np.cumsum(mask, axis=1) - 1, 0).astype(np.int64)
        elif i.name == "use_cache_branch":
            out[i.name] = np.zeros([1], dtype=bool)
        elif i.name.startswith("past_key_values"):
            shape = list(i.shape)
            if len(shape) != 4 or not isinstance(shape[1], int) or not isinstance(shape[3], int):
                raise ValueError("input %s: need a past of shape [batch, heads, past, head_dim] with static heads and head_dim, got %s" % (i.name, shape))
            out[i.name] = np.zeros([n, shape[1], 0, shape[3]], dtype=ELEM.get(i.type, np.float32))
        else:
            raise ValueError("input %s: not in the dataset and no default for it" % i.name)
    return out


def perplexity(model, data, batch=32):
    """Returns (perplexity, mean negative log-likelihood, counted positions)."""
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    out = "logits" if "logits" in names else names[0]
    ds = np.load(data)
    ids = ds["input_ids"].astype(np.int64)
    mask = ds["attention_mask"].astype(np.int64) if "attention_mask" in ds else np.ones_like(ids)
    labels = ds["labels"].astype(np.int64) if "labels" in ds else None
    nll, count = 0.0, 0
    for s in range(0, len(ids), batch):
        b_ids, b_mask = ids[s : s + batch], mask[s : s + batch]
        logits = sess.run([out], feeds_for(sess, b_ids, b_mask))[0]
        lp = log_softmax(logits[:, :-1, :])
        tgt = (labels[s : s + batch] if labels is not None else b_ids)[:, 1:]
        use = (b_mask[:, :-1] == 1) & (b_mask[:, 1:] == 1)
        if labels is not None:
            use &= tgt != -100
        safe = np.where(use, tgt, 0)
        got = np.take_along_axis(lp, safe[:, :, None], axis=-1)[:, :, 0]
        nll -= float(got[use].sum())
        count += int(use.sum())
    if count == 0:
        raise ValueError("%s: no position counts (every window shorter than 2 real tokens)" % data)
    return math.exp(nll / count), nll / count, count


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    try:
        ppl, nll, n = perplexity(a.model, a.data, a.batch)
    except (OSError, ValueError, KeyError) as e:
        print("lm_perplexity: %s" % e, file=sys.stderr)
        return 1
    if a.json:
        print(json.dumps({"model": a.model, "data": a.data, "perplexity": ppl, "nll": nll, "tokens": n}))
    else:
        print("%s on %s: perplexity %.4f (mean NLL %.6f nats over %d tokens)" % (a.model, a.data, ppl, nll, n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
