#!/usr/bin/env bash
# Throwaway PostgreSQL + Redis for one pytest run; always torn down.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d /tmp/keel-test.XXXXXX)
chmod 755 "$dir"
# Ports the kernel says are free right now, so parallel runs never collide.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pg_port=${KEEL_TEST_PG_PORT:-$(free_port)}
redis_port=${KEEL_TEST_REDIS_PORT:-$(free_port)}
cleanup() { ./scripts/services.sh stop "$dir"; rm -rf "$dir"; }
trap cleanup EXIT
./scripts/services.sh start "$dir" "$pg_port" "$redis_port" --fast
export DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/keel"
export REDIS_URL="redis://127.0.0.1:$redis_port/0"
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
