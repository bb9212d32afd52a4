#!/usr/bin/env bash
# Install mothertongue and everything it needs.
#  - No NVIDIA GPU: the CPU build of PyTorch 2.13.0 first, so nothing pulls a multi-GB CUDA build.
#  - NVIDIA GPU (nvidia-smi works): the normal PyTorch build from PyPI, with CUDA.
# Usage: bash install.sh            (add MT_EXTRAS=dev,gpu for extras; default: dev)
set -euo pipefail
PY=${PYTHON:-python3}
EXTRAS=${MT_EXTRAS:-dev}
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "[install] NVIDIA GPU found: installing the CUDA build of PyTorch"
  "$PY" -m pip install "torch>=2.4"
else
  echo "[install] no GPU: installing the CPU build of PyTorch 2.13.0"
  # On machines without a local CPU wheel, add: --index-url https://download.pytorch.org/whl/cpu
  "$PY" -m pip install "torch==2.13.0"
fi
"$PY" -m pip install -e ".[${EXTRAS}]"
