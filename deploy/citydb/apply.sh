#!/usr/bin/env bash
# Apply the city database migrations with psql, in order, each once
# (recorded in public.schema_migrations, the same table the Go runner
# citydb.Migrate uses). Usage: deploy/citydb/apply.sh "postgres://owner@host/citydb"
set -euo pipefail
dsn="${1:?usage: apply.sh DSN}"
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/migrations"
psql() { command psql "$dsn" -X -q -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" "$@" >/dev/null; }
psqlv() { command psql "$dsn" -X -q -v ON_ERROR_STOP=1 "$@"; }
psql -c "CREATE TABLE IF NOT EXISTS public.schema_migrations (
  version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
for f in "$dir"/[0-9][0-9][0-9][0-9]_*.sql; do
  name="$(basename "$f")"
  version=$((10#${name%%_*}))
  done=$(psqlv -At -c "SELECT count(*) FROM public.schema_migrations WHERE version = $version")
  if [ "$done" = "1" ]; then
    continue
  fi
  echo "citydb: applying $name"
  psql -1 -c "SELECT pg_advisory_xact_lock(1667855481)" -f "$f" \
    -c "INSERT INTO public.schema_migrations (version, name) VALUES ($version, '$name')"
done
echo "citydb: up to date"
