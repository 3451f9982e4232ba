#!/usr/bin/env python3
"""Generate the re-basin zoo pairs (`make rebasin-zoo`): models of one
architecture trained from different initializations, for `merge --align`.

Run through models/build_seeds.sh (Debian's PyTorch, one thread, fixed seeds,
bit-for-bit reproducible). Additive: it reads gen.py's datasets and recipes
and writes only these files (the rest of the zoo is not regenerated):

  zoo/<family>/seed_a.onnx, seed_b.onnx   clean task, init seeds 101 and 202
  zoo/<family>/split_low.onnx             digits 0-4 only, init seed 101
  zoo/<family>/split_high.onnx            digits 5-9 only, init seed 202
  zoo/<family>/<name>.golden.npz          PyTorch logits on data/digits_clean_test.npz
  zoo/rebasin.json                        their test accuracies

for the families mlp, cnn and transformer (the transformer trains on the
whole training set here, with its base recipe's epochs and learning rate).
"""

import json
import os

import numpy as np
import torch

import gen

SEEDS = {"a": 101, "b": 202}


def main():
    splits = gen.make_splits()
    tr = gen.task_sets(splits["train"])
    te = gen.task_sets(splits["test"])
    out = {}
    for fam in ("mlp", "cnn", "transformer"):
        r = gen.RECIPE[fam]
        d = os.path.join(gen.ZOO, fam)
        os.makedirs(d, exist_ok=True)
        runs = (("seed_a", "clean", SEEDS["a"]), ("seed_b", "clean", SEEDS["b"]),
                ("split_low", "low", SEEDS["a"]), ("split_high", "high", SEEDS["b"]))
        for name, task, seed in runs:
            torch.manual_seed(seed)
            m = gen.FAMILIES[fam]()
            gen.train(m, *tr[task], r["base_epochs"], r["base_lr"], seed)
            gen.export(m, os.path.join(d, name + ".onnx"))
            lg = gen.logits_of(m, te["clean"][0])
            acc0 = float((lg.argmax(1) == te["clean"][1]).mean())
            np.savez(os.path.join(d, name + ".golden.npz"), logits=lg, accuracy=np.float64(acc0))
            acc = {t: round(gen.accuracy(m, te[t]), 4) for t in ("clean", "low", "high")}
            out["%s/%s" % (fam, name)] = {"task": task, "init_seed": seed, "test_accuracy": acc}
            print(fam, name, acc, flush=True)
    with open(os.path.join(gen.ZOO, "rebasin.json"), "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
