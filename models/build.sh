#!/usr/bin/env bash
# Regenerate the reference zoo (`make zoo`): datasets under models/data,
# models and golden outputs under models/zoo. Needs Debian's PyTorch and
# scikit-learn for /usr/bin/python3; installs them when missing. Without
# arguments it also regenerates the language model (lm.sh, `make zoo-lm`);
# with family names (build.sh mlp) only those families.
set -euo pipefail
cd "$(dirname "$0")"
PY=/usr/bin/python3
if ! "$PY" -c 'import torch, sklearn' 2>/dev/null; then
	echo "installing python3-torch python3-sklearn (Debian)" >&2
	if [ "$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-torch python3-sklearn >/dev/null
fi
# One thread and a fixed hash seed: the generator is bit-for-bit reproducible.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONHASHSEED=0
if [ "$#" -eq 0 ]; then rm -rf data zoo; fi
"$PY" -W ignore gen.py "$@"
# Optional check with ONNX Runtime when the test venv exists (make pyenv).
VPY=../.venv/bin/python
if [ -x "$VPY" ] && "$VPY" -c 'import onnx, onnxruntime' 2>/dev/null; then
	"$VPY" check.py
	"$VPY" check.py --merge
fi
if [ "$#" -eq 0 ]; then ./lm.sh; fi
