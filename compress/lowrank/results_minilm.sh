#!/usr/bin/env bash
# Low-rank results on MiniLM (make minilm) with the built CLI (docs/results/lowrank.md).
# Usage: compress/lowrank/results_minilm.sh [ONNXPOST_BINARY] > table.md
# Slow: several minutes per whitened run on 2 cores. Needs ONNX Runtime and
# the oracle venv's numpy (make pyenv) to split text.npz: calibration on the
# first 160 sentences, fidelity on the other 160.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$root/bin/onnxpost}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
if [[ ! -f $root/models/minilm/model.onnx ]]; then
  echo "models/minilm/model.onnx missing: run make minilm" >&2
  exit 1
fi
py=$root/.venv/bin/python
"$py" -c "
import numpy as np, sys
d = np.load('$root/models/minilm/text.npz')
np.savez('$out/calib.npz', **{k: v[:160] for k, v in d.items()})
np.savez('$out/eval.npz', **{k: v[160:] for k, v in d.items()})"
echo
echo "### MiniLM (all-MiniLM-L6-v2, 36 MatMul weights), --params-ratio, plain against whitened (fidelity on 160 held-out sentences)"
echo
echo "| setting | layers factorized | model params | cosine | KL |"
echo "|---|---|---|---|---|"
for p in 0.5 0.7; do
  for w in "" "--whiten"; do
    extra=()
    [[ -n $w ]] && extra=(--calib "$out/calib.npz" --whiten)
    "$bin" lowrank "$root/models/minilm/model.onnx" -o "$out/m.onnx" --scheme svd --params-ratio $p --data "$out/eval.npz" --json "${extra[@]}" >"$out/r.json" 2>/dev/null
    python3 - "$p $w" "$out/r.json" <<'PY'
import json, sys
label, path = sys.argv[1:3]
r = json.load(open(path))
m = r["metrics"]
print(f"| --params-ratio {label} | {r['factorized']} | {r['model_params_before']} → {r['model_params_after']} | {m['cosine']:.4f} | {m['kl']:.6f} |")
PY
  done
done
