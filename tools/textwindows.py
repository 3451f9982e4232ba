#!/usr/bin/env python3
"""Turn a text file into fixed-length token windows (.npz) for onnxpost's language models.

The tokenizer is the zoo LM's byte-level BPE (models/zoo/lm/tokenizer.json,
written by models/lm.py): the text's bytes are split into pre-tokens by a
regular expression (letters with an optional leading space, digits,
punctuation and other bytes, whitespace), then each pre-token's bytes are
merged by the BPE merge list in rank order. Every byte sequence encodes; ids
0..255 are the bytes themselves, 256.. the merges, the last id is the
end-of-text token (also used as padding).

The text is cut into documents (the whole file, or the pieces between lines
matching --split), each document ends with the end-of-text token, and each
document is cut into windows of --seq tokens every --stride tokens (windows
never cross documents). A document's last, shorter window is padded at the
end (attention_mask 0, input id = the pad id) with --pad, dropped otherwise.
--max-windows keeps that many windows spread evenly over the file.

Output (np.savez, uncompressed):
  input_ids       int64 [N, seq]
  attention_mask  int64 [N, seq]   1 for real tokens, 0 for padding
  labels          int64 [N, seq]   with --labels: input_ids, -100 where the
                                   mask is 0 and, for overlapping windows
                                   (stride < seq), on the tokens an earlier
                                   window of the same document already
                                   scored, so that each token counts once
                                   (when --max-windows drops that earlier
                                   window, those tokens count nowhere)

Perplexity convention (tools/lm_perplexity.py): the logits at position t
predict token t+1; a position counts when mask[t] and mask[t+1] are 1 and
labels[t+1] is not -100.

  python3 tools/textwindows.py --seq 64 --stride 64 --pad --max-windows 256 \\
      notes.txt notes.npz
Needs only numpy.
"""

import argparse
import json
import os
import re
import sys

import numpy as np

DEFAULT_TOKENIZER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "zoo", "lm", "tokenizer.json")
FORMAT = "onnxpost-byte-bpe-1"
# Pre-tokenization on bytes: contractions, words with one optional leading
# space, numbers, runs of other non-space bytes (punctuation, UTF-8 bytes),
# whitespace not followed by a non-space, whitespace.
PATTERN = rb"'(?:s|t|re|ve|m|ll|d)| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+"


class Tokenizer:
    """Byte-level BPE: 256 byte ids, one id per merge (256 + rank), then the end-of-text id."""

    def __init__(self, merges, pattern=PATTERN):
        self.merges = [tuple(m) for m in merges]
        self.ranks = {m: i for i, m in enumerate(self.merges)}
        self.pattern = re.compile(pattern)
        self.eot_id = 256 + len(self.merges)
        self.pad_id = self.eot_id
        self.vocab_size = self.eot_id + 1
        self._cache = {}

    @classmethod
    def load(cls, path=DEFAULT_TOKENIZER):
        with open(path) as f:
            d = json.load(f)
        if d.get("format") != FORMAT:
            raise ValueError("%s: not an %s tokenizer file" % (path, FORMAT))
        t = cls(d["merges"], d["pattern"].encode("latin-1"))
        if t.vocab_size != d["vocab_size"] or t.eot_id != d["eot_id"]:
            raise ValueError("%s: vocab_size/eot_id do not match the merge list" % path)
        return t

    def to_json(self):
        return {
            "format": FORMAT,
            "pattern": self.pattern.pattern.decode("latin-1"),
            "vocab_size": self.vocab_size,
            "eot_id": self.eot_id,
            "pad_id": self.pad_id,
            "merges": [list(m) for m in self.merges],
        }

    def _word(self, w):
        ids = self._cache.get(w)
        if ids is not None:
            return ids
        ids = list(w)
        while len(ids) > 1:
            best, rank = None, None
            for p in zip(ids, ids[1:]):
                r = self.ranks.get(p)
                if r is not None and (rank is None or r < rank):
                    best, rank = p, r
            if best is None:
                break
            out, i, new = [], 0, 256 + rank
            while i < len(ids):
                if i + 1 < len(ids) and ids[i] == best[0] and ids[i + 1] == best[1]:
                    out.append(new)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            ids = out
        self._cache[w] = ids
        return ids

    def encode(self, data):
        """Token ids of a bytes object."""
        out = []
        for w in self.pattern.findall(data):
            out.extend(self._word(w))
        return out

    def decode(self, ids):
        """Bytes of token ids (the end-of-text id decodes to nothing)."""
        table = [bytes([i]) for i in range(256)]
        for a, b in self.merges:
            table.append(table[a] + table[b])
        return b"".join(table[i] for i in ids if i < len(table))


