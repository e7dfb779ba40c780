#!/bin/sh
# Like the official image's entrypoint, for what droptune's compose.yaml uses: on the first start
# (no PG_VERSION in PGDATA) make a cluster whose superuser is POSTGRES_USER with POSTGRES_PASSWORD,
# create POSTGRES_DB, listen on every address and ask other hosts for a password (scram-sha-256);
# then run the server as the postgres user. Not copied: /docker-entrypoint-initdb.d scripts and
# POSTGRES_HOST_AUTH_METHOD.
set -eu
[ "$#" = 0 ] && set -- postgres
[ "${1#-}" != "$1" ] && set -- postgres "$@"
[ "$1" = postgres ] || exec "$@"

PGDATA=${PGDATA:-/var/lib/postgresql/data}
export PGDATA
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "error: the database is not initialised and POSTGRES_PASSWORD is empty" >&2
    exit 1
  fi
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  initdb -D "$PGDATA" --username="$user" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  if [ "$db" != postgres ]; then
    # Single-user mode: no server listens while the database is made.
    escaped=$(printf '%s' "$db" | sed 's/"/""/g')
    echo "CREATE DATABASE \"$escaped\";" | postgres --single -j -D "$PGDATA" postgres >/dev/null
  fi
  echo "initialised $PGDATA: user $user, database $db"
fi
exec "$@"
