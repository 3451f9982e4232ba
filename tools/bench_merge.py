#!/usr/bin/env python3
"""Python side of the merge benchmark (tools/bench_merge.sh).

Two sub-commands:

  manifest OUT.json MODEL.onnx...
      (needs the onnx package: run with .venv/bin/python) lists, for each
      model, its float32 initializers in graph order with their external-data
      file, offset and length.

  ties MANIFEST.json BASE FT1 FT2 FT3 [--density 0.2] [--lambda 1] [--check MERGED] [--threads 2]
      (needs PyTorch: Debian's /usr/bin/python3) runs TIES-Merging with a
      global trim (the paper's reference: every model's task vector flattened
      over all merged tensors, k = floor(density*n), keep |tau| >= the k-th
      largest, sign of the sum with 0 -> +1, disjoint mean, base + lambda*tau)
      on the same tensors as onnxpost, in float32 like the reference code,
      whole models in memory. With --check it compares the result with
      onnxpost's merged model. Prints one JSON object: load_s, compute_s,
      peak_rss_mb (after the merge, before the check), elements, and with
      --check max_abs_diff, scale and mismatches (entries differing by more
      than 1e-6 x scale: threshold ties decided differently in float32).

  stream METHOD MANIFEST.json BASE FT1 FT2 FT3 OUT.data [--density D] [--threads 2]
      (needs PyTorch) the streaming reference: tensor by tensor, as mergekit
      merges, reads the four tensors from the external data (np.fromfile at
      the tensor's offset), merges them with PyTorch in float32 and appends
      the result to OUT.data, fsynced at the end; only one tensor group is
      in memory. METHOD: linear (mean of the four), ties (per-tensor trim: keep
      |tau| >= the k-th largest of the tensor, k = floor(density*n); sign of
      the sum, 0 -> +1; disjoint mean) or dare (keep each delta entry with
      probability density, rescale by 1/density, sum). Prints one JSON
      object: seconds, peak_rss_mb, elements, bytes_in.
"""
import json
import os
import resource
import sys
import time


def manifest(out, models):
    import onnx
    import onnx.numpy_helper

    res = {}
    for p in models:
        m = onnx.load(p, load_external_data=False)
        d = os.path.dirname(os.path.abspath(p))
        ts = []
        for t in m.graph.initializer:
            if t.data_type != onnx.TensorProto.FLOAT:
                continue
            ext = {e.key: e.value for e in t.external_data}
            if "location" not in ext:  # small tensors stay inline
                v = onnx.numpy_helper.to_array(t).ravel().tolist()
                ts.append({"name": t.name, "values": v, "length": 4 * len(v), "shape": list(t.dims)})
                continue
            ts.append({"name": t.name, "file": os.path.join(d, ext["location"]),
                       "offset": int(ext.get("offset", 0)), "length": int(ext["length"]),
                       "shape": list(t.dims)})
        res[p] = ts
    with open(out, "w") as f:
        json.dump(res, f)


