#!/usr/bin/env python3
"""Generate the onnxpost reference zoo: datasets, models, golden outputs.

Run through models/build.sh (`make zoo`) with Debian's PyTorch
(/usr/bin/python3, python3-torch 1.13, python3-sklearn 1.2). Everything is
deterministic: fixed seeds, one thread, deterministic algorithms.

Outputs (paths relative to models/):
  data/digits_<task>_<split>.npz   datasets: `image` float32 [N,1,8,8] in [0,1], `labels` int64 [N]
  zoo/<family>/<name>.onnx         models: input `image` [batch,1,8,8] -> output `logits` [batch,10]
  zoo/<family>/<name>.golden.npz   PyTorch logits on data/digits_clean_test.npz (+ accuracy)
  zoo/mlp/test_data/test_data_set_0/{input_0,output_0}.pb   ONNX test-data layout (mlp/base)
  zoo/manifest.json                every model's task, parameters and accuracies
  zoo/merge_check.json             weight-space merge sanity check (task arithmetic, TIES, average)
"""

import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
ZOO = os.path.join(HERE, "zoo")
SEED = 0
OPSET = 17
INPUT = "image"
OUTPUT = "logits"

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

# ---------------------------------------------------------------- datasets

LOW = (0, 1, 2, 3, 4)
HIGH = (5, 6, 7, 8, 9)


def shift(x):
    """Translate [N,1,8,8] images one pixel to the right (zero fill)."""
    y = np.zeros_like(x)
    y[:, :, :, 1:] = x[:, :, :, :-1]
    return y


def flip(x):
    """Mirror [N,1,8,8] images left-right."""
    return np.ascontiguousarray(x[:, :, :, ::-1])


def make_splits():
    d = load_digits()
    x = (d.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    idx = np.arange(len(y))
    tr, rest = train_test_split(idx, test_size=0.4, random_state=SEED, stratify=y)
    va, te = train_test_split(rest, test_size=0.5, random_state=SEED, stratify=y[rest])
    return {s: (x[np.sort(i)], y[np.sort(i)]) for s, i in (("train", tr), ("val", va), ("test", te))}


def task_sets(split):
    """The task datasets built from one split: name -> (image, labels)."""
    x, y = split
    lo = np.isin(y, LOW)
    hi = np.isin(y, HIGH)
    xs = shift(x)
    xf = flip(x)
    return {
        "clean": (x, y),
        "low": (x[lo], y[lo]),
        "high": (x[hi], y[hi]),
        "shift": (xs, y),
        "flip": (xf, y),
        "union": (np.concatenate([x, xs, xf]), np.concatenate([y, y, y])),
    }


def save_npz(path, x, y):
    np.savez(path, **{INPUT: np.ascontiguousarray(x, dtype=np.float32), "labels": y.astype(np.int64)})


# ---------------------------------------------------------------- models


class MLP(nn.Module):
    """64 -> 128 -> 64 -> 10 perceptron on the flattened image (Flatten, 3 Gemm, 2 Relu)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 10)

    def forward(self, image):
        x = torch.flatten(image, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class CNN(nn.Module):
    """Conv3x3(1->16)+BN+Relu, Conv3x3(16->32)+BN+Relu, MaxPool2, Conv3x3(32->32)+Relu, MaxPool2, Flatten, Gemm(128->10)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 2 * 2, 10)

    def forward(self, image):
        x = F.relu(self.bn1(self.conv1(image)))
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)
        return self.fc(torch.flatten(x, 1))


class Lin(nn.Module):
    """Linear layer whose weight is stored [in, out], so that it exports as MatMul(x, weight) + bias with the parameter's own name."""

    def __init__(self, n_in, n_out):
        super().__init__()
        ref = nn.Linear(n_in, n_out)  # PyTorch's default initialization
        self.weight = nn.Parameter(ref.weight.detach().t().contiguous())
        self.bias = nn.Parameter(ref.bias.detach().clone())

    def forward(self, x):
        return torch.matmul(x, self.weight) + self.bias


