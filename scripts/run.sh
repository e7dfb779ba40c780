#!/usr/bin/env bash
# Run the API and the workers together; Ctrl-C (or a TERM) stops everything. `python -m tuner.supervise`
# keeps DROPTUNE_WORKERS workers alive (default: one per 4 CPUs), restarting any that dies, with backoff.
# Settings come from DROPTUNE_* variables.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
"$BIN/python" -m store.migrate >/dev/null
# Authentication is on by default: on the first run, make a token for the local owner and show it.
"$BIN/python" -m service.tokens first
"$BIN/python" -m tuner.supervise &
workers=$!
"$BIN/python" -m service &
api=$!
# uvicorn says it runs before its processes answer; this says so when they do.
PYTHONPATH=. "$BIN/python" scripts/announce_ready.py &
ready=$!
# Both run in the background so that a signal to this script (Ctrl-C, or a TERM from a supervisor)
# is handled at once: `wait` returns on a trapped signal, a foreground child would hold it back.
trap 'kill -TERM "$workers" "$api" "$ready" 2>/dev/null; wait 2>/dev/null; exit 0' INT TERM
# The supervisor outlives its workers, so this returns only if it or the API itself ends (the port
# taken, say): then stop the other, rather than leave half of the service running.
wait -n "$workers" "$api" || true
kill -TERM "$workers" "$api" "$ready" 2>/dev/null || true
wait || true
