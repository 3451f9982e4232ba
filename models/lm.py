#!/usr/bin/env python3
"""Generate the zoo language model: a small Llama-architecture decoder, its two fine-tunes, datasets, goldens.

Run through models/lm.sh (`make zoo-lm`, also part of `make zoo`) with
Debian's PyTorch and onnx (/usr/bin/python3, python3-torch 1.13,
python3-onnx 1.12). Corpora come from Debian packages (python3.11-doc,
fortunes, bible-kjv). Bit-for-bit reproducible: fixed seeds, one thread,
deterministic algorithms, no dict-order or hash dependence.

Outputs (paths relative to models/):
  zoo/lm/tokenizer.json            byte-level BPE (tools/textwindows.py reads it)
  zoo/lm/base.onnx                 input_ids, attention_mask [batch,sequence] -> logits [batch,sequence,vocab]
  zoo/lm/base_kv.onnx              + past_key_values.<i>.key/value [batch,kv_heads,past,head_dim] -> + present.<i>.key/value
  zoo/lm/base_merged.onnx          base_kv with an If on use_cache_branch (Optimum's merged decoder layout)
  zoo/lm/ft_fortunes.onnx, ft_bible.onnx   plain fine-tunes of base
  zoo/lm/<name>.golden.npz         PyTorch logits on a few windows (base: also the KV-cache split)
  zoo/lm/manifest.json             architecture, corpora, training, perplexities
  data/lm_<corpus>_{calib,test}.npz   input_ids, attention_mask int64 [N,64] (held-out documents)
"""

import glob
import json
import math
import os
import re
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from textwindows import PATTERN, Tokenizer, split_documents, windows  # noqa: E402

DATA = os.path.join(HERE, "data")
OUT = os.path.join(HERE, "zoo", "lm")
SEED = 0
OPSET = 17

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

# ---------------------------------------------------------------- configuration

VOCAB = 512  # 256 bytes + 255 merges + end-of-text
D, LAYERS, HEADS, KV_HEADS, FF = 128, 4, 4, 2, 256
HEAD_DIM = D // HEADS
ROPE_BASE = 10000.0
EPS = 1e-5
TRAIN_SEQ, BATCH = 128, 16
PRETRAIN = dict(steps=1000, lr=3e-3, warmup=100, min_lr_frac=0.1, weight_decay=0.1)
FINETUNE = dict(steps=150, lr=1e-3, warmup=20, min_lr_frac=0.1, weight_decay=0.1)
if os.environ.get("LM_STEPS"):  # development only: "PRETRAIN,FINETUNE" steps for a quick trial run
    PRETRAIN["steps"], FINETUNE["steps"] = (int(x) for x in os.environ["LM_STEPS"].split(","))
DATA_SEQ, DATA_WINDOWS = 64, 256
GOLDEN_WINDOWS, GOLDEN_SEQ, GOLDEN_PREFIX = 2, 32, 20

PYDOC = "/usr/share/doc/python3.11/html/_sources"
FORTUNES = "/usr/share/games/fortunes"


# ---------------------------------------------------------------- corpora


def pkg_version(pkg):
    return subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], check=True, capture_output=True, text=True).stdout


def corpus_pydoc():
    """The Python 3.11 documentation's reStructuredText sources (tutorial, library, reference, howto, faq, ...), one document per file."""
    files = sorted(glob.glob(os.path.join(PYDOC, "**", "*.rst.txt"), recursive=True))
    files = [f for f in files if "/whatsnew/" not in f]  # changelogs: issue numbers and names rather than prose
    docs = []
    for f in files:
        with open(f, "rb") as fh:
            docs.append(fh.read())
    return docs