T, D, HEADS, FF, LAYERS = 8, 32, 2, 64, 2


class Block(nn.Module):
    """Pre-norm transformer encoder block: LN, multi-head self-attention, LN, GELU MLP."""

    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(D)
        self.q = Lin(D, D)
        self.k = Lin(D, D)
        self.v = Lin(D, D)
        self.o = Lin(D, D)
        self.ln2 = nn.LayerNorm(D)
        self.ff1 = Lin(D, FF)
        self.ff2 = Lin(FF, D)

    def forward(self, x):
        hd = D // HEADS
        z = self.ln1(x)
        q = self.q(z).reshape(-1, T, HEADS, hd).transpose(1, 2)
        k = self.k(z).reshape(-1, T, HEADS, hd).transpose(1, 2)
        v = self.v(z).reshape(-1, T, HEADS, hd).transpose(1, 2)
        a = torch.softmax(torch.matmul(q, k.transpose(2, 3)) * (1.0 / hd**0.5), dim=-1)
        z = torch.matmul(a, v).transpose(1, 2).reshape(-1, T, D)
        x = x + self.o(z)
        return x + self.ff2(F.gelu(self.ff1(self.ln2(x))))


class Transformer(nn.Module):
    """Rows of the image as 8 tokens of 8 features; 2 pre-norm blocks (d=32, 2 heads, ff=64); mean pooling; LN; linear head."""

    def __init__(self):
        super().__init__()
        self.embed = Lin(8, D)
        self.pos = nn.Parameter(torch.zeros(1, T, D))
        self.blocks = nn.ModuleList([Block() for _ in range(LAYERS)])
        self.ln = nn.LayerNorm(D)
        self.head = Lin(D, 10)

    def forward(self, image):
        x = self.embed(image.reshape(-1, T, 8)) + self.pos
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x.mean(dim=1)))


FAMILIES = {"mlp": MLP, "cnn": CNN, "transformer": Transformer}

# Training recipe per family: the base ("pre-trained") model trains on a
# fraction of the clean training set, each fine-tune starts from the base and
# trains on its task's training set. Short fine-tunes with a lower learning
# rate keep the fine-tunes in the base's basin, where weight-space merges work.
RECIPE = {
    "mlp": dict(base_frac=1.0, base_epochs=10, base_lr=3e-3, ft_epochs=10, ft_lr=1e-3),
    "cnn": dict(base_frac=1.0, base_epochs=10, base_lr=3e-3, ft_epochs=10, ft_lr=1e-3),
    "transformer": dict(base_frac=0.5, base_epochs=30, base_lr=2e-3, ft_epochs=10, ft_lr=1e-3),
}
FINETUNES = {"mlp": ("low", "high", "shift", "flip"), "cnn": ("low", "high", "shift", "flip"), "transformer": ("low", "high", "shift", "flip")}


def train(model, x, y, epochs, lr, seed, batch=32):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(yt), generator=g)
        for i in range(0, len(yt), batch):
            j = perm[i : i + batch]
            opt.zero_grad()
            F.cross_entropy(model(xt[j]), yt[j]).backward()
            opt.step()
    model.eval()
    return model


@torch.no_grad()
def logits_of(model, x):
    model.eval()
    return model(torch.from_numpy(x)).numpy().astype(np.float32)


def accuracy(model, xy):
    x, y = xy
    return float((logits_of(model, x).argmax(1) == y).mean())


def fold_bn(model):
    """A copy of a CNN with each BatchNorm folded into the Conv before it (so initializers keep the conv's names)."""
    import copy

    m = copy.deepcopy(model).eval()
    for conv, bn in (("conv1", "bn1"), ("conv2", "bn2")):
        c, b = getattr(m, conv), getattr(m, bn)
        with torch.no_grad():
            scale = b.weight / torch.sqrt(b.running_var + b.eps)
            c.weight.mul_(scale.reshape(-1, 1, 1, 1))
            c.bias.copy_((c.bias - b.running_mean) * scale + b.bias)
        setattr(m, bn, nn.Identity())
    return m


