#!/usr/bin/env bash
# The side environment that lets CI run the GPTQ/AWQ export tests for real.
# GPTQModel 7.6 (the [quant] extra) pins numpy 2.2.6, which the main environment does not take,
# so the extra goes into .venv-quant instead: a venv that sees the main environment's packages,
# with torch and transformers pinned to the ones installed there (pip may add numpy 2.2.6 and
# GPTQModel's own packages, nothing else). tests/test_export_quant.py quantizes and loads back in
# its python when the main one has no gptqmodel (MT_QUANT_PYTHON names another interpreter).
# Usage: bash .ci/quant-venv.sh        (MT_QUANT_VENV=0 skips it; ~1.5 min on 2 cores, no pip cache)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv-quant
if [ "${MT_QUANT_VENV:-1}" = 0 ]; then
  echo "[quant-venv] skipped (MT_QUANT_VENV=0)"
  exit 0
fi
if "$PY" -c "import gptqmodel, optimum" >/dev/null 2>&1; then
  echo "[quant-venv] the main environment has the [quant] extra: nothing to do"
  exit 0
fi
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import gptqmodel, optimum" >/dev/null 2>&1; then
  echo "[quant-venv] $VENV is there"
  exit 0
fi
echo "[quant-venv] installing the [quant] extra into $VENV (main environment untouched)"
rm -rf "$VENV"
# A half-built venv is removed, so the tests skip ("absent") rather than fail on a broken one.
trap 'rm -rf "$VENV"; echo "[quant-venv] failed: $VENV removed" >&2' ERR
"$PY" -m venv --system-site-packages "$VENV"
"$PY" -c "import torch, transformers; print(f'torch=={torch.__version__}'); print(f'transformers=={transformers.__version__}')" \
  > "$VENV/pins.txt"
"$VENV/bin/python" -m pip install -q -c "$VENV/pins.txt" -e ".[quant]"
"$VENV/bin/python" -c "import gptqmodel, optimum, torch; print('[quant-venv] gptqmodel', gptqmodel.__version__, 'torch', torch.__version__)" 2>/dev/null