def corpus_fortunes():
    """The `fortunes` package's cookie files (not the offensive ones), one document per fortune."""
    docs = []
    for f in sorted(os.listdir(FORTUNES)):
        p = os.path.join(FORTUNES, f)
        if f.endswith((".dat", ".u8")) or os.path.islink(p) or not os.path.isfile(p):
            continue
        with open(p, "rb") as fh:
            docs.extend(split_documents(fh.read(), "%"))
    return docs


def corpus_bible():
    """The King James Bible from bible-kjv (`bible Gen1:1-Rev22:21`), one document per chapter, verse numbers removed."""
    txt = subprocess.run(["bible", "-l80", "Gen1:1-Rev22:21"], check=True, capture_output=True, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}).stdout
    docs, cur = [], []
    for line in txt.split(b"\n"):
        if re.fullmatch(rb"[1-3]? ?[A-Z][A-Za-z ]+ [0-9]+", line.strip()):  # chapter heading, e.g. "Genesis 1"
            if cur:
                docs.append(b" ".join(cur).strip() + b"\n")
            cur = []
        elif line.strip():
            cur.append(re.sub(rb"^\s*[0-9]+ ", b"", line).strip())
    if cur:
        docs.append(b" ".join(cur).strip() + b"\n")
    return docs


CORPORA = {
    "pydoc": (corpus_pydoc, "python3.11-doc", "Python 3.11 documentation sources (technical prose, reStructuredText)"),
    "fortunes": (corpus_fortunes, "fortunes", "fortune cookies: quotations, jokes, short prose"),
    "bible": (corpus_bible, "bible-kjv-text", "King James Bible (via the bible-kjv program), verse numbers removed"),
}


def split_docs(docs):
    """Held-out split by document index: i % 20 == 0 -> test, == 1 -> calib, else train."""
    out = {"train": [], "calib": [], "test": []}
    for i, d in enumerate(docs):
        out["test" if i % 20 == 0 else "calib" if i % 20 == 1 else "train"].append(d)
    return out


# ---------------------------------------------------------------- tokenizer


def train_bpe(docs, n_merges):
    """Byte-level BPE merges learned from word counts; ties broken by the smallest pair, so the result is deterministic."""
    rx = re.compile(PATTERN)
    counts = {}
    for d in docs:
        for w in rx.findall(d):
            counts[w] = counts.get(w, 0) + 1
    words = [list(w) for w in sorted(counts)]
    freq = [counts[w] for w in sorted(counts)]
    pairs, where = {}, {}
    for wi, ids in enumerate(words):
        for p in zip(ids, ids[1:]):
            pairs[p] = pairs.get(p, 0) + freq[wi]
            where.setdefault(p, set()).add(wi)
    merges = []
    for m in range(n_merges):
        best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        new = 256 + m
        merges.append(best)
        for wi in sorted(where.pop(best)):
            ids = words[wi]
            for p in zip(ids, ids[1:]):
                pairs[p] -= freq[wi]
            out, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and ids[i] == best[0] and ids[i + 1] == best[1]:
                    out.append(new)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            words[wi] = out
            for p in zip(out, out[1:]):
                pairs[p] = pairs.get(p, 0) + freq[wi]
                where.setdefault(p, set()).add(wi)
        pairs = {p: c for p, c in pairs.items() if c > 0}
    return merges


# ---------------------------------------------------------------- model


class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * self.weight


