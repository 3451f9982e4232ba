#!/usr/bin/env bash
# Generate the re-basin pairs (`make rebasin-zoo`): MLP and CNN trained from
# two initialization seeds, and on split tasks (models/gen_seeds.py). Writes
# only zoo/*/seed_*, zoo/*/split_* (.onnx, .golden.npz) and zoo/rebasin.json.
set -euo pipefail
cd "$(dirname "$0")"
PY=/usr/bin/python3
if ! "$PY" -c 'import torch, sklearn' 2>/dev/null; then
	echo "installing python3-torch python3-sklearn (Debian)" >&2
	if [ "$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-torch python3-sklearn >/dev/null
fi
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONHASHSEED=0
"$PY" -W ignore gen_seeds.py
