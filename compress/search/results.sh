#!/usr/bin/env bash
# Reproduces the zoo rows of docs/results/search.md: for each family and sparsity
# target, an EvoPress search (magnitude levels by default) with the uniform
# and per-layer-error baselines written beside it, then each model's test
# accuracy and KL to the dense model with `onnxpost eval`.
# Usage: compress/search/results.sh [METHOD] [SEED]   (from the repo root)
# Environment: FAMILIES (default "mlp cnn transformer"), TARGETS (default
# "0.5 0.7"), SPACE (default sparsity; rank and bits take METHOD svd and
# rtn|gptq), BIN (default ./bin/onnxpost), OUT (work folder).
set -euo pipefail
method=${1:-magnitude}
space=${SPACE:-sparsity}
seed=${2:-1}
bin=${BIN:-./bin/onnxpost}
out=${OUT:-/tmp/onnxpost-search-results}
mkdir -p "$out"
echo "| model | space | target | method | allocation | calib KL (search) | test KL | test accuracy (dense) |"
echo "|---|---|---|---|---|---|---|---|"
for fam in ${FAMILIES:-mlp cnn transformer}; do
  for t in ${TARGETS:-0.5 0.7}; do
    d="$out/$fam-$space-$t-$method"
    mkdir -p "$d"
    $bin search models/zoo/$fam/base.onnx --space "$space" --target "$t" --method "$method" --seed "$seed" \
      --calib models/data/digits_clean_val.npz -o "$d/searched.onnx" --baselines "$d" \
      --cache-dir "$out/cache" --report "$d/report.json" 2>"$d/search.log" >/dev/null
    for a in uniform per-layer-error searched; do
      calib=$(python3 -c "import json,sys; r=json.load(open('$d/report.json'))['search']; print('%.5f' % {'uniform':r['uniform'],'per-layer-error':r['heuristic'],'searched':r['searched']}['$a']['loss'])")
      $bin eval "$d/$a.onnx" --data models/data/digits_clean_test.npz --ref models/zoo/$fam/base.onnx \
        --metrics accuracy,kl --json > "$d/$a.eval.json"
      read -r acc kl racc < <(python3 -c "import json; r=json.load(open('$d/$a.eval.json')); print('%.4f %.5f %.4f' % (r['metrics']['accuracy'], r['metrics']['kl'], r['reference']['metrics']['accuracy']))")
      echo "| $fam | $space | $t | $method | $a | $calib | $kl | $acc ($racc) |"
    done
  done
done