def export(model, path):
    model.eval()
    if isinstance(model, CNN):
        model = fold_bn(model)
    dummy = torch.zeros(2, 1, 8, 8)
    torch.onnx.export(
        model,
        (dummy,),
        path,
        opset_version=OPSET,
        input_names=[INPUT],
        output_names=[OUTPUT],
        dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
        do_constant_folding=True,
        training=torch.onnx.TrainingMode.EVAL,
    )


def n_params(model):
    """Parameters of the exported model (for the CNN: after BatchNorm folding), i.e. float initializer elements."""
    if isinstance(model, CNN):
        model = fold_bn(model)
    return int(sum(p.numel() for p in model.parameters()))


# ---------------------------------------------------------------- ONNX test-data layout


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tensor_proto(name, arr):
    """Serialize a float32 numpy array as an onnx.TensorProto (dims=1, data_type=2, name=8, raw_data=9)."""
    arr = np.ascontiguousarray(arr, dtype="<f4")
    out = bytearray()
    for d in arr.shape:
        out += b"\x08" + _varint(d)
    out += b"\x10" + _varint(1)  # FLOAT
    nb = name.encode()
    out += b"\x42" + _varint(len(nb)) + nb
    raw = arr.tobytes()
    out += b"\x4a" + _varint(len(raw)) + raw
    return bytes(out)


# ---------------------------------------------------------------- merge sanity check


def merge_check(family, base, fts, sets):
    """Weight-space merges of the fine-tunes, evaluated in PyTorch on the union and on each task.

    Merges act on the exported parameters (for the CNN: BatchNorm folded into
    the convolutions), exactly the tensors that onnxpost sees as initializers.
    """
    cls = FAMILIES[family]
    view = fold_bn if family == "cnn" else (lambda m: m)
    base = view(base)
    fts = {n: view(m) for n, m in fts.items()}
    sd0 = base.state_dict()
    sds = [m.state_dict() for m in fts.values()]
    keys = [k for k, v in sd0.items() if v.dtype.is_floating_point]

    def build(sd):
        m = view(cls())
        m.load_state_dict(sd)
        m.eval()
        return m

    def task_arith(lam):
        sd = {k: v.clone() for k, v in sd0.items()}
        for k in keys:
            sd[k] = sd0[k] + lam * sum(s[k] - sd0[k] for s in sds)
        return sd

    def ties(density, lam):
        taus = [torch.cat([(s[k] - sd0[k]).flatten() for k in keys]) for s in sds]
        trimmed = []
        for t in taus:
            kth = max(1, int(round(density * t.numel())))
            thr = t.abs().kthvalue(t.numel() - kth + 1).values
            trimmed.append(torch.where(t.abs() >= thr, t, torch.zeros_like(t)))
        st = torch.stack(trimmed)
        gamma = torch.sign(st.sum(0))
        gamma[gamma == 0] = 1
        agree = (torch.sign(st) == gamma) & (st != 0)
        cnt = agree.sum(0).clamp(min=1)
        merged = (st * agree).sum(0) / cnt
        sd = {k: v.clone() for k, v in sd0.items()}
        off = 0
        for k in keys:
            n = sd0[k].numel()
            sd[k] = sd0[k] + lam * merged[off : off + n].reshape(sd0[k].shape)
            off += n
        return sd

    def row(m):
        return {t: round(accuracy(m, sets[t]), 4) for t in ("union", "clean", "low", "high", "shift", "flip")}

    res = {"base": row(base)}
    for n, m in fts.items():
        res["ft_" + n] = row(m)
    res["average"] = row(build(task_arith(1.0 / len(sds))))
    for lam in (0.5, 0.7, 1.0):
        res["task_arithmetic_l%.1f" % lam] = row(build(task_arith(lam)))
    for dens, lam in ((0.2, 1.0), (0.2, 1.5), (0.2, 2.0), (0.5, 1.0), (0.5, 1.5)):
        res["ties_d%.1f_l%.1f" % (dens, lam)] = row(build(ties(dens, lam)))
    return res


