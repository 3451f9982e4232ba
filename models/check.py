#!/usr/bin/env python3
"""Check the generated zoo with onnx + ONNX Runtime (the test venv, not PyTorch).

For every model: onnx.checker passes, ONNX Runtime's logits on
data/digits_clean_test.npz match the PyTorch golden logits (max abs error
printed, fails above 1e-4), the accuracy matches, and every fine-tune has the
same initializer names and shapes as its family's base (so weight-space merges
can pair them). The ONNX test-data folder of mlp/base is read back and run.

  check.py            the checks above
  check.py --merge    numpy merges (linear, task arithmetic, TIES) of the ONNX
                      initializers, scored by ONNX Runtime on digits_union_test
  check.py --minilm   models/minilm/model.onnx against its PyTorch golden output
  check.py --lm       the zoo LM (zoo/lm): plain, KV-cache and merged exports
                      against PyTorch's goldens, the cache path against the
                      plain model, and tools/lm_perplexity.py's perplexities
                      against the ones PyTorch wrote to zoo/lm/manifest.json
"""

import glob
import os
import sys
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
TOL = 1e-4


def inits(m):
    return {i.name: tuple(i.dims) for i in m.graph.initializer}


def merged_initializers(base, fts, method, lam=1.0, density=0.2):
    """Merge float initializers of ONNX models with numpy, from the docs/ARCHITECTURE.md §5.1 definitions.

    base: {name: array}; fts: list of {name: array}. method: "linear"
    (uniform average), "task_arithmetic" (base + lam * sum of deltas) or
    "ties" (global trim to the top `density` fraction of |delta| per model,
    ties kept; sign election, zero sum -> +1; disjoint mean; base + lam * merged).
    """
    names = [n for n, v in base.items() if v.dtype == np.float32]
    if method == "linear":
        return {n: np.mean([f[n] for f in fts], axis=0, dtype=np.float64).astype(np.float32) for n in names}
    taus = [np.concatenate([(f[n].astype(np.float64) - base[n]).ravel() for n in names]) for f in fts]
    if method == "task_arithmetic":
        merged = lam * np.sum(taus, axis=0)
    else:
        trimmed = []
        for t in taus:
            k = max(1, int(round(density * t.size)))
            thr = np.partition(np.abs(t), t.size - k)[t.size - k]
            trimmed.append(np.where(np.abs(t) >= thr, t, 0.0))
        st = np.stack(trimmed)
        gamma = np.sign(st.sum(0))
        gamma[gamma == 0] = 1
        agree = np.sign(st) == gamma
        merged = lam * (st * agree).sum(0) / np.maximum(agree.sum(0), 1)
    out, off = {}, 0
    for n in names:
        size = base[n].size
        out[n] = (base[n] + merged[off : off + size].reshape(base[n].shape)).astype(np.float32)
        off += size
    return out


def merge_oracle():
    """Merges of each family's four fine-tunes on the ONNX initializers, scored by ONNX Runtime on digits_union_test."""
    ds = np.load(os.path.join(HERE, "data", "digits_union_test.npz"))
    x, y = ds["image"], ds["labels"]
    for fam in ("mlp", "cnn", "transformer"):
        d = os.path.join(HERE, "zoo", fam)
        bm = onnx.load(os.path.join(d, "base.onnx"))
        base = {i.name: numpy_helper.to_array(i) for i in bm.graph.initializer}
        fts = [{i.name: numpy_helper.to_array(i) for i in onnx.load(os.path.join(d, "ft_%s.onnx" % t)).graph.initializer} for t in ("low", "high", "shift", "flip")]

        def score(inits):
            m = onnx.ModelProto()
            m.CopyFrom(bm)
            for i in m.graph.initializer:
                if i.name in inits:
                    i.CopyFrom(numpy_helper.from_array(inits[i.name], i.name))
            s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
            return float((s.run(["logits"], {"image": x})[0].argmax(1) == y).mean())

        row = ["ft_%s=%.4f" % (t, score(f)) for t, f in zip(("low", "high", "shift", "flip"), fts)]
        row.append("linear=%.4f" % score(merged_initializers(base, fts, "linear")))
        for lam in (0.5, 1.0):
            row.append("task_arithmetic(l=%.1f)=%.4f" % (lam, score(merged_initializers(base, fts, "task_arithmetic", lam=lam))))
        for dens in (0.2, 0.5):
            row.append("ties(d=%.1f,l=1)=%.4f" % (dens, score(merged_initializers(base, fts, "ties", density=dens))))
        print("merge %-11s union accuracy: %s" % (fam, " ".join(row)))


