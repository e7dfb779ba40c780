#!/usr/bin/env bash
# Install (or bring up to date) .venv from the lock files: only when their content changed since the
# last install, compared by hash, not by file times (a copied or freshly cloned checkout has new times
# and the same content). Called by `make install`, which every other target runs first.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=.venv
STAMP=$VENV/.installed
wanted=$(cat requirements.lock requirements-dev.lock requirements-jax.lock client/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$wanted" ]; then
  exit 0
fi
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r requirements.lock -r requirements-dev.lock -r requirements-jax.lock
"$VENV/bin/python" -m pip install --quiet --no-deps -e ./client
echo "$wanted" > "$STAMP"
