"""Shopify order backfill against the fake Shopify, on the wall clock. Prints figures;
asserts nothing. No Django, no database.

    .venv/bin/python tests/benchmarks/bench_shopify_backfill.py [--smoke] [--orders N]

Backfills N Shopify-shaped orders (default 50,000; smoke 12,500) through the real connector
and SDK client from a FakeShopify serving 250 orders per page with the documented REST
leaky bucket (40 requests, leaking 2 per second). The least wall time the limit allows is
(pages − 40) / 2 s: the first 40 requests may go at once, the rest at 2 per second. Reported:
wall time, that floor, their ratio (target ≤ 1.25: the client neither idles nor trips the
limit), 429 answers (target 0), and that every order arrived exactly once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT)]

import connectors.shopify as shopify_plugin  # noqa: E402
from connectors.clock import SystemClock  # noqa: E402
from connectors.http import EgressPolicy, HttpContext  # noqa: E402
from connectors.manager import make_test_manager  # noqa: E402
from connectors.ratelimit import pages_rate_floor  # noqa: E402
from connectors.state import MemoryState  # noqa: E402
from tests.fakes.shopify import FakeShopify  # noqa: E402

TARGET_RATIO = 1.25
PAGE_SIZE = 250


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CI size: 12,500 orders (50 pages).")
    parser.add_argument("--orders", type=int, help="Orders to backfill (default 50,000).")
    parser.add_argument("--bucket", type=int, default=40, help="Leaky bucket size (40).")
    parser.add_argument("--leak", type=float, default=2.0, help="Requests leaked per second (2).")
    # scripts/bench.sh passes every benchmark the same arguments: ignore the others'.
    args, _ = parser.parse_known_args(argv)
    if args.orders is None:
        args.orders = 12_500 if args.smoke else 50_000
    return args


def backfill(orders: int, bucket: int, leak: float) -> dict[str, object]:
    clock = SystemClock()
    http = HttpContext(clock=clock, egress=EgressPolicy.permissive())
    with FakeShopify(clock=clock, orders=orders, bucket_size=bucket, leak_rate=leak) as fake:
        fake.prerender()
        connector = make_test_manager(shopify_plugin).hook.keel_connector_factory(
            name="shopify",
            settings={
                "shop_domain": fake.shop,
                "api_base_url": fake.url,
                "backfill_days": 3650,
                "orders_page_size": PAGE_SIZE,
                "rest_bucket_size": bucket,
                "rest_leak_rate": leak,
            },
            credentials={
                "access_token": fake.access_token,
                "webhook_secret": "bench-webhook-secret",
            },
            http=http,
            state=MemoryState(),
            clock=clock,
        )
        seen: set[str] = set()
        received = pages = 0
        cursor = None
        started = time.perf_counter()
        while True:
            result = connector.pull_orders(cursor=cursor)
            pages += 1
            received += len(result.items)
            seen.update(order.external_id for order in result.items)
            cursor = result.next_cursor
            if not result.has_more:
                break
        wall = time.perf_counter() - started
        connector.close()
        statuses = fake.journal.statuses()
    floor = pages_rate_floor(pages, bucket, leak)
    return {
        "orders": orders,
        "received": received,
        "unique": len(seen),
        "pages": pages,
        "requests": len(statuses),
        "throttled_429": statuses.count(429),
        "wall_s": round(wall, 3),
        "floor_s": floor,
        "ratio": round(wall / floor, 4) if floor else None,
        "orders_per_s": round(received / wall, 1) if wall else None,
        "bucket": bucket,
        "leak_per_s": leak,
    }


def report(result: dict[str, object]) -> str:
    ratio = result["ratio"]
    verdict = (
        f"{ratio:.3f}x the floor (target <= {TARGET_RATIO}x)"
        if ratio is not None
        else "n/a (all pages fit in the bucket's burst)"
    )
    rows = [
        ("orders backfilled (unique / received)", f"{result['unique']:,} / {result['received']:,}"),
        ("pages of 250", f"{result['pages']} ({result['requests']} requests)"),
        ("wall time", f"{result['wall_s']:.2f} s"),
        ("least the limit allows", f"{result['floor_s']:.2f} s  ((pages - bucket) / leak)"),
        ("wall / floor", verdict),
        ("429 answers", f"{result['throttled_429']} (target 0)"),
        ("throughput", f"{result['orders_per_s']:,} orders/s"),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(
        [
            f"Shopify backfill ({result['mode']}; bucket {result['bucket']}, "
            f"leak {result['leak_per_s']}/s, {os.cpu_count()} CPUs)",
            "-" * (width + 44),
            *(f"{label.ljust(width)}  {value}" for label, value in rows),
        ]
    )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    result = {
        "benchmark": "shopify_backfill",
        "mode": "smoke" if args.smoke else "full",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        **backfill(args.orders, args.bucket, args.leak),
    }
    print(report(result))
    out = ROOT / ".data" / "bench" / f"shopify-backfill-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
