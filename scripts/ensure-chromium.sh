#!/usr/bin/env bash
# Install Debian's Chromium for the dashboard's browser tests when it is missing and apt can be used.
# (Playwright cannot download its own browser here; the tests drive /usr/bin/chromium.)
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing chromium from Debian's packages for the browser tests..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "note: no chromium and no root apt-get; the browser tests will be skipped (they fail under CI=true)" >&2
fi