def read_flat(torch, tensors):
    n = sum(t["length"] // 4 for t in tensors)
    flat = torch.empty(n, dtype=torch.float32)
    buf = flat.numpy()
    pos = 0
    files = {}
    for t in tensors:
        if "values" in t:
            k = len(t["values"])
            buf[pos:pos + k] = t["values"]
            pos += k
            continue
        f = files.get(t["file"])
        if f is None:
            f = files[t["file"]] = open(t["file"], "rb", buffering=0)
        f.seek(t["offset"])
        k = t["length"] // 4
        mv = memoryview(buf[pos:pos + k]).cast("B")
        got = 0
        while got < t["length"]:
            r = f.readinto(mv[got:])
            if not r:
                raise SystemExit("short read in " + t["file"])
            got += r
        pos += k
    for f in files.values():
        f.close()
    return flat


def ties(args):
    import torch

    mf = json.load(open(args[0]))
    base_p, fts = args[1], args[2:5]
    opts = dict(density=0.2, lam=1.0, check=None, threads=2)
    rest = args[5:]
    for i in range(0, len(rest), 2):
        k, v = rest[i], rest[i + 1]
        if k == "--density":
            opts["density"] = float(v)
        elif k == "--lambda":
            opts["lam"] = float(v)
        elif k == "--check":
            opts["check"] = v
        elif k == "--threads":
            opts["threads"] = int(v)
    torch.set_num_threads(opts["threads"])
    t0 = time.time()
    base = read_flat(torch, mf[base_p])
    taus = [read_flat(torch, mf[p]) for p in fts]
    t1 = time.time()
    n = base.numel()
    k = max(1, int(opts["density"] * n))
    for tau in taus:
        tau.sub_(base)                       # tau = theta_i - theta_base
        a = tau.abs()
        thr = torch.kthvalue(a, n - k + 1).values  # k-th largest |tau|
        tau.mul_(a >= thr)                   # trim, ties at the threshold kept
        del a
    s = taus[0] + taus[1] + taus[2]
    gamma = torch.where(s >= 0, 1.0, -1.0)   # elect, 0 -> +1
    del s
    num = torch.zeros(n, dtype=torch.float32)
    den = torch.zeros(n, dtype=torch.float32)
    for tau in taus:
        agree = (torch.sign(tau) == gamma) & (tau != 0)
        num += torch.where(agree, tau, 0.0)
        den += agree
    merged = base + opts["lam"] * torch.where(den > 0, num / den.clamp(min=1), 0.0)
    t2 = time.time()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"load_s": t1 - t0, "compute_s": t2 - t1, "peak_rss_mb": peak, "elements": n,
           "threads": torch.get_num_threads(), "torch": torch.__version__}
    if opts["check"]:
        del taus, num, den, gamma
        got = read_flat(torch, mf[opts["check"]])
        diff = (got.double() - merged.double()).abs()
        scale = merged.abs().max().item()
        out["max_abs_diff"] = diff.max().item()
        out["scale"] = scale
        out["mismatches"] = int((diff > 1e-6 * scale).sum().item())
    print(json.dumps(out))


def read_tensor(np, t):
    if "values" in t:
        return np.asarray(t["values"], dtype=np.float32)
    return np.fromfile(t["file"], dtype=np.float32, count=t["length"] // 4, offset=t["offset"])


def stream(args):
    import numpy as np
    import torch

    method, mf = args[0], json.load(open(args[1]))
    base_p, fts, out = args[2], args[3:6], args[6]
    opts = dict(density=0.2 if method == "ties" else 0.5, threads=2)
    rest = args[7:]
    for i in range(0, len(rest), 2):
        if rest[i] == "--density":
            opts["density"] = float(rest[i + 1])
        elif rest[i] == "--threads":
            opts["threads"] = int(rest[i + 1])
    torch.set_num_threads(opts["threads"])
    gen = torch.Generator().manual_seed(0)
    d = opts["density"]
    t0 = time.time()
    n_all, bytes_in = 0, 0
    with open(out, "wb") as f:
        for k, bt in enumerate(mf[base_p]):
            base = torch.from_numpy(read_tensor(np, bt))
            xs = [torch.from_numpy(read_tensor(np, mf[p][k])) for p in fts]
            n = base.numel()
            n_all += n
            bytes_in += 4 * n * 4
            if method == "linear":
                merged = (base + xs[0] + xs[1] + xs[2]) / 4
            elif method == "ties":
                kk = max(1, int(d * n))
                taus = []
                for x in xs:
                    tau = x - base
                    a = tau.abs()
                    thr = torch.kthvalue(a, n - kk + 1).values
                    taus.append(tau * (a >= thr))
                s = taus[0] + taus[1] + taus[2]
                gamma = torch.where(s >= 0, 1.0, -1.0)
                num = torch.zeros(n)
                den = torch.zeros(n)
                for tau in taus:
                    agree = (torch.sign(tau) == gamma) & (tau != 0)
                    num += torch.where(agree, tau, 0.0)
                    den += agree
                merged = base + torch.where(den > 0, num / den.clamp(min=1), 0.0)
            elif method == "dare":
                acc = torch.zeros(n)
                for x in xs:
                    keep = torch.rand(n, generator=gen) < d
                    acc += torch.where(keep, (x - base) / d, 0.0)
                merged = base + acc
            else:
                raise SystemExit("stream: unknown method " + method)
            f.write(merged.numpy().tobytes())
        f.flush()
        os.fsync(f.fileno())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": time.time() - t0, "peak_rss_mb": peak, "elements": n_all,
                      "bytes_in": bytes_in, "torch": torch.__version__, "threads": torch.get_num_threads()}))


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    if sys.argv[1] == "manifest":
        manifest(sys.argv[2], sys.argv[3:])
    elif sys.argv[1] == "ties":
        ties(sys.argv[2:])
    elif sys.argv[1] == "stream":
        stream(sys.argv[2:])
    else:
        raise SystemExit(__doc__)


main()