def split_documents(data, split=None):
    """The documents of a file's bytes: the whole file, or the non-empty pieces between lines matching the regex `split`."""
    if split is None:
        return [data] if data.strip() else []
    rx = re.compile(split.encode())
    docs, cur = [], []
    for line in data.splitlines(keepends=True):
        if rx.fullmatch(line.rstrip(b"\r\n")):
            docs.append(b"".join(cur))
            cur = []
        else:
            cur.append(line)
    docs.append(b"".join(cur))
    return [d for d in docs if d.strip()]


def windows(docs, seq, stride, pad, pad_id, max_windows=0, labels=False):
    """Cut token-id documents (each already ending with end-of-text) into windows; returns a dict of int64 arrays."""
    if seq < 2 or stride < 1 or stride > seq:
        raise ValueError("need seq >= 2 and 1 <= stride <= seq (got seq=%d stride=%d)" % (seq, stride))
    ids, mask, lab = [], [], []
    for doc in docs:
        start = 0
        scored = 0  # tokens of this document already scored by an earlier window
        while start < len(doc):
            w = doc[start : start + seq]
            if len(w) < seq and not pad:
                break
            if len(w) >= 2:
                n = len(w)
                ids.append(w + [pad_id] * (seq - n))
                mask.append([1] * n + [0] * (seq - n))
                lb = list(w) + [-100] * (seq - n)
                for i in range(min(n, max(0, scored - start))):
                    lb[i] = -100
                # The first token of a document is never a target; keep it as context.
                lab.append(lb)
                scored = start + n
            if start + seq >= len(doc):
                break
            start += stride
    if max_windows and len(ids) > max_windows:
        keep = np.unique(np.linspace(0, len(ids) - 1, max_windows).round().astype(np.int64))
        ids = [ids[i] for i in keep]
        mask = [mask[i] for i in keep]
        lab = [lab[i] for i in keep]
    out = {
        "input_ids": np.asarray(ids, dtype=np.int64).reshape(-1, seq),
        "attention_mask": np.asarray(mask, dtype=np.int64).reshape(-1, seq),
    }
    if labels:
        out["labels"] = np.asarray(lab, dtype=np.int64).reshape(-1, seq)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="Text file -> fixed-length token windows (.npz: input_ids, attention_mask [, labels]) with the zoo LM's tokenizer.")
    ap.add_argument("text", help="input text file (read as bytes; any encoding)")
    ap.add_argument("out", help="output .npz")
    ap.add_argument("--seq", type=int, default=64, help="window length in tokens (default 64)")
    ap.add_argument("--stride", type=int, default=0, help="tokens between window starts (default: --seq, no overlap)")
    ap.add_argument("--max-windows", type=int, default=0, help="keep at most this many windows, spread evenly (default: all)")
    ap.add_argument("--pad", action="store_true", help="pad each document's last, shorter window (mask 0) instead of dropping it")
    ap.add_argument("--labels", action="store_true", help="also write labels (-100 on padding and on tokens an earlier overlapping window scored)")
    ap.add_argument("--split", default=None, help="regex for separator lines between documents (e.g. '%%' for fortune files, '' for blank lines); default: one document")
    ap.add_argument("--tokenizer", default=DEFAULT_TOKENIZER, help="tokenizer.json (default: models/zoo/lm/tokenizer.json)")
    a = ap.parse_args(argv)
    try:
        tok = Tokenizer.load(a.tokenizer)
        with open(a.text, "rb") as f:
            data = f.read()
        docs = [tok.encode(d) + [tok.eot_id] for d in split_documents(data, a.split)]
        out = windows(docs, a.seq, a.stride or a.seq, a.pad, tok.pad_id, a.max_windows, a.labels)
    except (OSError, ValueError, re.error) as e:
        print("textwindows: %s" % e, file=sys.stderr)
        return 1
    if len(out["input_ids"]) == 0:
        print("textwindows: no window of %d tokens in %s (try --pad or a smaller --seq)" % (a.seq, a.text), file=sys.stderr)
        return 1
    np.savez(a.out, **out)
    m = out["attention_mask"]
    print("%s: %d windows x %d tokens, %d documents, %d real tokens, %d padded windows" % (a.out, m.shape[0], m.shape[1], len(docs), int(m.sum()), int((m[:, -1] == 0).sum())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
