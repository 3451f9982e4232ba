#!/usr/bin/env bash
# Quantization of the pretrained all-MiniLM-L6-v2 (make minilm), onnxpost
# beside ONNX Runtime's Python quantizer on the same model, fidelity of the
# sentence embeddings on 160 held-out sentences (cosine to the float model,
# onnxpost eval). Calibration (static, GPTQ): the other 160 sentences.
# Usage: [MODES='int8-qdq int4-rtn-b32 ...'] tools/quant_minilm.sh [bin/onnxpost]
# (needs .venv: make pyenv; ORT's MatMulNBitsQuantizer needs tools/requirements-bench.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-bin/onnxpost}
PY=.venv/bin/python
M=models/minilm/model.onnx
[ -f "$M" ] || { echo "run make minilm first" >&2; exit 1; }
out=out/quant-minilm; mkdir -p "$out"
$PY - "$out" <<'PY'
import sys, numpy as np
d = np.load('models/minilm/text.npz'); out = sys.argv[1]
np.savez(f'{out}/calib.npz', **{k: v[:160] for k, v in d.items()})
np.savez(f'{out}/test.npz', **{k: v[160:] for k, v in d.items()})
PY
row() { # name model seconds
  local res
  res=$("$BIN" eval "$2" --data "$out/test.npz" --ref "$M" --metrics cosine,mse --json)
  printf '| %s | %s | %s | %s | %s |\n' "$1" \
    "$(echo "$res" | $PY -c 'import json,sys; print("%.5f" % json.load(sys.stdin)["metrics"]["cosine"])')" \
    "$(echo "$res" | $PY -c 'import json,sys; print("%.2e" % json.load(sys.stdin)["metrics"]["mse"])')" \
    "$(cat "$2" "$2".*.data 2>/dev/null | wc -c)" "$3"
}
timed() { # out args...: runs and prints wall seconds
  local o=$1; shift
  local t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  $PY -c "print('%.2f' % ($(date +%s.%N) - $t0))"
}
echo "| model | cosine to float | mse | bytes | quantization wall s |"
echo "|---|---|---|---|---|"
row "float32" "$M" "-"
MODES=${MODES:-int8-qdq int8-dynamic int8-static int4-rtn-b32 int4-gptq-b32 fp16}
declare -A FLAGS=(
  [int8-qdq]="--weights int8"
  [int8-dynamic]="--weights int8 --activations dynamic"
  [int8-static]="--weights int8 --activations int8 --calib $out/calib.npz"
  [int4-rtn-b32]="--weights int4 --block 32"
  [int4-gptq-b32]="--weights int4 --block 32 --method gptq --calib $out/calib.npz"
  [fp16]="--weights fp16"
)
for name in $MODES; do
  mode="$name:${FLAGS[$name]}"
  name=${mode%%:*}; flags=${mode#*:}
  s=$(timed "$out/$name.onnx" "$BIN" quantize "$M" $flags -o "$out/$name.onnx")
  row "onnxpost $name" "$out/$name.onnx" "$s"
done
# ONNX Runtime's quantizer on the same model
$PY - "$M" "$out" <<'PY'
import sys, time
from onnxruntime.quantization import quantize_dynamic, QuantType
m, out = sys.argv[1], sys.argv[2]
t = time.time(); quantize_dynamic(m, f'{out}/ort-int8-dynamic.onnx', weight_type=QuantType.QInt8, per_channel=True)
open(f'{out}/ort-int8-dynamic.s', 'w').write('%.2f' % (time.time() - t))
try:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    t = time.time()
    q = MatMulNBitsQuantizer(onnx.load(m), block_size=32, is_symmetric=False)
    q.process(); q.model.save_model_to_file(f'{out}/ort-int4-rtn-b32.onnx', True)
    open(f'{out}/ort-int4-rtn-b32.s', 'w').write('%.2f' % (time.time() - t))
except Exception as e:
    print('ORT MatMulNBitsQuantizer failed:', e, file=sys.stderr)
PY
for name in ort-int8-dynamic ort-int4-rtn-b32; do
  [ -f "$out/$name.onnx" ] && row "ORT python ${name#ort-}" "$out/$name.onnx" "$(cat "$out/$name.s")"
done
