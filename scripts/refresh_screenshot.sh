#!/usr/bin/env bash
# Retake the README's picture, docs/label-studio-smart-click.png: runs the browser test
# (tests/e2e/test_browser.py: a real Label Studio 1.23, `clicksmith serve`, headless chromium)
# and keeps its final screenshot, the serving model's version written into the PNG.
#   bash scripts/refresh_screenshot.sh                           # the drawn sheep, tests/fixtures
#   bash scripts/refresh_screenshot.sh ../shared/datasets/grabcut # GrabCut's sheep photo
# The folder holds images/sheep.* and masks/sheep.png. Needs what tests/e2e needs (Redis on
# 127.0.0.1:6379, chromium: scripts/install_chromium.sh); the tests never write the picture.
# Then make the README's caption name the printed model version (tests/packaging checks it).
set -euo pipefail
cd "$(dirname "$0")/.."
images=$(realpath "${1:-tests/fixtures}")
out=docs/label-studio-smart-click.png
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CLICKSMITH_SCREENSHOT="$tmp/shot.png" CLICKSMITH_SCREENSHOT_IMAGES="$images" \
  python3 -m pytest -q -x -p no:cacheprovider tests/e2e/test_browser.py
if [ ! -f "$tmp/shot.png" ]; then
  echo "refresh_screenshot.sh: the browser test took no screenshot (skipped?); $out unchanged" >&2
  exit 1
fi
mv "$tmp/shot.png" "$out"
python3 -c "import sys; from PIL import Image; print(sys.argv[1], 'taken with',
Image.open(sys.argv[1]).text['model_version'])" "$out"
