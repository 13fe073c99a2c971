#!/bin/sh
# `pip install` inside an image build, online or offline, behind a TLS-inspecting proxy or not.
# scripts/docker_build.sh fills docker/build-extras/ (ignored by git) before building:
#   ca.pem    a CA bundle pip must trust (a proxy's); copied into build stages only, never
#             into an image that ships
#   wheels/   local wheels (the CPU torch wheel, or every wheel for an offline build)
#   offline   when present, wheels/ is the only source: pip never touches the network
set -eu
extras=/tmp/build-extras
if [ -s "$extras/ca.pem" ]; then
  export PIP_CERT="$extras/ca.pem"
fi
if ls "$extras"/wheels/*.whl >/dev/null 2>&1; then
  set -- --find-links "$extras/wheels" "$@"
fi
if [ -e "$extras/offline" ]; then
  set -- --no-index "$@"
fi
exec python3 -m pip install --no-cache-dir --disable-pip-version-check "$@"
