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
"$BIN/python" -m service &
api=$!
# Both run in the background so that a signal to this script (Ctrl-C, or a TERM from a supervisor)
# is handled at once: `wait` returns on a trapped signal, a foreground child would hold it back.
trap 'kill -TERM "$worker" "$api" 2>/dev/null; wait 2>/dev/null; exit 0' INT TERM
wait -n "$worker" "$api"  # one of them ended on its own: stop the other too
kill -TERM "$worker" "$api" 2>/dev/null
wait
