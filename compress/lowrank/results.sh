#!/usr/bin/env bash
# Low-rank results on the reference zoo with the built CLI (docs/results/lowrank.md).
# Usage: compress/lowrank/results.sh [ONNXPOST_BINARY] > table.md
# Needs ONNX Runtime (make ort; ONNXPOST_ORT_LIB) and python3 for JSON.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$root/bin/onnxpost}
test=$root/models/data/digits_clean_test.npz
calib=$root/models/data/digits_clean_val.npz
zoo=$root/models/zoo
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# row MODEL LABEL ARGS...: one table row from the command's JSON result.
row() {
  local model=$1 label=$2
  shift 2
  if ! "$bin" lowrank "$zoo/$model/base.onnx" -o "$out/c.onnx" --data "$test" --json "$@" >"$out/r.json" 2>"$out/err.txt"; then
    echo "| $model | $label | failed: $(tail -1 "$out/err.txt") |"
    return
  fi
  python3 - "$model" "$label" "$out/r.json" <<'EOF'
import json, sys
model, label, path = sys.argv[1:4]
r = json.load(open(path))
m, ref = r["metrics"], r["reference"]["metrics"]
ranks = ",".join(str(l["rank"]) if l["factorized"] else "-" for l in r["layers"])
en = [l["energy"] for l in r["layers"] if l["factorized"]]
print(f"| {model} | {label} | {r['factorized']} | {ranks} | {min(en) if en else 1:.3f} | "
      f"{r['model_params_before']} → {r['model_params_after']} ({100*r['model_params_after']/r['model_params_before']:.1f}%) | "
      f"{ref['accuracy']:.4f} | {m['accuracy']:.4f} | {m['agreement']:.4f} | {m['kl']:.4f} |")
EOF
}

header() {
  echo
  echo "### $1"
  echo
  echo "| model | setting | layers factorized | ranks (per layer, - = left dense) | min energy kept | model params | ref acc | acc | agreement | KL |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
}

header "Plain SVD by energy (MatMul/Gemm; CNN: auto = svd for the Gemm, smaller of channel/spatial per conv)"
for m in mlp cnn transformer; do
  for e in 0.5 0.7 0.8 0.9 0.95 0.99; do row $m "--energy $e" --scheme auto --energy $e; done
done

header "Plain against whitened SVD at equal ranks (--rank-ratio R on every layer; MLP/transformer svd, CNN channel on conv2/conv3; calib = digits_clean_val, 256 samples)"
for ms in mlp:svd transformer:svd cnn:channel; do
  m=${ms%%:*} s=${ms##*:}
  for r in 0.1 0.2 0.3 0.5; do
    row $m "$s --rank-ratio $r" --scheme $s --rank-ratio $r
    row $m "$s --rank-ratio $r --whiten" --scheme $s --rank-ratio $r --calib "$calib" --whiten
  done
done

header "Whole-model budget, plain against whitened SVD (--params-ratio P over the factorized layers; greedy on normalized σ² per parameter)"
for ms in mlp:svd transformer:svd cnn:channel; do
  m=${ms%%:*} s=${ms##*:}
  for p in 0.2 0.3 0.5 0.7; do
    row $m "$s --params-ratio $p" --scheme $s --params-ratio $p
    row $m "$s --params-ratio $p --whiten" --scheme $s --params-ratio $p --calib "$calib" --whiten
  done
done

header "CNN: channel- against spatial-wise (conv2, conv3; conv1 is the first conv, fc untouched)"
for e in 0.5 0.7 0.8 0.9 0.95; do
  row cnn "channel --energy $e" --scheme channel --energy $e
  row cnn "spatial --energy $e" --scheme spatial --energy $e
done
for p in 0.2 0.3 0.5 0.7; do
  row cnn "channel --params-ratio $p" --scheme channel --params-ratio $p
  row cnn "spatial --params-ratio $p" --scheme spatial --params-ratio $p
done

echo
echo "### Full rank (--rank-ratio 1 --force --include .): max abs output difference in ONNX Runtime (onnxpost eval --ref base --metrics max_abs,agreement)"
echo
echo "| model | scheme | layers factorized | max abs | agreement |"
echo "|---|---|---|---|---|"
for ms in mlp:svd transformer:svd cnn:channel cnn:spatial cnn:auto; do
  m=${ms%%:*} s=${ms##*:}
  "$bin" lowrank "$zoo/$m/base.onnx" -o "$out/full.onnx" --scheme "$s" --rank-ratio 1 --force --include . --json >"$out/r.json" 2>/dev/null
  n=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['factorized'])" "$out/r.json")
  "$bin" eval "$out/full.onnx" --data "$test" --ref "$zoo/$m/base.onnx" --metrics max_abs,agreement --json >"$out/e.json"
  python3 - "$m" "$s" "$n" "$out/e.json" <<'PY'
import json, sys
m, s, n, path = sys.argv[1:5]
r = json.load(open(path))["metrics"]
print(f"| {m} | {s} | {n} | {r['max_abs']:.2e} | {r['agreement']:.4f} |")
PY
done
