#!/usr/bin/env bash
# Web + Celery worker + beat against the project-local services (started by `make run`).
# Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
export KEEL_PG_PORT=${KEEL_PG_PORT:-54329} KEEL_REDIS_PORT=${KEEL_REDIS_PORT:-63799}
export PYTHONPATH="$PWD/platform:$PWD${PYTHONPATH:+:$PYTHONPATH}"
PORT=${PORT:-8000}
export PUBLIC_PORT=${PUBLIC_PORT:-$PORT}
py=.venv/bin/python

psql -h 127.0.0.1 -p "$KEEL_PG_PORT" -U postgres -tc "SELECT 1 FROM pg_database WHERE datname='keel'" \
  | grep -q 1 || psql -h 127.0.0.1 -p "$KEEL_PG_PORT" -U postgres -qc "CREATE DATABASE keel"
$py manage.py keel_bootstrap --demo -v0

pids=()
stop() { trap - INT TERM EXIT; kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop INT TERM EXIT

.venv/bin/celery -A config worker -Q sync,forecast,monitor,default --concurrency 2 -l info &
pids+=($!)
.venv/bin/celery -A config beat -l info -s .data/celerybeat-schedule &
pids+=($!)
$py manage.py runserver "0.0.0.0:$PORT" &
pids+=($!)
echo
echo "Keel is running:  public site http://localhost:$PORT/   demo brand http://demo.localhost:$PORT/"
echo "Ctrl-C stops web, worker and beat."
wait -n "${pids[@]}"
