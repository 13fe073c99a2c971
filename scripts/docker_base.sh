#!/usr/bin/env bash
# Build the Debian bookworm base image the Dockerfiles start from, from Debian's packages alone
# (for machines that reach a Debian mirror but no container registry). Needs root, debootstrap
# and a running Docker daemon.
#   bash scripts/docker_base.sh [TAG]      (default clicksmith-base:bookworm; kept if it exists)
# DEBIAN_MIRROR picks the mirror; REBUILD=1 replaces an existing image.
set -euo pipefail
TAG=${1:-clicksmith-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [ -z "${REBUILD:-}" ] && docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "base image $TAG exists (REBUILD=1 to rebuild it)"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/var/tmp}/clicksmith-base.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "debootstrap bookworm from $MIRROR (a few minutes)"
# python3 is 3.11 in bookworm; libglib2.0-0 is OpenCV's one system library; libgomp1 for torch
debootstrap --variant=minbase \
  --include=python3,python3-venv,ca-certificates,libglib2.0-0,libgomp1 \
  bookworm "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
# what an image never needs: downloaded packages, package lists, docs, man pages, locales
rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/* \
  "$work"/rootfs/usr/share/doc/* "$work"/rootfs/usr/share/man/* "$work"/rootfs/usr/share/info/*
find "$work/rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
tar -C "$work/rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' - "$TAG" >/dev/null
echo "base image $TAG: $(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}')"
