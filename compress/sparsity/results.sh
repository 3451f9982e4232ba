#!/usr/bin/env bash
# Regenerates the accuracy table of docs/results/sparsity.md on the zoo
# with the built CLI: for each model, pattern/sparsity and method it runs
#   onnxpost sparsify MODEL -o OUT --calib VAL ...
#   onnxpost eval OUT --data TEST --ref MODEL --metrics accuracy,agreement,kl --json
# and prints a Markdown table on stdout.
# (sparsegpt+seq is sparsegpt --sequential.)
# Usage: compress/sparsity/results.sh [ONNXPOST_BINARY]   (from the repo root)
set -euo pipefail
BIN=${1:-bin/onnxpost}
VAL=models/data/digits_clean_val.npz
TEST=models/data/digits_clean_test.npz
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "| model | target | method | zeros (skipped layers) | accuracy | dense | drop | agreement | KL | N:M violations |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for model in mlp cnn transformer; do
  src=models/zoo/$model/base.onnx
  [ -f "$src" ] || continue
  "$BIN" eval "$src" --data "$TEST" --metrics accuracy --json >"$TMP/dense.json"
  for cfg in "--pattern 2:4" "--pattern 4:8" "--sparsity 0.5" "--sparsity 0.7"; do
    for method in magnitude wanda sparsegpt sparsegpt+seq; do
      out="$TMP/out.onnx"
      extra=""
      if [ "$method" = sparsegpt+seq ]; then extra="--sequential"; fi
      "$BIN" sparsify "$src" -o "$out" $cfg --method "${method%+seq}" $extra --calib "$VAL" --quiet --json >"$TMP/sp.json"
      "$BIN" eval "$out" --data "$TEST" --ref "$src" --metrics accuracy,agreement,kl --json >"$TMP/ev.json"
      python3 - "$model" "$cfg" "$method" "$TMP/dense.json" "$TMP/sp.json" "$TMP/ev.json" <<'PY'
import json, sys
model, cfg, method, dense, sp, ev = sys.argv[1:]
d = json.load(open(dense))["metrics"]["accuracy"]
s = json.load(open(sp))["sparsity"]
e = json.load(open(ev))["metrics"]
print(f"| {model} | {cfg.split()[1]} | {method} | {100*s['zero_fraction']:.1f}% ({s['skipped']} skipped) | "
      f"{e['accuracy']:.4f} | {d:.4f} | {d-e['accuracy']:+.4f} | {e['agreement']:.4f} | {e['kl']:.4f} | {s['nm_violations']} |")
PY
    done
  done
done
