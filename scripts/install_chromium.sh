#!/usr/bin/env bash
# Debian's chromium for the browser tests (tests/e2e/test_browser.py). Playwright drives it via
# executable_path; it never downloads a browser of its own (`playwright install` is not used).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install_chromium.sh: needs root for apt-get (or install the chromium package)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium
