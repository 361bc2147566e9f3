#!/bin/sh
# One-shot (temporalio/admin-tools image): creates Temporal's two PostgreSQL databases and brings
# their schemas to the version this admin-tools release ships. Idempotent, so it runs on every
# `docker compose up`: `create` ignores an existing database, `setup-schema -v 0.0` skips a
# database already past 0.0, `update-schema` applies only the missing versions.
# Connection settings come from the environment (POSTGRES_SEEDS, DB_PORT, POSTGRES_USER;
# temporal-sql-tool reads the password from SQL_PASSWORD).
set -eu
: "${POSTGRES_SEEDS:?POSTGRES_SEEDS is required}"
: "${POSTGRES_USER:?POSTGRES_USER is required}"
: "${SQL_PASSWORD:?SQL_PASSWORD is required}"
port="${DB_PORT:-5432}"
schema=/etc/temporal/schema/postgresql/v12

n=1
until nc -z -w 5 "$POSTGRES_SEEDS" "$port"; do
  [ "$n" -lt 60 ] || { echo "PostgreSQL at $POSTGRES_SEEDS:$port not reachable"; exit 1; }
  echo "waiting for PostgreSQL ($n/60)"
  n=$((n + 1))
  sleep 2
done

sqltool() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$port" -u "$POSTGRES_USER" "$@"
}

# database name : schema directory under $schema
for pair in temporal:temporal temporal_visibility:visibility; do
  db="${pair%%:*}"
  dir="${pair#*:}"
  echo "schema for database $db"
  sqltool --db "$db" create
  sqltool --db "$db" setup-schema -v 0.0
  sqltool --db "$db" update-schema -d "$schema/$dir/versioned"
done
echo "Temporal schemas ready"
