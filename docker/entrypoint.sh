#!/bin/sh
# Roles: api (default: migrate, then serve), worker, migrate; anything else runs as a command.
set -e
# The GPU variant's default backend (Dockerfile VARIANT=jax-cuda); `docker run -e` overrides it.
if [ -z "${DROPTUNE_KERAS_BACKEND:-}" ] && [ -f /opt/venv/droptune-keras-backend ]; then
  DROPTUNE_KERAS_BACKEND=$(cat /opt/venv/droptune-keras-backend)
  export DROPTUNE_KERAS_BACKEND
fi
role="${1:-api}"
[ "$#" -gt 0 ] && shift
echo "$role" > /tmp/droptune-role
case "$role" in
  api) python3 -m store.migrate && exec python3 -m service "$@" ;;
  worker) exec python3 -m tuner "$@" ;;
  migrate) exec python3 -m store.migrate "$@" ;;
  *) exec "$role" "$@" ;;
esac
