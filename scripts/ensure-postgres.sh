#!/usr/bin/env bash
# Make sure a PostgreSQL answers on 127.0.0.1:5432 with trust auth and a database `test`, for the
# store and end-to-end tests: start the installed cluster, or install one from Debian's packages.
set -euo pipefail
ready() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
command -v pg_isready >/dev/null 2>&1 && ready && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: no PostgreSQL on 127.0.0.1:5432 and no root apt-get; PostgreSQL tests will skip (they fail under CI=true)" >&2
  exit 0
fi
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "installing PostgreSQL from Debian's packages for the tests..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /etc/postgresql | sort -V | tail -n1)
[ -d "/etc/postgresql/$version/main" ] || pg_createcluster "$version" main >/dev/null
hba="/etc/postgresql/$version/main/pg_hba.conf"
# Tests connect over TCP as postgres without a password: trust on loopback only.
grep -q "^host all all 127.0.0.1/32 trust" "$hba" || sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || pg_ctlcluster --skip-systemctl-redirect "$version" main reload
for _ in $(seq 1 30); do ready && break; sleep 1; done
su postgres -c "psql -h 127.0.0.1 -tAc \"SELECT 1 FROM pg_database WHERE datname = 'test'\"" | grep -q 1 \
  || su postgres -c "createdb -h 127.0.0.1 test"
ready