# ---------------------------------------------------------------- main


def main():
    os.makedirs(DATA, exist_ok=True)
    splits = make_splits()
    tr = task_sets(splits["train"])
    va = task_sets(splits["val"])
    te = task_sets(splits["test"])
    datasets = {}
    for split, sets in (("val", va), ("test", te)):
        for task, (x, y) in sets.items():
            name = "digits_%s_%s.npz" % (task, split)
            save_npz(os.path.join(DATA, name), x, y)
            datasets[name] = {"samples": int(len(y)), "classes": sorted(set(int(c) for c in y))}
    print("datasets:", {k: v["samples"] for k, v in datasets.items()}, flush=True)

    manifest = {
        "input": INPUT,
        "input_shape": ["batch", 1, 8, 8],
        "output": OUTPUT,
        "output_shape": ["batch", 10],
        "opset": OPSET,
        "golden_data": "data/digits_clean_test.npz",
        "datasets": datasets,
        "models": {},
    }
    merges = {}
    families = sys.argv[1:] or list(FAMILIES)
    for fam in families:
        r = RECIPE[fam]
        out = os.path.join(ZOO, fam)
        os.makedirs(out, exist_ok=True)
        torch.manual_seed(SEED)
        base = FAMILIES[fam]()
        x, y = tr["clean"]
        rng = np.random.RandomState(SEED)
        sub = np.sort(rng.permutation(len(y))[: int(r["base_frac"] * len(y))])
        train(base, x[sub], y[sub], r["base_epochs"], r["base_lr"], SEED)
        models = {"base": base}
        fts = {}
        for i, task in enumerate(FINETUNES[fam]):
            m = FAMILIES[fam]()
            m.load_state_dict(base.state_dict())
            train(m, *tr[task], r["ft_epochs"], r["ft_lr"], SEED + 1 + i)
            fts[task] = m
            models["ft_" + task] = m
        for name, m in models.items():
            path = os.path.join(out, name + ".onnx")
            export(m, path)
            lg = logits_of(m, te["clean"][0])
            acc = float((lg.argmax(1) == te["clean"][1]).mean())
            np.savez(os.path.join(out, name + ".golden.npz"), logits=lg, accuracy=np.float64(acc))
            task = "clean (%d%% of the training set)" % round(100 * r["base_frac"]) if name == "base" else name[3:]
            manifest["models"]["%s/%s" % (fam, name)] = {
                "family": fam,
                "task": task,
                "params": n_params(m),
                "test_accuracy": {t: round(accuracy(m, te[t]), 4) for t in ("clean", "low", "high", "shift", "flip", "union")},
            }
            print(fam, name, manifest["models"]["%s/%s" % (fam, name)]["test_accuracy"], flush=True)
        if fam == "mlp":
            d = os.path.join(out, "test_data", "test_data_set_0")
            os.makedirs(d, exist_ok=True)
            xb = te["clean"][0][:16]
            with open(os.path.join(d, "input_0.pb"), "wb") as f:
                f.write(tensor_proto(INPUT, xb))
            with open(os.path.join(d, "output_0.pb"), "wb") as f:
                f.write(tensor_proto(OUTPUT, logits_of(base, xb)))
        merges[fam] = merge_check(fam, base, fts, te)
        print(fam, "merges", json.dumps(merges[fam]), flush=True)

    if set(families) == set(FAMILIES):
        with open(os.path.join(ZOO, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
            f.write("\n")
        with open(os.path.join(ZOO, "merge_check.json"), "w") as f:
            json.dump(merges, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
