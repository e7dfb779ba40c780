#!/usr/bin/env bash
# Install podman, runc and debootstrap for the container test when missing and apt can be used.
set -euo pipefail
missing=()
for tool in podman runc debootstrap; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
[ "${#missing[@]}" = 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing ${missing[*]} from Debian's packages for the container test..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
else
  echo "note: no ${missing[*]} and no root apt-get; the container test will be skipped (it fails under CI=true)" >&2
fi