def check_minilm():
    d = os.path.join(HERE, "minilm")
    path = os.path.join(d, "model.onnx")
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    ops = Counter(n.op_type for n in m.graph.node)
    params = sum(int(np.prod(i.dims)) for i in m.graph.initializer)
    feeds = dict(np.load(os.path.join(d, "text.npz")))
    gold = np.load(os.path.join(d, "golden.npz"))["sentence_embedding"]
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    out = np.concatenate([s.run(["sentence_embedding"], {k: v[i : i + 64] for k, v in feeds.items()})[0] for i in range(0, len(gold), 64)])
    err = float(np.abs(out - gold).max())
    cos = float((out * gold).sum(1).min() / 1.0)
    ok = err <= 1e-4
    print("%-4s minilm/model.onnx params=%d max_abs=%.2e min_cosine=%.7f ops=%s" % ("ok" if ok else "FAIL", params, err, cos, dict(sorted(ops.items()))))
    if not ok:
        sys.exit("check: minilm differs from PyTorch")


def check_lm():
    """The zoo LM: checker, ONNX Runtime against PyTorch's goldens, KV cache against the plain model, perplexity oracle against PyTorch."""
    import json

    sys.path.insert(0, os.path.join(HERE, "..", "tools"))
    from lm_perplexity import perplexity

    d = os.path.join(HERE, "zoo", "lm")
    man = json.load(open(os.path.join(d, "manifest.json")))
    arch = man["architecture"]
    layers, kvh, hd = arch["layers"], arch["kv_heads"], arch["head_dim"]
    bad = 0

    def report(ok, what, err):
        nonlocal bad
        bad += not ok
        print("%-4s %-44s max_abs=%.2e" % ("ok" if ok else "FAIL", what, err))

    base_inits = None
    for path in sorted(glob.glob(os.path.join(d, "*.onnx"))):
        m = onnx.load(path)
        onnx.checker.check_model(m, full_check=True)
        if os.path.basename(path) in ("base.onnx", "ft_fortunes.onnx", "ft_bible.onnx"):
            if base_inits is None:
                base_inits = inits(onnx.load(os.path.join(d, "base.onnx")))
            g = np.load(path[: -len(".onnx")] + ".golden.npz")
            s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            out = s.run(["logits"], {"input_ids": g["input_ids"], "attention_mask": g["attention_mask"]})[0]
            err = float(np.abs(out - g["logits"]).max())
            report(err <= TOL and inits(m) == base_inits, "lm/%s logits (same_inits=%s)" % (os.path.basename(path), inits(m) == base_inits), err)
    g = np.load(os.path.join(d, "base.golden.npz"))
    ids, mask, p = g["input_ids"], g["attention_mask"], int(g["prefix"])
    n = ids.shape[0]
    plain = g["logits"]
    empty = {"past_key_values.%d.%s" % (i, kv): np.zeros([n, kvh, 0, hd], np.float32) for i in range(layers) for kv in ("key", "value")}
    for name, extra0, extra1 in (
        ("base_kv.onnx", {}, {}),
        ("base_merged.onnx", {"use_cache_branch": np.array([False])}, {"use_cache_branch": np.array([True])}),
    ):
        s = ort.InferenceSession(os.path.join(d, name), providers=["CPUExecutionProvider"])
        outs = [o.name for o in s.get_outputs()]
        r0 = dict(zip(outs, s.run(outs, dict(empty, input_ids=ids[:, :p], attention_mask=mask[:, :p], **extra0))))
        err0 = float(np.abs(r0["logits"] - g["kv_prefix_logits"]).max())
        errp = max(float(np.abs(r0["present.%d.%s" % (i, kv)] - g["past_key_values.%d.%s" % (i, kv)]).max()) for i in range(layers) for kv in ("key", "value"))
        past = {"past_key_values.%d.%s" % (i, kv): r0["present.%d.%s" % (i, kv)] for i in range(layers) for kv in ("key", "value")}
        r1 = dict(zip(outs, s.run(outs, dict(past, input_ids=ids[:, p:], attention_mask=mask, **extra1))))
        err1 = float(np.abs(r1["logits"] - g["kv_logits"]).max())
        # The cache path against the plain model: prefix, then the rest with the cache, gives the plain logits
        # (compared where the mask is 1: a padded query's output is not defined the same way).
        full = np.concatenate([r0["logits"], r1["logits"]], axis=1)
        m3 = mask.astype(bool)
        errplain = float(np.abs(full - plain)[m3].max())
        shape_ok = r1["present.0.key"].shape == (n, kvh, ids.shape[1], hd)
        report(err0 <= TOL and errp <= TOL, "lm/%s empty past vs PyTorch (logits, present)" % name, max(err0, errp))
        report(err1 <= TOL and shape_ok, "lm/%s with past vs PyTorch (present %s)" % (name, r1["present.0.key"].shape), err1)
        report(errplain <= TOL, "lm/%s prefix+cache vs plain logits" % name, errplain)
    # The oracle's perplexity (ONNX Runtime + numpy) against PyTorch's, on every corpus's test set.
    for model, row in sorted(man["test_perplexity"].items()):
        if model == "unigram":
            continue
        for corpus, want in sorted(row.items()):
            got = perplexity(os.path.join(d, model + ".onnx"), os.path.join(HERE, "data", "lm_%s_test.npz" % corpus))[0]
            ok = abs(got - want) <= 1e-3 * want
            bad += not ok
            print("%-4s lm/%s.onnx on lm_%s_test perplexity %.3f (PyTorch %.3f)" % ("ok" if ok else "FAIL", model, corpus, got, want))
    got = perplexity(os.path.join(d, "base_kv.onnx"), os.path.join(HERE, "data", "lm_pydoc_test.npz"))[0]
    want = man["test_perplexity"]["base"]["pydoc"]
    ok = abs(got - want) <= 1e-3 * want
    bad += not ok
    print("%-4s lm/base_kv.onnx (empty past) on lm_pydoc_test perplexity %.3f (PyTorch %.3f)" % ("ok" if ok else "FAIL", got, want))
    bad += check_textwindows(os.path.join(d, "base.onnx"))
    if bad:
        sys.exit("check: %d LM failures" % bad)


