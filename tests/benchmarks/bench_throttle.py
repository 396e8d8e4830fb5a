"""Per-brand throttle fairness: brand B's API latency while brand A floods. Prints figures;
asserts nothing (RELIABILITY 24e asks that B's p95 changes by less than 20 %).

    scripts/bench.sh [--smoke]          (make bench ARGS=...)
    .venv/bin/python tests/benchmarks/bench_throttle.py [--smoke] [--requests N]

scripts/bench.sh starts throwaway PostgreSQL/Redis and runs `keel_bootstrap` first; this
script provisions two brands (slugs `bench-flood`, `bench-steady`), each with a read API
key, serves the production settings with gunicorn (2 workers × 8 threads) and drops both
brands again.

(1) baseline: B's key sends N requests (400; smoke 100) to GET /api/v1/users/ from 2
    keep-alive client threads, alone. Reported: p50/p95/max latency.
(2) under flood: the same, while A's key hammers the same endpoint from 4 threads as fast
    as the server answers, at well over 10× its budget (API_RATE_LIMIT is 60/min here, so
    nearly all of A's requests are answered 429 by the throttle). Reported: B's p50/p95/max,
    the change of B's p95 against (1), B's statuses (all must be 200), and A's request
    count and statuses (429s carry Retry-After).
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# With DEBUG off the settings demand a Fernet key; a throwaway one protects nothing real.
if not os.environ.get("KEEL_FERNET_KEYS"):
    from cryptography.fernet import Fernet

    os.environ["KEEL_FERNET_KEYS"] = Fernet.generate_key().decode()
# The budget per key the flood exceeds; the server process inherits it.
os.environ["API_RATE_LIMIT"] = "60/min"

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django_tenants.utils import schema_context  # noqa: E402

from accounts.models import User  # noqa: E402
from accounts.services import create_api_key  # noqa: E402
from tenants.models import Brand  # noqa: E402
from tenants.services import Owner, domain_for, provision_brand  # noqa: E402

FLOOD, STEADY = "bench-flood", "bench-steady"
PATH = "/api/v1/users/"
FLOOD_THREADS = 4
STEADY_THREADS = 2


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CI size: 100 requests.")
    parser.add_argument("--requests", type=int, help="Brand B's requests per phase (400).")
    # scripts/bench.sh passes every benchmark the same arguments: ignore the others'.
    args, _ = parser.parse_known_args(argv)
    args.requests = args.requests or (100 if args.smoke else 400)
    return args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_up() -> None:
    connection.set_schema_to_public()
    for brand in Brand.objects.filter(slug__in=[FLOOD, STEADY]):
        brand.delete(force_drop=True)


def provision(slug: str) -> str:
    provision_brand(
        name=slug.replace("-", " ").title(),
        slug=slug,
        owner=Owner(f"owner@{slug}.example", "Bench", "correct-horse-battery-staple"),
    )
    return provision_key(slug)


def provision_key(slug: str) -> str:
    connection.set_schema_to_public()
    schema = Brand.objects.get(slug=slug).schema_name
    with schema_context(schema):
        owner = User.objects.get(email=f"owner@{slug}.example")
        return create_api_key(actor=owner, name="Bench", scope="read").secret


def start_server(port: int, log: Path) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "gunicorn", "config.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", "2", "--worker-class", "gthread",
        "--threads", "8", "--keep-alive", "30", "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT)])}
    with open(log, "wb") as out:
        return subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def wait_until_serving(port: int, host: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", PATH, headers={"Host": host})
            if conn.getresponse().status == 401:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not start")


def get(conn: http.client.HTTPConnection, host: str, key: str) -> tuple[int, float, bool]:
    started = time.perf_counter()
    conn.request("GET", PATH, headers={"Host": host, "Authorization": f"Api-Key {key}"})
    response = conn.getresponse()
    response.read()
    return response.status, time.perf_counter() - started, bool(response.getheader("Retry-After"))


def steady(port: int, host: str, key: str, total: int) -> tuple[list[float], Counter]:
    latencies: list[float] = []
    statuses: Counter = Counter()
    lock = threading.Lock()
    remaining = [total]

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
            status, elapsed, _ = get(conn, host, key)
            with lock:
                latencies.append(elapsed)
                statuses[status] += 1
            # B calls at a client's pace, not flat out: its budget is 60/min too.
            time.sleep(0.01)

    threads = [threading.Thread(target=client) for _ in range(STEADY_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, statuses


def flood(port: int, host: str, key: str, stop_event: threading.Event) -> Counter:
    statuses: Counter = Counter()
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while not stop_event.is_set():
            status, _, retry_after = get(conn, host, key)
            with lock:
                statuses[status] += 1
                statuses["429 with Retry-After"] += status == 429 and retry_after

    threads = [threading.Thread(target=client) for _ in range(FLOOD_THREADS)]
    for t in threads:
        t.start()
    stop_event.wait()
    for t in threads:
        t.join()
    return statuses


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def report(label: str, latencies: list[float]) -> float:
    p95 = percentile(latencies, 0.95)
    print(
        f"  {label}: p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p95 {p95 * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
    )
    return p95


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    clean_up()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-throttle-{os.getpid()}.log"
    server = None
    try:
        flood_key, steady_key = provision(FLOOD), provision(STEADY)
        connection.set_schema_to_public()
        port = free_port()
        server = start_server(port, log)
        flood_host, steady_host = domain_for(FLOOD), domain_for(STEADY)
        wait_until_serving(port, steady_host, server, log)
        print(f"Throttle fairness: brand B GET {PATH} ({args.requests} requests per phase)")

        # B's own budget must not be what limits it (the benchmark measures A's effect on
        # B): B spreads its requests over keys of its own, 50 per key.
        keys = [steady_key] + [provision_key(STEADY) for _ in range(args.requests // 50)]
        baseline = run_steady(port, steady_host, keys, args.requests)
        base_p95 = report("B alone", baseline[0])

        stop_event = threading.Event()
        flood_result: list[Counter] = []
        flooder = threading.Thread(
            target=lambda: flood_result.append(flood(port, flood_host, flood_key, stop_event))
        )
        flooder.start()
        time.sleep(1.0)  # A is already over its budget when B starts
        keys = [provision_key(STEADY) for _ in range(args.requests // 50 + 1)]
        loaded = run_steady(port, steady_host, keys, args.requests)
        stop_event.set()
        flooder.join()
        loaded_p95 = report("B while A floods", loaded[0])
        change = (loaded_p95 - base_p95) / base_p95 * 100
        print(f"  B p95 change: {change:+.1f} % (target < 20 %)")
        print(f"  B statuses alone: {dict(baseline[1])}, under flood: {dict(loaded[1])}")
        print(f"  A statuses: {dict(flood_result[0])}")
    finally:
        if server is not None:
            stop(server)
        clean_up()


def run_steady(port: int, host: str, keys: list[str], total: int) -> tuple[list[float], Counter]:
    """B's requests, at most 50 per key so B itself stays under its 60/min budgets."""
    latencies: list[float] = []
    statuses: Counter = Counter()
    for index, key in enumerate(keys):
        share = min(50, total - index * 50)
        if share <= 0:
            break
        more, codes = steady(port, host, key, share)
        latencies += more
        statuses += codes
    return latencies, statuses


if __name__ == "__main__":
    main(sys.argv[1:])
