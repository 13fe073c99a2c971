#!/usr/bin/env bash
# A Docker daemon and Compose for the docker smoke test (tests/packaging/test_docker_smoke.py),
# from Debian's packages: docker.io (dockerd), docker-compose (Compose v1) and debootstrap (the
# base image). Starts dockerd when none answers, with no default bridge and no iptables rules
# (what these machines allow; compose's own networks still work), and waits for it.
set -euo pipefail
need=()
command -v dockerd >/dev/null || need+=(docker.io)
{ docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null; } || need+=(docker-compose)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "start_docker.sh: needs root for apt-get install ${need[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need[@]}"
fi
if docker info >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "start_docker.sh: no Docker daemon answers and starting one needs root" >&2
  exit 1
fi
log=${DOCKERD_LOG:-/var/log/clicksmith-dockerd.log}
nohup dockerd --bridge=none --iptables=false >"$log" 2>&1 &
for _ in $(seq 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "start_docker.sh: dockerd did not answer within 60 s; its log: $log" >&2
tail -20 "$log" >&2
exit 1
