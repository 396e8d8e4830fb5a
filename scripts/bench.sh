#!/usr/bin/env bash
# Benchmarks against throwaway PostgreSQL + Redis; always torn down.
#   scripts/bench.sh [--smoke] [--runs N] [--brands N]     (make bench ARGS="...")
# Runs the provisioning benchmarks, then the import/stock ones (bench_stock.py).
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
free_port() { "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
dir=$(mktemp -d /tmp/keel-bench.XXXXXX)
chmod 755 "$dir"
pg_port=${KEEL_BENCH_PG_PORT:-$(free_port)}
redis_port=${KEEL_BENCH_REDIS_PORT:-$(free_port)}
cleanup() { ./scripts/services.sh stop "$dir"; rm -rf "$dir"; }
trap cleanup EXIT
# No --fast: production keeps fsync on, and DDL-heavy paths (migrations commit once per
# migration) are measured as they would run there.
./scripts/services.sh start "$dir" "$pg_port" "$redis_port"
export DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/keel"
export REDIS_URL="redis://127.0.0.1:$redis_port/0"
export DJANGO_SETTINGS_MODULE=config.settings
export PYTHONPATH="$PWD/platform:$PWD${PYTHONPATH:+:$PYTHONPATH}"
# Production settings (no per-query debug logging); the key only signs throwaway sessions.
export DEBUG=0 SECRET_KEY="bench-only-$(date +%s%N)" LOG_LEVEL=WARNING
# Production settings need a dedicated key for secrets at rest; a throwaway one here.
export KEEL_FERNET_KEYS="$("$py" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
# Signup paths are measured one at a time: the pool is filled explicitly where it is used.
export KEEL_SCHEMA_POOL_SIZE=0
"$py" - "$pg_port" <<'PY'
import sys

import psycopg

with psycopg.connect(f"host=127.0.0.1 port={sys.argv[1]} user=postgres dbname=postgres", autocommit=True) as conn:
    conn.execute("CREATE DATABASE keel")
PY
"$py" manage.py keel_bootstrap -v0
"$py" tests/benchmarks/bench_provisioning.py "$@"
"$py" tests/benchmarks/bench_stock.py "$@"
"$py" tests/benchmarks/bench_orders.py "$@"
"$py" tests/benchmarks/bench_shopify_backfill.py "$@"
"$py" tests/benchmarks/bench_webhooks.py "$@"
"$py" tests/benchmarks/bench_forecast.py "$@"
"$py" tests/benchmarks/bench_nightly.py "$@"
"$py" tests/benchmarks/bench_carrier_scoring.py "$@"
"$py" tests/benchmarks/bench_throttle.py "$@"
