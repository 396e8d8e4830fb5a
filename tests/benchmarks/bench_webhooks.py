"""Channel webhooks accepted per second by the real endpoint. Prints figures; asserts nothing.

    scripts/bench.sh [--smoke]          (make bench ARGS=...)
    .venv/bin/python tests/benchmarks/bench_webhooks.py [--smoke] [--deliveries N]

scripts/bench.sh starts throwaway PostgreSQL/Redis and runs `keel_bootstrap` first; this
script provisions its own brand (slug `bench-hooks`) with one Shopify connection, and
drops it again.

(1) accepted/s: N signed Shopify `orders/create` deliveries (4,000; smoke 400), plus 10 %
    resent (Shopify's retries, same event id), POSTed by 16 keep-alive client threads to
    `/hooks/<connection uuid>/` on a gunicorn serving the production settings (2 worker
    processes × 8 threads, the 2 cores of the target machine; the client shares them).
    Each request verifies the HMAC over the raw body, stores the receipt (one per event)
    and queues its processing task. Reported: deliveries/s (target >= 500/s), latency
    p50/p99/max (Shopify's deadline is 5 s), statuses.
(2) processed asynchronously without loss: a Celery worker (2 processes) on the `sync`
    queue then drains the receipts into orders. Reported: orders/s, and that receipts,
    processed receipts and orders each equal the number of distinct events.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# With DEBUG off the settings demand a Fernet key; a throwaway one protects nothing real.
if not os.environ.get("KEEL_FERNET_KEYS"):
    from cryptography.fernet import Fernet

    os.environ["KEEL_FERNET_KEYS"] = Fernet.generate_key().decode()

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django_tenants.utils import schema_context  # noqa: E402

from orders.models import Order  # noqa: E402
from sync import services  # noqa: E402
from sync.models import ReceiptStatus, WebhookReceipt  # noqa: E402
from tenants.models import Brand  # noqa: E402
from tenants.services import Owner, domain_for, provision_brand  # noqa: E402
from tests.fakes.shopify import FakeShopify, ShopifyWebhookSender  # noqa: E402

SLUG = "bench-hooks"
SECRET = "shpss_bench_webhook_secret_0001"
TARGET_PER_S = 500.0
CLIENT_THREADS = 16
SERVER_WORKERS = 2
SERVER_THREADS = 8
RESEND_SHARE = 0.10
WARM_UP = 100


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CI size: 400 deliveries.")
    parser.add_argument("--deliveries", type=int, help="Distinct events (default 4,000).")
    parser.add_argument("--server-workers", type=int, default=SERVER_WORKERS)
    parser.add_argument("--server-threads", type=int, default=SERVER_THREADS)
    # scripts/bench.sh passes every benchmark the same arguments: ignore the others'.
    args, _ = parser.parse_known_args(argv)
    args.deliveries = args.deliveries or (400 if args.smoke else 4_000)
    return args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT)])}


def clean_up() -> None:
    connection.set_schema_to_public()
    for brand in Brand.objects.filter(slug=SLUG):
        brand.delete(force_drop=True)


def build(deliveries: int) -> tuple[Brand, object, list]:
    brand = provision_brand(
        name="Bench hooks",
        slug=SLUG,
        owner=Owner(f"owner@{SLUG}.example", "Bench", "correct-horse-battery-staple"),
    )
    fake = FakeShopify(orders=deliveries + WARM_UP)  # used for its order bodies only
    with schema_context(brand.schema_name):
        conn = services.create_connection(
            connector="shopify",
            display_name="Bench shop",
            channel_key="shop",
            settings={"shop_domain": fake.shop},
            credentials={"access_token": "shpat_bench_token_000001", "webhook_secret": SECRET},
        )
    sender = ShopifyWebhookSender(secret=SECRET, shop_domain=fake.shop)
    events = [sender.delivery("orders/create", fake.order(i)) for i in fake.order_ids]
    return brand, conn, events


def start_server(port: int, log: Path, workers: int, threads: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "config.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--keep-alive",
        "30",
        "--log-level",
        "warning",
    ]
    with open(log, "wb") as out:
        return subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=child_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def start_worker(log: Path) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "sync", "-P",
        "prefork", "-c", "2", "--without-gossip", "--without-mingle", "-l", "WARNING",
    ]  # fmt: skip
    with open(log, "wb") as out:
        return subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=child_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def wait_until_serving(port: int, host: str, path: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path, headers={"Host": host})
            if conn.getresponse().status == 405:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not start")


def send(port: int, host: str, path: str, plan: list) -> tuple[float, list[float], list[int]]:
    """POST every delivery in `plan` from CLIENT_THREADS keep-alive connections."""
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()
    queue = list(reversed(plan))

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                if not queue:
                    break
                delivery = queue.pop()
            headers = {**delivery.headers, "Host": host}
            started = time.perf_counter()
            conn.request("POST", path, body=delivery.body, headers=headers)
            response = conn.getresponse()
            response.read()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses.append(response.status)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(CLIENT_THREADS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies, statuses


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench(args: argparse.Namespace) -> dict:
    data = ROOT / ".data" / "bench"
    data.mkdir(parents=True, exist_ok=True)
    brand, conn, events = build(args.deliveries)
    host = domain_for(brand.slug)
    path = services.webhook_path(conn)
    warm, timed = events[:WARM_UP], events[WARM_UP:]
    resent = timed[:: int(1 / RESEND_SHARE)]
    plan = [*timed, *resent]
    port = free_port()
    server_log = data / "bench-webhooks-server.log"
    server = start_server(port, server_log, args.server_workers, args.server_threads)
    try:
        wait_until_serving(port, host, path, server, server_log)
        send(port, host, path, warm)
        elapsed, latencies, statuses = send(port, host, path, plan)
    finally:
        stop(server)
    with schema_context(brand.schema_name):
        receipts = WebhookReceipt.objects.count()
    worker = start_worker(data / "bench-webhooks-worker.log")
    try:
        drain_started = time.perf_counter()
        with schema_context(brand.schema_name):
            waiting = WebhookReceipt.objects.filter(
                status__in=[ReceiptStatus.RECEIVED, ReceiptStatus.PROCESSING]
            )
            while waiting.exists():
                if worker.poll() is not None:
                    raise RuntimeError("worker exited")
                time.sleep(0.2)
            drained_s = time.perf_counter() - drain_started
            processed = WebhookReceipt.objects.filter(status=ReceiptStatus.PROCESSED).count()
            orders = Order.objects.count()
    finally:
        stop(worker)
    counts: dict[int, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return {
        "deliveries": len(plan),
        "resent": len(resent),
        "events": len(events),
        "accept_s": elapsed,
        "accepted_per_s": len(plan) / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
        "statuses": counts,
        "receipts": receipts,
        "processed": processed,
        "orders": orders,
        "drain_s": drained_s,
        "processed_per_s": len(events) / drained_s if drained_s else 0.0,
        "server": f"{args.server_workers}×{args.server_threads}",
    }


def report(result: dict, mode: str) -> str:
    r = result
    statuses = ", ".join(f"{n}×{code}" for code, n in sorted(r["statuses"].items()))
    rows = [
        (
            f"(1) deliveries accepted ({r['deliveries']:,}, {r['resent']:,} of them resent)",
            f"{r['accepted_per_s']:,.0f}/s  "
            f"({r['accept_s']:.2f} s; target >= {TARGET_PER_S:.0f}/s)",
        ),
        (
            "    latency p50 / p99 / max",
            f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f} / {r['max_ms']:.1f} ms  (deadline 5,000 ms)",
        ),
        ("    statuses", statuses),
        (
            "(2) processed by a 2-process worker, orders/s",
            f"{r['processed_per_s']:,.0f}/s  ({r['drain_s']:.2f} s)",
        ),
        (
            "    distinct events / receipts / processed / orders",
            f"{r['events']:,} / {r['receipts']:,} / {r['processed']:,} / {r['orders']:,}",
        ),
    ]
    width = max(len(label) for label, _ in rows)
    cpus = os.cpu_count()
    head = (
        f"Webhooks benchmark ({mode}; gunicorn {result['server']} processes×threads, "
        f"{CLIENT_THREADS} client threads, {cpus} CPUs, DEBUG={settings.DEBUG})"
    )
    return "\n".join([head, "-" * (width + 50), *(f"{a.ljust(width)}  {b}" for a, b in rows)])


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    clean_up()
    try:
        result = bench(args)
    finally:
        clean_up()
    mode = "smoke" if args.smoke else "full"
    print(report(result, mode))
    out = ROOT / ".data" / "bench" / f"webhooks-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {"benchmark": "webhooks", "mode": mode, "at": datetime.now(UTC).isoformat(), **result},
            indent=2,
            default=str,
        )
        + "\n"
    )
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