def lin(n_in, n_out):
    """A bias-free linear weight stored [in, out] (exports as MatMul(x, weight) under the parameter's own name)."""
    ref = nn.Linear(n_in, n_out, bias=False)  # PyTorch's default initialization
    return nn.Parameter(ref.weight.detach().t().contiguous())


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = nn.Module()
        self.q_proj.weight = lin(D, HEADS * HEAD_DIM)
        self.k_proj = nn.Module()
        self.k_proj.weight = lin(D, KV_HEADS * HEAD_DIM)
        self.v_proj = nn.Module()
        self.v_proj.weight = lin(D, KV_HEADS * HEAD_DIM)
        self.o_proj = nn.Module()
        self.o_proj.weight = lin(HEADS * HEAD_DIM, D)

    def forward(self, x, cos, sin, allowed, past):
        n, t = x.shape[0], x.shape[1]
        q = torch.matmul(x, self.q_proj.weight).reshape(n, t, HEADS, HEAD_DIM).transpose(1, 2)
        k = torch.matmul(x, self.k_proj.weight).reshape(n, t, KV_HEADS, HEAD_DIM).transpose(1, 2)
        v = torch.matmul(x, self.v_proj.weight).reshape(n, t, KV_HEADS, HEAD_DIM).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        present = (k, v)
        g = HEADS // KV_HEADS
        kr = k.unsqueeze(2).expand(n, KV_HEADS, g, k.shape[2], HEAD_DIM).reshape(n, HEADS, k.shape[2], HEAD_DIM)
        vr = v.unsqueeze(2).expand(n, KV_HEADS, g, v.shape[2], HEAD_DIM).reshape(n, HEADS, v.shape[2], HEAD_DIM)
        s = torch.matmul(q, kr.transpose(2, 3)) * (1.0 / math.sqrt(HEAD_DIM))
        s = s.masked_fill(~allowed, -1e4)
        a = torch.matmul(torch.softmax(s, dim=-1), vr)
        return torch.matmul(a.transpose(1, 2).reshape(n, t, HEADS * HEAD_DIM), self.o_proj.weight), present


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        for name, (i, o) in (("gate_proj", (D, FF)), ("up_proj", (D, FF)), ("down_proj", (FF, D))):
            m = nn.Module()
            m.weight = lin(i, o)
            setattr(self, name, m)

    def forward(self, x):
        return torch.matmul(F.silu(torch.matmul(x, self.gate_proj.weight)) * torch.matmul(x, self.up_proj.weight), self.down_proj.weight)


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_layernorm = RMSNorm(D)
        self.self_attn = Attention()
        self.post_attention_layernorm = RMSNorm(D)
        self.mlp = MLP()

    def forward(self, x, cos, sin, allowed, past):
        h, present = self.self_attn(self.input_layernorm(x), cos, sin, allowed, past)
        x = x + h
        return x + self.mlp(self.post_attention_layernorm(x)), present


class Decoder(nn.Module):
    """Llama-style decoder: token embedding, pre-norm layers (RMSNorm, RoPE, grouped-query attention, SwiGLU), RMSNorm, LM head."""

    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, D)
        self.layers = nn.ModuleList([Layer() for _ in range(LAYERS)])
        self.norm = RMSNorm(D)
        self.lm_head = nn.Module()
        self.lm_head.weight = lin(D, VOCAB)
        self.register_buffer("inv_freq", 1.0 / ROPE_BASE ** (torch.arange(0, HEAD_DIM, 2, dtype=torch.float32) / HEAD_DIM), persistent=False)

    # What forward returns, for torch.onnx.export (the parameters keep their
    # names only when the exported module is the Decoder itself):
    # "plain": logits; "past": logits and the presents, past inputs after the
    # mask; "nopast": logits and the presents, no past inputs.
    export_mode = "plain"

    def forward(self, input_ids, attention_mask, *past):
        if self.export_mode == "plain":
            return self.run(input_ids, attention_mask)[0]
        pk = [(past[2 * i], past[2 * i + 1]) for i in range(LAYERS)] if self.export_mode == "past" else None
        logits, presents = self.run(input_ids, attention_mask, pk)
        return (logits,) + tuple(x for kv in presents for x in kv)

    def run(self, input_ids, attention_mask, past=None):
        """input_ids [N,T]; attention_mask [N,P+T] over past and current tokens; past: per layer (key, value) [N,KV,P,hd] or None.

        Positions are cumsum(attention_mask) - 1 (as Hugging Face's generate
        derives them), so right padding leaves the real tokens at 0..L-1.
        A key is visible to a query when it is not after it and its mask is 1.
        """
        t = input_ids.shape[1]
        s = attention_mask.shape[1]
        pos = (torch.cumsum(attention_mask, dim=1) - 1).clamp(min=0)[:, s - t :]
        ang = pos.unsqueeze(-1).to(torch.float32) * self.inv_freq
        ang = torch.cat([ang, ang], dim=-1).unsqueeze(1)  # [N,1,T,hd]
        cos, sin = torch.cos(ang), torch.sin(ang)
        qi = torch.arange(t, device=input_ids.device) + (s - t)
        ki = torch.arange(s, device=input_ids.device)
        causal = ki.unsqueeze(0) <= qi.unsqueeze(1)  # [T,S]
        allowed = causal.unsqueeze(0).unsqueeze(0) & (attention_mask.unsqueeze(1).unsqueeze(1) > 0)  # [N,1,T,S]
        x = self.embed_tokens(input_ids)
        presents = []
        for i, layer in enumerate(self.layers):
            x, pr = layer(x, cos, sin, allowed, None if past is None else past[i])
            presents.append(pr)
        return torch.matmul(self.norm(x), self.lm_head.weight), presents


