#!/usr/bin/env bash
# Build clicksmith's images and print their sizes: the base (when missing), then
#   clicksmith-serve       the ML backend: ONNX Runtime and the bundled weights, no PyTorch
#   clicksmith-worker      RQ workers: pre-label, corrections, review and retrain (PyTorch CPU)
#   clicksmith-redis       Redis from Debian's package
#   clicksmith-label-studio  Label Studio 1.23.2 from its PyPI package
# Usage: bash scripts/docker_build.sh [--download | --offline] [IMAGE ...]
#   (no option)  online: pip inside the build reaches the package index like the host does
#   --download   online, once: every wheel the images need into docker/build-extras/wheels/
#   --offline    build from docker/build-extras/wheels/ alone (copy that folder over first)
#   IMAGE        serve, worker, redis, label-studio (default: all four)
# BASE=<image> builds on another bookworm base (default clicksmith-base:bookworm, made by
# scripts/docker_base.sh). The classic builder is used: BuildKit is not needed.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=online
images=()
for arg in "$@"; do
  case "$arg" in
    --download) mode=download ;;
    --offline) mode=offline ;;
    serve|worker|redis|label-studio) images+=("$arg") ;;
    *) echo "usage: bash scripts/docker_build.sh [--download|--offline] [serve|worker|redis|label-studio ...]" >&2; exit 2 ;;
  esac
done
[ ${#images[@]} -gt 0 ] || images=(serve worker redis label-studio)
BASE=${BASE:-clicksmith-base:bookworm}
extras=docker/build-extras
mkdir -p "$extras/wheels"
rm -f "$extras/offline" "$extras/ca.pem"

# A CA bundle pip trusts on this machine (a TLS-inspecting proxy's): the build stages trust it
# too. It is copied into build stages only; the shipped stages copy the venv, not the bundle.
# Pip's own setting first, then the bundle the environment or the system names (a shell
# without PIP_CERT, e.g. `env -i`, still trusts the system bundle when pip does not say).
ca=${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}
ca=${ca:-${REQUESTS_CA_BUNDLE:-${SSL_CERT_FILE:-}}}
if [ -z "$ca" ] && [ -s /etc/ssl/certs/ca-certificates.crt ]; then
  ca=/etc/ssl/certs/ca-certificates.crt
fi
if [ -n "$ca" ] && [ -s "$ca" ]; then
  cp "$ca" "$extras/ca.pem"
fi

# The CPU build of torch: PyPI's torch==2.13.0 is a multi-GB CUDA build. Take a local CPU
# wheel where pip finds one (find-links), else PyTorch's CPU index.
torch_wheel() { ls "$extras"/wheels/torch-2.13.0*.whl 2>/dev/null | head -1; }
if [ -z "$(torch_wheel)" ] && [ "$mode" != offline ]; then
  for dir in ${PIP_FIND_LINKS:-} $(python3 -m pip config get global.find-links 2>/dev/null || true); do
    found=$(ls "$dir"/torch-2.13.0+cpu-cp311-*.whl 2>/dev/null | head -1 || true)
    if [ -n "$found" ]; then cp "$found" "$extras/wheels/"; break; fi
  done
  if [ -z "$(torch_wheel)" ]; then
    python3 -m pip download -q --no-deps -d "$extras/wheels" torch==2.13.0 \
      --index-url https://download.pytorch.org/whl/cpu
  fi
fi

bash scripts/docker_base.sh "$BASE"
if [ "$mode" = download ]; then
  # Inside the base image, not on the host: pip must resolve for the images' Python (Debian's
  # 3.11.2 needs wheels a newer host Python skips, e.g. redis's async-timeout).
  docker run --rm --network host -v "$PWD:/src:ro" -v "$PWD/$extras:/extras" "$BASE" sh -c '
    set -e
    python3 -m venv /tmp/v
    [ -s /extras/ca.pem ] && export PIP_CERT=/extras/ca.pem
    reqs=$(python3 -c "import tomllib; p = tomllib.load(open(\"/src/pyproject.toml\", \"rb\"))[\"project\"]; print(\" \".join([*p[\"dependencies\"], *p[\"optional-dependencies\"][\"train\"]]))")
    /tmp/v/bin/pip download -q --disable-pip-version-check -d /extras/wheels \
      --find-links /extras/wheels "pip>=24" "setuptools>=68" $reqs "label-studio==1.23.2"'
  echo "wheels for an offline build: $extras/wheels ($(du -sh "$extras/wheels" | cut -f1))"
  exit 0
fi
if [ "$mode" = offline ]; then
  [ -n "$(torch_wheel)" ] || { echo "no wheels in $extras/wheels: run with --download on a machine online first" >&2; exit 2; }
  touch "$extras/offline"
fi

build() {  # build <tag> <dockerfile> [target]
  local tag=$1 file=$2 target=${3:-} t0=$SECONDS
  echo "building $tag"
  DOCKER_BUILDKIT=0 docker build -q --network host --build-arg "BASE=$BASE" -f "$file" \
    ${target:+--target "$target"} -t "$tag" . >/dev/null
  echo "  $tag: $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}') ($((SECONDS - t0)) s)"
}
for image in "${images[@]}"; do
  case "$image" in
    serve) build clicksmith-serve:latest docker/Dockerfile serve ;;
    worker) build clicksmith-worker:latest docker/Dockerfile worker ;;
    redis) build clicksmith-redis:latest docker/redis.Dockerfile ;;
    label-studio) build clicksmith-label-studio:1.23.2 docker/label-studio.Dockerfile ;;
  esac
done