def check_textwindows(model):
    """tools/textwindows.py: the tokenizer round-trips any bytes; labels without overlap change nothing; with overlap each token counts once."""
    import tempfile

    from lm_perplexity import perplexity
    from textwindows import Tokenizer, split_documents, windows

    bad = 0
    tok = Tokenizer.load()
    text = open("/usr/share/common-licenses/GPL-3", "rb").read()[:6000] + "\n%\nnaïve café — ünïcödé, tabs\there\r\n%\n\n".encode() + bytes(range(256))
    ok = tok.decode(tok.encode(text)) == text
    bad += not ok
    print("%-4s textwindows: decode(encode(x)) == x on %d bytes (%d tokens)" % ("ok" if ok else "FAIL", len(text), len(tok.encode(text))))
    docs = [tok.encode(x) + [tok.eot_id] for x in split_documents(text, "%")]
    real = sum(len(x) - 1 for x in docs if len(x) >= 2)  # targets: every token but each document's first
    with tempfile.TemporaryDirectory() as tmp:
        res, pairs = {}, {}
        for name, stride, labels in (("plain", 64, False), ("labels", 64, True), ("overlap", 40, True)):
            p = os.path.join(tmp, name + ".npz")
            w = windows(docs, 64, stride, True, tok.pad_id, 0, labels)
            np.savez(p, **w)
            res[name] = perplexity(model, p)
            pairs[name] = int((w["attention_mask"][:, :-1] * w["attention_mask"][:, 1:]).sum())
    # Without overlap a window's first token is no target (its predecessor is in the previous window).
    ok = abs(res["plain"][0] - res["labels"][0]) <= 1e-9 * res["plain"][0] and res["plain"][2] == res["labels"][2] == pairs["plain"] < real
    bad += not ok
    print("%-4s textwindows: labels without overlap give the same perplexity (%.4f, %d of the text's %d targets)" % ("ok" if ok else "FAIL", res["labels"][0], res["labels"][2], real))
    ok = res["overlap"][2] == real
    bad += not ok
    print("%-4s textwindows: stride 40 of 64 with labels scores each token once (%d tokens, perplexity %.4f)" % ("ok" if ok else "FAIL", res["overlap"][2], res["overlap"][0]))
    return bad


