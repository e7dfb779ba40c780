#!/usr/bin/env bash
# Install podman, runc and debootstrap for the container tests when missing and apt can be used, with
# netavark and aardvark-dns: the bridge network on which compose.yaml's services find each other by
# name (tests/container/test_compose.py; podman-compose itself comes from requirements-dev.lock), and
# iptables, which netavark calls to set that network up (without it: "netavark: No such file or
# directory"; apt may be set to skip podman's recommended packages, iptables among them).
set -euo pipefail
missing=()
for tool in podman runc debootstrap; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
for helper in netavark aardvark-dns; do [ -x "/usr/lib/podman/$helper" ] || missing+=("$helper"); done
[ -x /usr/sbin/iptables ] || missing+=(iptables)
[ "${#missing[@]}" = 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing ${missing[*]} from Debian's packages for the container tests..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap netavark aardvark-dns iptables >/dev/null
else
  echo "note: no ${missing[*]} and no root apt-get; the container tests will be skipped (they fail under CI=true)" >&2
fi
