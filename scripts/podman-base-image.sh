#!/usr/bin/env bash
# Make the Debian base that droptune's images build on, localhost/debian:bookworm-slim, with
# debootstrap, unless podman's storage already has it; no image registry is needed. Usage:
# scripts/podman-base-image.sh (prints the base's name). Used by podman-image.sh and
# podman-postgres-image.sh.
set -euo pipefail
BASE=localhost/debian:bookworm-slim

if ! podman image exists "$BASE"; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  rootfs=$(mktemp -d /var/tmp/droptune-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  echo "making the base image $BASE from $mirror..." >&2
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
  tar -C "$rootfs" -c . | podman import - "$BASE" >/dev/null
fi
echo "$BASE"