def n_params(m):
    return int(sum(p.numel() for p in m.parameters()))


# ---------------------------------------------------------------- training


def train(model, stream, cfg, seed):
    """AdamW on random windows of a token stream; linear warmup then cosine decay to min_lr_frac."""
    g = torch.Generator().manual_seed(seed)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    keep = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]}, {"params": keep, "weight_decay": 0.0}], lr=cfg["lr"], betas=(0.9, 0.95))
    data = torch.from_numpy(stream)
    mask = torch.ones(BATCH, TRAIN_SEQ, dtype=torch.int64)
    model.train()
    t0 = time.time()
    for step in range(cfg["steps"]):
        if step < cfg["warmup"]:
            lr = cfg["lr"] * (step + 1) / cfg["warmup"]
        else:
            f = (step - cfg["warmup"]) / max(1, cfg["steps"] - cfg["warmup"])
            lr = cfg["lr"] * (cfg["min_lr_frac"] + (1 - cfg["min_lr_frac"]) * 0.5 * (1 + math.cos(math.pi * f)))
        for grp in opt.param_groups:
            grp["lr"] = lr
        starts = torch.randint(0, len(data) - TRAIN_SEQ - 1, (BATCH,), generator=g)
        idx = starts.unsqueeze(1) + torch.arange(TRAIN_SEQ + 1)
        b = data[idx]
        logits, _ = model.run(b[:, :-1], mask)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), b[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 100 == 0 or step == cfg["steps"] - 1:
            print("  step %4d lr %.2e loss %.3f (%.0f s)" % (step, lr, loss.item(), time.time() - t0), flush=True)
    model.eval()
    return model


@torch.no_grad()
def perplexity(model, ds):
    """Masked next-token perplexity: logits at t predict t+1; counts where mask[t] and mask[t+1] are 1."""
    ids, mask = torch.from_numpy(ds["input_ids"]), torch.from_numpy(ds["attention_mask"])
    nll, n = 0.0, 0
    for i in range(0, len(ids), 64):
        lg = model.run(ids[i : i + 64], mask[i : i + 64])[0].double()
        lp = torch.log_softmax(lg[:, :-1], dim=-1).gather(-1, ids[i : i + 64, 1:].unsqueeze(-1)).squeeze(-1)
        w = (mask[i : i + 64, :-1] * mask[i : i + 64, 1:]).bool()
        nll -= float(lp[w].sum())
        n += int(w.sum())
    return math.exp(nll / n)


def unigram_perplexity(train_stream, ds):
    """Perplexity of the add-one unigram model of a training stream on the same positions as perplexity()."""
    c = np.bincount(train_stream, minlength=VOCAB).astype(np.float64) + 1.0
    lp = np.log(c / c.sum())
    ids, mask = ds["input_ids"], ds["attention_mask"]
    w = (mask[:, :-1] * mask[:, 1:]).astype(bool)
    return math.exp(-float(lp[ids[:, 1:]][w].mean()))


# ---------------------------------------------------------------- export


def past_names():
    return [n for i in range(LAYERS) for n in ("past_key_values.%d.key" % i, "past_key_values.%d.value" % i)]


def present_names():
    return [n for i in range(LAYERS) for n in ("present.%d.key" % i, "present.%d.value" % i)]


def export(wrapper, args, path, inputs, outputs):
    dyn = {}
    for n in inputs:
        if n == "attention_mask":
            dyn[n] = {0: "batch", 1: "past_sequence+sequence" if len(inputs) > 2 else "sequence"}
        elif n.startswith("past_"):
            dyn[n] = {0: "batch", 2: "past_sequence"}
        else:
            dyn[n] = {0: "batch", 1: "sequence"}
    for n in outputs:
        dyn[n] = {0: "batch", 1: "sequence"} if n == "logits" else {0: "batch", 2: "past_sequence+sequence"}
    torch.onnx.export(
        wrapper,
        args,
        path,
        opset_version=OPSET,
        input_names=inputs,
        output_names=outputs,
        dynamic_axes=dyn,
        do_constant_folding=True,
        training=torch.onnx.TrainingMode.EVAL,
    )


def merged_decoder(nopast_path, past_path, out_path):
    """Optimum's merged decoder: one graph whose If on `use_cache_branch` runs the with-past or the no-past decoder.

    The weights (initializers with the same name and value in both graphs)
    live once in the outer graph; each branch keeps its own other
    initializers and intermediate names under a prefix. The past inputs are
    always graph inputs; the no-past branch ignores them.
    """
    import onnx
    from onnx import helper, numpy_helper

    a, b = onnx.load(nopast_path), onnx.load(past_path)
    ia = {i.name: i for i in a.graph.initializer}
    ib = {i.name: i for i in b.graph.initializer}
    shared = [n for n in ib if n in ia and numpy_helper.to_array(ia[n]).tobytes() == numpy_helper.to_array(ib[n]).tobytes() and ia[n].data_type == ib[n].data_type and list(ia[n].dims) == list(ib[n].dims)]
    shared_set = set(shared)
    outer_inputs = {i.name for i in b.graph.input}

    def branch(g, prefix, name):
        keep = outer_inputs | shared_set
        ren = {}
        for n in g.node:
            for o in n.output:
                if o and o not in keep:
                    ren[o] = prefix + o
        for i in g.initializer:
            if i.name not in shared_set:
                ren[i.name] = prefix + i.name
        nodes = []
        for k, n in enumerate(g.node):
            m = onnx.NodeProto()
            m.CopyFrom(n)
            m.name = prefix + (n.name or "%s_%d" % (n.op_type, k))
            m.input[:] = [ren.get(x, x) for x in n.input]
            m.output[:] = [ren.get(x, x) for x in n.output]
            nodes.append(m)
        inits = []
        for i in g.initializer:
            if i.name not in shared_set:
                j = onnx.TensorProto()
                j.CopyFrom(i)
                j.name = ren[i.name]
                inits.append(j)
        # Branch outputs are the renamed graph outputs, in the with-past graph's order.
        outs = []
        for o in b.graph.output:
            v = onnx.ValueInfoProto()
            v.CopyFrom(next(x for x in g.output if x.name == o.name))
            v.name = ren.get(o.name, o.name)
            outs.append(v)
        return helper.make_graph(nodes, name, [], outs, initializer=inits)

    then_g = branch(b.graph, "with_past/", "with_past")
    else_g = branch(a.graph, "no_past/", "no_past")
    use = helper.make_tensor_value_info("use_cache_branch", onnx.TensorProto.BOOL, [1])
    cond = helper.make_node("Squeeze", ["use_cache_branch"], ["use_cache_branch_scalar"], name="squeeze_use_cache_branch")
    node = helper.make_node("If", ["use_cache_branch_scalar"], [o.name for o in b.graph.output], name="optimum::if", then_branch=then_g, else_branch=else_g)
    outs = []
    for o in b.graph.output:
        v = onnx.ValueInfoProto()
        v.CopyFrom(o)
        outs.append(v)
    g = helper.make_graph([cond, node], "merged_decoder", list(b.graph.input) + [use], outs, initializer=[ib[n] for n in shared])
    m = helper.make_model(g, opset_imports=list(b.opset_import), producer_name="onnxpost models/lm.py")
    m.ir_version = b.ir_version
    onnx.checker.check_model(m)
    onnx.save(m, out_path)


# ---------------------------------------------------------------- main


def main():
    t_start = time.time()
    os.makedirs(DATA, exist_ok=True)
    os.makedirs(OUT, exist_ok=True)
    corpora = {}
    for name, (fn, pkg, desc) in CORPORA.items():
        docs = fn()
        corpora[name] = split_docs(docs)
        print("corpus %s: %d documents, %d bytes (%s %s)" % (name, len(docs), sum(len(d) for d in docs), pkg, pkg_version(pkg)), flush=True)

    tok = Tokenizer(train_bpe(corpora["pydoc"]["train"], VOCAB - 257))
    assert tok.vocab_size == VOCAB
    with open(os.path.join(OUT, "tokenizer.json"), "w") as f:
        json.dump(tok.to_json(), f, separators=(",", ":"))
        f.write("\n")
    print("tokenizer: %d merges (%.0f s)" % (len(tok.merges), time.time() - t_start), flush=True)

    streams, sets, info = {}, {}, {}
    for name, parts in corpora.items():
        enc = {s: [tok.encode(d) + [tok.eot_id] for d in docs] for s, docs in parts.items()}
        streams[name] = np.asarray([i for d in enc["train"] for i in d], dtype=np.int64)
        for s in ("calib", "test"):
            ds = windows(enc[s], DATA_SEQ, DATA_SEQ, True, tok.pad_id, DATA_WINDOWS)
            np.savez(os.path.join(DATA, "lm_%s_%s.npz" % (name, s)), **ds)
            sets[(name, s)] = ds
        nbytes = sum(len(d) for d in parts["train"])
        info[name] = {
            "package": CORPORA[name][1],
            "version": pkg_version(CORPORA[name][1]),
            "description": CORPORA[name][2],
            "documents": {s: len(d) for s, d in parts.items()},
            "train_tokens": int(len(streams[name])),
            "train_bytes_per_token": round(nbytes / len(streams[name]), 3),
            "datasets": {s: {"windows": int(len(sets[(name, s)]["input_ids"])), "padded_windows": int((sets[(name, s)]["attention_mask"][:, -1] == 0).sum())} for s in ("calib", "test")},
        }
        print("corpus %s: %s" % (name, json.dumps(info[name])), flush=True)

    torch.manual_seed(SEED)
    base = Decoder()
    print("pretraining on pydoc: %d parameters" % n_params(base), flush=True)
    train(base, streams["pydoc"], PRETRAIN, SEED)
    models = {"base": base}
    for i, name in enumerate(("fortunes", "bible")):
        m = Decoder()
        m.load_state_dict(base.state_dict())
        print("fine-tuning on %s" % name, flush=True)
        models["ft_" + name] = train(m, streams[name], FINETUNE, SEED + 1 + i)

    ppl = {"unigram": {c: round(unigram_perplexity(streams[c], sets[(c, "test")]), 3) for c in CORPORA}}
    for n, m in models.items():
        ppl[n] = {c: round(perplexity(m, sets[(c, "test")]), 3) for c in CORPORA}
    print("test perplexity:", json.dumps(ppl), flush=True)

    # Golden windows: the first GOLDEN_WINDOWS test windows of pydoc, the second cut short (padded) to exercise the mask.
    g_ids = sets[("pydoc", "test")]["input_ids"][:GOLDEN_WINDOWS, :GOLDEN_SEQ].copy()
    g_mask = np.ones_like(g_ids)
    g_mask[1, GOLDEN_SEQ - 5 :] = 0
    g_ids[1, GOLDEN_SEQ - 5 :] = tok.pad_id
    ti, tm = torch.from_numpy(g_ids), torch.from_numpy(g_mask)
    files = {}
    with torch.no_grad():
        for n, m in models.items():
            path = os.path.join(OUT, n + ".onnx")
            m.export_mode = "plain"
            export(m, (ti, tm), path, ["input_ids", "attention_mask"], ["logits"])
            gold = {"input_ids": g_ids, "attention_mask": g_mask, "logits": m.run(ti, tm)[0].numpy()}
            if n == "base":
                # KV cache: the prefix through the no-past decoder, the rest with its presents as past.
                lg0, pres = m.run(ti[:, :GOLDEN_PREFIX], tm[:, :GOLDEN_PREFIX])
                lg1, _ = m.run(ti[:, GOLDEN_PREFIX:], tm, pres)
                gold["prefix"] = np.int64(GOLDEN_PREFIX)
                gold["kv_prefix_logits"] = lg0.numpy()
                gold["kv_logits"] = lg1.numpy()
                for i, (k, v) in enumerate(pres):
                    gold["past_key_values.%d.key" % i] = k.numpy()
                    gold["past_key_values.%d.value" % i] = v.numpy()
                past = tuple(x for kv in pres for x in kv)
                kv_path = os.path.join(OUT, "base_kv.onnx")
                m.export_mode = "past"
                export(m, (ti[:, GOLDEN_PREFIX:], tm) + past, kv_path, ["input_ids", "attention_mask"] + past_names(), ["logits"] + present_names())
                nopast = os.path.join(OUT, "base_nopast.tmp.onnx")
                m.export_mode = "nopast"
                export(m, (ti, tm), nopast, ["input_ids", "attention_mask"], ["logits"] + present_names())
                merged_decoder(nopast, kv_path, os.path.join(OUT, "base_merged.onnx"))
                os.remove(nopast)
                m.export_mode = "plain"
            np.savez(os.path.join(OUT, n + ".golden.npz"), **gold)
    for f in sorted(os.listdir(OUT)):
        files[f] = os.path.getsize(os.path.join(OUT, f))

    manifest = {
        "architecture": {
            "type": "llama-style decoder",
            "vocab_size": VOCAB,
            "hidden": D,
            "layers": LAYERS,
            "heads": HEADS,
            "kv_heads": KV_HEADS,
            "head_dim": HEAD_DIM,
            "ffn_hidden": FF,
            "rope_base": ROPE_BASE,
            "rms_eps": EPS,
            "params": n_params(base),
            "tied_embeddings": False,
        },
        "tokenizer": "byte-level BPE, %d merges learned on pydoc's training split (tokenizer.json)" % len(tok.merges),
        "opset": OPSET,
        "corpora": info,
        "split": "by document index: i%20==0 test, i%20==1 calib, else train",
        "training": {"seq": TRAIN_SEQ, "batch": BATCH, "pretrain": dict(PRETRAIN, corpus="pydoc"), "finetune": FINETUNE, "optimizer": "AdamW betas (0.9,0.95), grad clip 1.0, linear warmup + cosine"},
        "datasets": {"seq": DATA_SEQ, "max_windows": DATA_WINDOWS, "stride": DATA_SEQ, "pad": True},
        "test_perplexity": ppl,
        "files": files,
    }
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    print("done in %.0f s" % (time.time() - t_start), flush=True)


if __name__ == "__main__":
    main()
