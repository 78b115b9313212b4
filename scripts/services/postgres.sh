#!/usr/bin/env bash
# A local PostgreSQL for the tests (and for trying two replicas on one database): installs Debian's PostgreSQL when
# missing, runs its own cluster on 127.0.0.1:${OMNIDECIDE_PG_PORT:-54329} (data in /var/lib/omnidecide-pg, trust
# authentication on loopback only), creates the database omnidecide_test and prints its URL, also written to
# /tmp/omnidecide-test-database-url, where the tests read it (or set OMNIDECIDE_TEST_DATABASE_URL).
# Idempotent: a running cluster is reused. Run as root (CI does).
set -euo pipefail
PORT="${OMNIDECIDE_PG_PORT:-54329}"
DATA=/var/lib/omnidecide-pg
URL="postgresql://postgres@127.0.0.1:${PORT}/omnidecide_test"
URL_FILE=/tmp/omnidecide-test-database-url

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
fi
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

exec 9>/tmp/omnidecide-pg.lock
flock 9  # several worktrees may run this at once
if ! "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
  if [ ! -s "$DATA/PG_VERSION" ]; then
    mkdir -p "$DATA"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$DATA"
    as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=trust >/dev/null
  fi
  as_pg "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k /tmp -c max_connections=200" start >/dev/null 9>&-  # the server must not inherit the lock
fi
if ! "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -Atqc "SELECT 1 FROM pg_database WHERE datname='omnidecide_test'" \
    | grep -q 1; then
  "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -qc "CREATE DATABASE omnidecide_test" >/dev/null
fi
echo "$URL" > "$URL_FILE"
echo "PostgreSQL ready: $URL"
