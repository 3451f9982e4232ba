#!/usr/bin/env bash
# Fisher merging on the reference zoo, beside linear averaging, task
# arithmetic and TIES on the same four fine-tunes of each family; writes the
# tables of docs/results/fisher.md to stdout (and the raw JSON under $WORK).
#
#   ONNXPOST_ORT_LIB=.cache/onnxruntime/libonnxruntime.so.1 fisher/results.sh > /tmp/results.md
#
# Every number comes from `onnxpost fisher`, `onnxpost merge` and
# `onnxpost eval` (accuracy on the test sets, ONNX Runtime).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/onnxpost}
WORK=${WORK:-$(mktemp -d)}
Z=models/zoo
D=models/data
TASKS=(low high shift flip)
go build -o "$BIN" ./cmd/onnxpost
echo "work folder: $WORK" >&2

evaluate() { # model -> JSON line {"union":..,"clean":..,...}
  local m=$1 out="{"
  for t in union clean low high shift flip; do
    a=$("$BIN" eval "$m" --data "$D/digits_${t}_test.npz" --metrics accuracy --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["metrics"]["accuracy"])')
    out+="\"$t\": $a, "
  done
  echo "${out%, }}"
}

for fam in mlp cnn transformer; do
  W=$WORK/$fam
  mkdir -p "$W"
  fts=()
  for t in "${TASKS[@]}"; do fts+=("$Z/$fam/ft_$t.onnx"); done
  # Fisher of each fine-tune: on its own task's validation set, and on the
  # union validation set (one dataset for all).
  ftask=() funion=()
  for t in "${TASKS[@]}"; do
    "$BIN" fisher "$Z/$fam/ft_$t.onnx" --data "$D/digits_${t}_val.npz" -o "$W/ft_$t.task.fisher.onnx" --json > "$W/ft_$t.task.fisher.json"
    "$BIN" fisher "$Z/$fam/ft_$t.onnx" --data "$D/digits_union_val.npz" -o "$W/ft_$t.union.fisher.onnx" --json > "$W/ft_$t.union.fisher.json"
    ftask+=("$W/ft_$t.task.fisher.onnx")
    funion+=("$W/ft_$t.union.fisher.onnx")
  done
  join() { local IFS=,; echo "$*"; }
  "$BIN" merge --method linear -o "$W/linear.onnx" "${fts[@]}" 2>/dev/null
  "$BIN" merge --method task-arithmetic --lambda 0.5 --base "$Z/$fam/base.onnx" -o "$W/ta.onnx" "${fts[@]}" 2>/dev/null
  "$BIN" merge --method ties --base "$Z/$fam/base.onnx" -o "$W/ties.onnx" "${fts[@]}" 2>/dev/null
  "$BIN" merge --method ties --density 0.5 --base "$Z/$fam/base.onnx" -o "$W/ties5.onnx" "${fts[@]}" 2>/dev/null
  "$BIN" merge --method fisher --fisher "$(join "${ftask[@]}")" -o "$W/fisher_task.onnx" "${fts[@]}" 2>/dev/null
  "$BIN" merge --method fisher --fisher "$(join "${ftask[@]}")" --fisher-normalize -o "$W/fisher_task_norm.onnx" "${fts[@]}" 2>/dev/null
  "$BIN" merge --method fisher --fisher "$(join "${funion[@]}")" -o "$W/fisher_union.onnx" "${fts[@]}" 2>/dev/null
  {
    for t in "${TASKS[@]}"; do echo "ft_$t $(evaluate "$Z/$fam/ft_$t.onnx")"; done
    for m in linear ta ties ties5 fisher_task fisher_task_norm fisher_union; do echo "$m $(evaluate "$W/$m.onnx")"; done
  } > "$W/acc.txt"
done

python3 - "$WORK" <<'EOF'
import json, sys, os
work = sys.argv[1]
names = {
    "ft_low": "fine-tune low (0–4)", "ft_high": "fine-tune high (5–9)", "ft_shift": "fine-tune shift", "ft_flip": "fine-tune flip",
    "linear": "linear (average)", "ta": "task arithmetic λ=0.5", "ties": "TIES d=0.2 λ=1", "ties5": "TIES d=0.5 λ=1",
    "fisher_task": "**Fisher** (each on its task's val set)", "fisher_task_norm": "**Fisher**, normalized ‖Fᵢ‖",
    "fisher_union": "**Fisher** (each on union val set)",
}
cols = ["union", "clean", "low", "high", "shift", "flip"]
for fam in ["mlp", "cnn", "transformer"]:
    rows = []
    with open(os.path.join(work, fam, "acc.txt")) as f:
        for line in f:
            k, js = line.split(" ", 1)
            rows.append((k, json.loads(js)))
    best_ft = max(r[1]["union"] for r in rows if r[0].startswith("ft_"))
    print(f"\n### {fam}\n")
    print("| model | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for k, a in rows:
        u = f"{a['union']:.3f}"
        if not k.startswith("ft_") and a["union"] > best_ft:
            u = f"**{u}**"
        print(f"| {names[k]} | {u} | " + " | ".join(f"{a[c]:.3f}" for c in cols[1:]) + " |")
    sp = []
    for t in ["low", "high", "shift", "flip"]:
        for d in ["task", "union"]:
            j = json.load(open(os.path.join(work, fam, f"ft_{t}.{d}.fisher.json")))
            sp.append(j["examples_per_s"])
    print(f"\nFisher computation ({fam}): {min(sp):.0f}–{max(sp):.0f} examples/s per model (including graph build and session creation), mode {j['mode']}.")
EOF
