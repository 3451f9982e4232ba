#!/usr/bin/env bash
# make demo: the main job on the bundled zoo. Evaluates every zoo model with
# ONNX Runtime, then runs the gated pipeline of models/demo-recipe.yaml
# (merge the MLP fine-tunes → searched per-layer sparsity → int8 weights).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-./bin/onnxpost}
mkdir -p out/demo

echo "== 1. The zoo, evaluated by ONNX Runtime (accuracy) =="
printf '%-22s %8s %8s %8s %8s %8s\n' model clean low high shift flip
for fam in mlp cnn transformer; do
  for m in base ft_low ft_high ft_shift ft_flip; do
    row=$(printf '%-22s' "$fam/$m")
    for task in clean low high shift flip; do
      acc=$("$BIN" eval "models/zoo/$fam/$m.onnx" --data "models/data/digits_${task}_test.npz" --metrics accuracy --json |
        python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["metrics"]["accuracy"])')
      row="$row $(printf '%8s' "$acc")"
    done
    echo "$row"
  done
done

echo
echo "== 2. Merges of the MLP fine-tunes, accuracy on the union of tasks =="
union=models/data/digits_union_test.npz
fts="models/zoo/mlp/ft_low.onnx models/zoo/mlp/ft_high.onnx models/zoo/mlp/ft_shift.onnx models/zoo/mlp/ft_flip.onnx"
printf '%-34s %8s\n' merge union
for ft in $fts; do
  acc=$("$BIN" eval "$ft" --data "$union" --metrics accuracy --json | python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["metrics"]["accuracy"])')
  printf '%-34s %8s\n' "$(basename "$ft" .onnx) alone" "$acc"
done
merge() { # name, flags...
  local name=$1; shift
  local acc
  acc=$("$BIN" merge "$@" -o "out/demo/merge-$name.onnx" --data "$union" --json $fts |
    python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["metrics"]["accuracy"])')
  printf '%-34s %8s\n' "$name" "$acc"
}
merge linear --method linear
merge task-arithmetic-0.5 --method task-arithmetic --base models/zoo/mlp/base.onnx --lambda 0.5
merge ties-global-0.5 --method ties --base models/zoo/mlp/base.onnx --density 0.5
merge ties-tensor-0.5 --method ties --base models/zoo/mlp/base.onnx --density 0.5 --trim-scope tensor
merge dare-ties-0.5 --method dare-ties --base models/zoo/mlp/base.onnx --density 0.5 --seed 0
acc=$("$BIN" soup --greedy --data models/data/digits_union_val.npz -o out/demo/soup-greedy.onnx $fts >/dev/null 2>&1 &&
  "$BIN" eval out/demo/soup-greedy.onnx --data "$union" --metrics accuracy --json | python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["metrics"]["accuracy"])')
printf '%-34s %8s\n' "greedy soup (val-selected)" "$acc"

echo
echo "== 3. The gated pipeline (models/demo-recipe.yaml) =="
"$BIN" run --out-dir out/demo models/demo-recipe.yaml
echo
echo "report: out/demo/recipe.json, out/demo/recipe.md; model: out/demo/mlp-final.onnx"
