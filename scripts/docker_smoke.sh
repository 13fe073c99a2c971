#!/usr/bin/env bash
# Build the images, start the compose stack (Label Studio, Redis, backend, two workers) and
# check it end to end, then stop it and delete its volumes. Needs a running Docker daemon and
# Compose (`docker compose` or `docker-compose`); talks to the stack on 127.0.0.1 only.
#   bash scripts/docker_smoke.sh [--no-build]
# Checked, each printed as one line:
#  - the stack becomes healthy (and how long that took)
#  - Label Studio connects the backend and adds its webhook; a click sent through Label
#    Studio's interactive call comes back as a mask with IoU >= 0.8 against the ground truth
#  - an annotation submitted in Label Studio reaches the backend's /webhook and a worker
#    stores the correction in the shared volume
#  - a model version promoted by a worker (torch) is served by the backend (ONNX, no torch)
#    after a hot reload
#  - after `down` and `up` again: the promoted model, the correction, Redis's data and Label
#    Studio's project are still there
set -euo pipefail
cd "$(dirname "$0")/.."
build=1
case "${1:-}" in
  "") ;;
  --no-build) build=0 ;;
  *) echo "usage: bash scripts/docker_smoke.sh [--no-build]" >&2; exit 2 ;;
esac
if docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null; then
  compose_cmd=(docker-compose)
else
  echo "no Docker Compose: install docker-compose (Compose v1) or the compose plugin" >&2
  exit 2
fi
docker info >/dev/null 2>&1 || { echo "no Docker daemon answers (start dockerd)" >&2; exit 2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export COMPOSE_PROJECT_NAME=clicksmith-smoke-$$
export BIND=127.0.0.1 LABEL_STUDIO_PORT=$(free_port) BACKEND_PORT=$(free_port)
export LABEL_STUDIO_TOKEN=smoke-$(python3 -c 'import secrets; print(secrets.token_hex(12))')
export LABEL_STUDIO_PASSWORD=smoke-$(python3 -c 'import secrets; print(secrets.token_hex(8))')
export SMOKE_LS_URL=http://127.0.0.1:$LABEL_STUDIO_PORT SMOKE_BACKEND_URL=http://127.0.0.1:$BACKEND_PORT
compose() { "${compose_cmd[@]}" -f docker/compose.yml "$@"; }
state=$(mktemp -d)
cleanup() {
  rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "--- logs (last lines per service) ---"
    compose logs --tail 25 2>&1 | tail -150
  fi
  compose down -v --remove-orphans >/dev/null 2>&1 || true
  rm -rf "$state"
  exit "$rc"
}
trap cleanup EXIT

if [ "$build" = 1 ]; then
  bash scripts/docker_build.sh
fi

wait_for() {  # wait_for <seconds> <what> <command...>: poll until the command succeeds
  local limit=$1 what=$2; shift 2
  local t0=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if [ $((SECONDS - t0)) -ge "$limit" ]; then echo "FAIL $what: not within ${limit} s" >&2; return 1; fi
    sleep 2
  done
}
backend_healthy() { curl -fsS "$SMOKE_BACKEND_URL/health" | grep -q '"model_state":"ready"'; }
serving() { curl -fsS "$SMOKE_BACKEND_URL/health" | grep -q "\"$1\""; }
corrections() {  # how many correction masks the workers stored for the project
  compose exec -T backend sh -c "find /data/corrections/$1 -name '*.png' 2>/dev/null | wc -l" | tr -d '[:space:]'
}
has_corrections() { [ "$(corrections "$1")" -gt 0 ]; }

t0=$SECONDS
compose up -d
wait_for 600 "backend healthy" backend_healthy
echo "ok   stack up, model loaded, in $((SECONDS - t0)) s (first start: Label Studio migrates its database)"
python3 scripts/docker_smoke_checks.py first "$state/state.json"
project=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['project'])" "$state/state.json")
wait_for 180 "the webhook's correction stored by a worker" has_corrections "$project"
echo "ok   a worker stored the correction from the webhook ($(corrections "$project") mask file(s))"

version=$(compose exec -T worker-1 python3 - <<'PY' | tail -1 | tr -d '[:space:]'
import uuid
from pathlib import Path

import torch

from cdnet.model.files import BUNDLED_WEIGHTS, version_of
from clicksmith import registry
from clicksmith.settings import load_settings

payload = torch.load(BUNDLED_WEIGHTS, map_location="cpu", weights_only=False)
payload["meta"] = {**payload.get("meta", {}), "smoke": uuid.uuid4().hex}  # new bytes, new version
out = Path("/tmp/smoke.pt")
torch.save(payload, out)
version = version_of(out)
settings = load_settings()
registry.store_version(settings, version, out, {"smoke": True}, export_onnx=True)
registry.promote(settings, version)
print(version)
PY
)
wait_for 120 "backend serving the promoted $version" serving "$version"
if compose exec -T backend python3 -c "import torch" >/dev/null 2>&1; then
  echo "FAIL the serving image has torch" >&2; exit 1
fi
echo "ok   a version promoted by a worker ($version) is served by the backend (hot reload; ONNX Runtime, the image has no torch)"
marker=$(python3 -c 'import secrets; print(secrets.token_hex(8))')
compose exec -T redis redis-cli set clicksmith:smoke-marker "$marker" >/dev/null

compose down
t0=$SECONDS
compose up -d
wait_for 600 "backend healthy after up again" backend_healthy
echo "ok   up again and healthy in $((SECONDS - t0)) s"
serving "$version" || { echo "FAIL the promoted model was not kept across down/up" >&2; exit 1; }
echo "ok   the promoted model is still serving"
has_corrections "$project" || { echo "FAIL the correction was not kept across down/up" >&2; exit 1; }
echo "ok   the correction is still stored"
[ "$(compose exec -T redis redis-cli get clicksmith:smoke-marker | tr -d '[:space:]')" = "$marker" ] \
  || { echo "FAIL Redis lost its data across down/up" >&2; exit 1; }
echo "ok   Redis kept its data"
python3 scripts/docker_smoke_checks.py second "$state/state.json"
echo "PASS docker smoke"
