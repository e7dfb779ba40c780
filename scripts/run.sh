#!/usr/bin/env bash
# Run the API and one worker together; Ctrl-C stops both. Settings come from DROPTUNE_* variables.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
"$BIN/python" -m store.migrate >/dev/null
# Authentication is on by default: on the first run, make a token for the local owner and show it.
"$BIN/python" -m service.tokens first
"$BIN/python" -m tuner &
worker=$!
trap 'kill -TERM "$worker" 2>/dev/null; wait "$worker" 2>/dev/null' EXIT INT TERM
"$BIN/python" -m service
