#!/usr/bin/env bash
# Regenerate the zoo language model (`make zoo-lm`, also run by `make zoo`):
# models/zoo/lm and models/data/lm_*.npz. Needs Debian's PyTorch and onnx for
# /usr/bin/python3 and the corpora's Debian packages; installs them when
# missing. 15-20 minutes of one core (1071 s wall, niced, on a busy 2-core machine).
set -euo pipefail
cd "$(dirname "$0")"
PY=/usr/bin/python3
PKGS="python3-torch python3-onnx python3.11-doc fortunes bible-kjv"
if ! "$PY" -c 'import torch, onnx' 2>/dev/null || [ "$(dpkg-query -W -f='${Status}\n' $PKGS 2>/dev/null | grep -c 'ok installed')" -ne 5 ]; then
	echo "installing $PKGS (Debian)" >&2
	if [ "$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $PKGS >/dev/null
fi
# One thread and a fixed hash seed: the generator is bit-for-bit reproducible.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONHASHSEED=0
rm -rf zoo/lm data/lm_*.npz
nice -n 19 "$PY" -W ignore lm.py
# Optional check with ONNX Runtime when the test venv exists (make pyenv).
VPY=../.venv/bin/python
if [ -x "$VPY" ] && "$VPY" -c 'import onnx, onnxruntime' 2>/dev/null; then
	"$VPY" check.py --lm
fi