def main():
    if sys.argv[1:] == ["--lm"]:
        return check_lm()
    if sys.argv[1:] == ["--minilm"]:
        return check_minilm()
    if sys.argv[1:] == ["--merge"]:
        return merge_oracle()
    ds = np.load(os.path.join(HERE, "data", "digits_clean_test.npz"))
    x, y = ds["image"], ds["labels"]
    bad = 0
    for fam in sorted(os.listdir(os.path.join(HERE, "zoo"))):
        d = os.path.join(HERE, "zoo", fam)
        if not os.path.isdir(d) or fam == "lm":  # the LM has its own check (--lm)
            continue
        base = onnx.load(os.path.join(d, "base.onnx"))
        for path in sorted(glob.glob(os.path.join(d, "*.onnx"))):
            m = onnx.load(path)
            onnx.checker.check_model(m, full_check=True)
            s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            out = s.run(["logits"], {"image": x})[0]
            g = np.load(path[: -len(".onnx")] + ".golden.npz")
            err = float(np.abs(out - g["logits"]).max())
            acc = float((out.argmax(1) == y).mean())
            same = inits(m) == inits(base)
            ops = Counter(n.op_type for n in m.graph.node)
            ok = err <= TOL and abs(acc - float(g["accuracy"])) < 1e-9 and same
            bad += not ok
            print("%-4s %-28s max_abs=%.2e acc=%.4f same_inits=%s ops=%s" % ("ok" if ok else "FAIL", os.path.relpath(path, HERE), err, acc, same, dict(sorted(ops.items()))))
    td = os.path.join(HERE, "zoo", "mlp", "test_data", "test_data_set_0")
    tin = onnx.TensorProto()
    tin.ParseFromString(open(os.path.join(td, "input_0.pb"), "rb").read())
    tout = onnx.TensorProto()
    tout.ParseFromString(open(os.path.join(td, "output_0.pb"), "rb").read())
    s = ort.InferenceSession(os.path.join(HERE, "zoo", "mlp", "base.onnx"), providers=["CPUExecutionProvider"])
    err = float(np.abs(s.run(None, {tin.name: numpy_helper.to_array(tin)})[0] - numpy_helper.to_array(tout)).max())
    print("%-4s test_data_set_0 %s->%s max_abs=%.2e" % ("ok" if err <= TOL else "FAIL", tin.name, tout.name, err))
    bad += err > TOL
    if bad:
        sys.exit("check: %d failures" % bad)


if __name__ == "__main__":
    main()
