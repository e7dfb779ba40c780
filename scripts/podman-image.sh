#!/usr/bin/env bash
# Build droptune's image with podman and runc, from a Debian base made locally with debootstrap, so
# no Docker engine and no image registry are needed. Usage: scripts/podman-image.sh [TAG]
# The base image is kept in podman's storage and reused. Behind a TLS proxy, PIP_CERT (a CA bundle
# on this machine) is mounted into the build; PIP_INDEX_URL is passed on when set.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=localhost/debian:bookworm-slim
TAG=${1:-localhost/droptune:latest}

if ! podman image exists "$BASE"; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  rootfs=$(mktemp -d /var/tmp/droptune-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  echo "making the base image $BASE from $mirror..."
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
  tar -C "$rootfs" -c . | podman import - "$BASE" >/dev/null
fi

build_args=(--build-arg "BASE_IMAGE=$BASE")
[ -n "${PIP_INDEX_URL:-}" ] && build_args+=(--build-arg "PIP_INDEX_URL=$PIP_INDEX_URL")
if [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ]; then
  build_args+=(-v "$PIP_CERT:/tmp/ca.pem:ro" --build-arg PIP_CERT=/tmp/ca.pem)
fi
# --format docker keeps the HEALTHCHECK (the OCI format has no place for it).
podman build --runtime /usr/sbin/runc --network=host --format docker \
  --ulimit nofile=20000:20000 --ulimit nproc=1024:1024 \
  "${build_args[@]}" -t "$TAG" .
