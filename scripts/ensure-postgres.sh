#!/usr/bin/env bash
# Make sure the local PostgreSQL runs and has PostGIS (from Debian's packages). Safe to re-run.
set -euo pipefail
PGHOST=${PGHOST:-127.0.0.1}
major=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -n 1 || true)
if [ -z "$major" ]; then
  echo "ensure-postgres: no PostgreSQL cluster under /etc/postgresql; install postgresql first" >&2
  exit 1
fi
if ! pg_isready -q -h "$PGHOST"; then
  echo "ensure-postgres: starting PostgreSQL $major"
  pg_ctlcluster --skip-systemctl-redirect "$major" main start || true
  for _ in $(seq 1 30); do pg_isready -q -h "$PGHOST" && break; sleep 1; done
fi
if [ ! -f "/usr/share/postgresql/$major/extension/postgis.control" ]; then
  echo "ensure-postgres: installing PostGIS for PostgreSQL $major from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "postgresql-$major-postgis-3" >/dev/null
fi
pg_isready -h "$PGHOST"
