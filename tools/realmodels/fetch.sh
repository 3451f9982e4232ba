#!/usr/bin/env bash
# `make realmodels`: fetch the real-model corpus into .cache/realmodels and
# write realistic inputs for every model (see tools/realmodels/fetch.py).
# Installs what it needs: Debian's espeak-ng and fonts-dejavu-core, the
# all-MiniLM-L6-v2 export (make minilm), and a virtualenv with numpy, onnx,
# onnxruntime and Pillow in .cache/realmodels/venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${REALMODELS_DIR:-.cache/realmodels}
VENV=$OUT/venv
PY=${PY:-python3}
need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
	echo "installing ${need[*]} (Debian)" >&2
	if [ "$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -f models/minilm/model.onnx ] || ./models/minilm.sh
if [ ! -f "$VENV/.ok" ] || [ tools/realmodels/requirements.txt -nt "$VENV/.ok" ]; then
	rm -rf "$VENV"
	mkdir -p "$OUT"
	"$PY" -m venv "$VENV"
	"$VENV/bin/pip" install -q --disable-pip-version-check -r tools/requirements-test.txt -r tools/realmodels/requirements.txt
	touch "$VENV/.ok"
fi
"$VENV/bin/python" tools/realmodels/fetch.py --out "$OUT" --minilm models/minilm
