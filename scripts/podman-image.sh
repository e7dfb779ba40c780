#!/usr/bin/env bash
# Build droptune's image with podman and runc, from a Debian base made locally with debootstrap, so
# no Docker engine and no image registry are needed. Usage: scripts/podman-image.sh [TAG]
# The base image (scripts/podman-base-image.sh) is kept in podman's storage and reused. Behind a TLS
# proxy, PIP_CERT (a CA bundle on this machine) is mounted into the build; PIP_INDEX_URL is passed on.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-localhost/droptune:latest}
BASE=$(scripts/podman-base-image.sh)

build_args=(--build-arg "BASE_IMAGE=$BASE")
[ -n "${PIP_INDEX_URL:-}" ] && build_args+=(--build-arg "PIP_INDEX_URL=$PIP_INDEX_URL")
if [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ]; then
  build_args+=(-v "$PIP_CERT:/tmp/ca.pem:ro" --build-arg PIP_CERT=/tmp/ca.pem)
fi
# --format docker keeps the HEALTHCHECK (the OCI format has no place for it).
podman build --runtime /usr/sbin/runc --network=host --format docker \
  --ulimit nofile=20000:20000 --ulimit nproc=1024:1024 \
  "${build_args[@]}" -t "$TAG" .
