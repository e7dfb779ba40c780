#!/usr/bin/env bash
# Build a PostgreSQL 15 image from Debian's packages (docker/postgres/Containerfile) with podman and
# runc, on the same local Debian base as droptune's image: a stand-in for `postgres:15` where no
# image registry can be reached. Usage: scripts/podman-postgres-image.sh [TAG]
#   POSTGRES_IMAGE=localhost/droptune-postgres:15 podman-compose up -d
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-localhost/droptune-postgres:15}
BASE=$(scripts/podman-base-image.sh)
podman build --runtime /usr/sbin/runc --network=host --format docker \
  --ulimit nofile=20000:20000 --ulimit nproc=1024:1024 \
  --build-arg "BASE_IMAGE=$BASE" -t "$TAG" docker/postgres
