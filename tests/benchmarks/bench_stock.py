"""Item-master import and stock ledger benchmarks. Prints figures; asserts nothing.

    scripts/bench.sh [--smoke]                                   (make bench ARGS=...)

scripts/bench.sh starts throwaway PostgreSQL/Redis and runs `keel_bootstrap` first; this
script provisions its own brands (slug prefix `bench-stock-`) and drops them again.

(a) import: a generated items CSV of 50,000 SKUs (smoke 2,000): 10,000 products with five
    variants each, every column filled, the last 1 % bundles of earlier SKUs. Measured
    end to end through the real path with Celery eager: `create_job` (file stored,
    validation task) and `confirm_job` (apply task, one transaction). Then the same file
    again, which must leave every row unchanged.
(b) movements/s: inventory.services.receive / adjust alternately, each movement its own
    transaction, on one connection and on 8 threads with a connection each (own SKUs,
    so the figure is commit throughput, not lock queueing). Ratio 8 writers / 1 writer.
(c) available-to-promise: inventory.services.available_to_promise() over 10,000 SKUs ×
    5 warehouses (smoke 1,000 SKUs) seeded with bulk inserts; median of 5 calls, both
    for the whole brand and for an explicit list of every SKU id.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Uploads of this run go to a scratch directory, never the developer's media folder.
MEDIA_DIR = tempfile.mkdtemp(prefix="keel-bench-media-")
os.environ["MEDIA_ROOT"] = MEDIA_DIR

import django  # noqa: E402

django.setup()
warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)

from django.core.files import File  # noqa: E402
from django.db import connection  # noqa: E402
from django_tenants.utils import schema_context  # noqa: E402

from catalog import imports  # noqa: E402
from catalog.gtin import gtin_check_digit  # noqa: E402
from catalog.models import SKU, ImportJob, ImportStatus, Product  # noqa: E402
from config.celery import app  # noqa: E402
from inventory import services as stock  # noqa: E402
from inventory.models import StockBalance, StockMovement, Warehouse  # noqa: E402
from tenants.models import Brand  # noqa: E402
from tenants.services import Owner, provision_brand  # noqa: E402
from tests.benchmarks.concurrency import time_writers  # noqa: E402

PREFIX = "bench-stock-"
PASSWORD = "correct-horse-battery-staple"
IMPORT_TARGET_S = 60.0
ATP_TARGET_MS = 200.0
WRITERS = 8
ATP_WAREHOUSES = 5
ATP_RUNS = 5


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CI size: small files and runs.")
    parser.add_argument("--skus", type=int, help="SKUs in the import (default 50,000).")
    parser.add_argument("--movements", type=int, help="Single-writer movements (default 2,000).")
    parser.add_argument("--atp-skus", type=int, help="SKUs for the ATP query (default 10,000).")
    # scripts/bench.sh passes every benchmark the same arguments (--runs, --brands, --out
    # are the provisioning benchmark's): ignore them, so its --out file is never overwritten.
    args, _ = parser.parse_known_args(argv)
    args.skus = args.skus or (2_000 if args.smoke else 50_000)
    args.movements = args.movements or (120 if args.smoke else 2_000)
    args.atp_skus = args.atp_skus or (1_000 if args.smoke else 10_000)
    return args


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def clean_up() -> None:
    connection.set_schema_to_public()
    for brand in Brand.objects.filter(slug__startswith=PREFIX):
        brand.delete(force_drop=True)


def new_brand(name: str) -> tuple[Brand, object]:
    slug = f"{PREFIX}{name}"
    brand = provision_brand(
        name=f"Bench {name}", slug=slug, owner=Owner(f"owner@{slug}.example", "Bench", PASSWORD)
    )
    with schema_context(brand.schema_name):
        from accounts.models import User

        owner = User.objects.get(email=f"owner@{slug}.example")
    return brand, owner


# --- (a) import ------------------------------------------------------------------------


def gtin(n: int) -> str:
    body = f"2{n:011d}"  # prefix 2: restricted circulation numbers, never a real product
    return body + str(gtin_check_digit(body))


def write_items_csv(path: Path, skus: int) -> None:
    bundles = max(skus // 100, 1)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(imports.ITEM_COLUMNS)
        for i in range(skus - bundles):
            writer.writerow(
                [
                    f"SKU-{i:06d}",
                    f"Product {i // 5:05d}",
                    f"Product {i // 5:05d} variant {i % 5}",
                    "Colour",
                    ("Navy", "Red", "Green", "Black", "White")[i % 5],
                    "Size",
                    ("S", "M", "L")[i % 3],
                    gtin(i),
                    "bench;summer",
                    "active",
                    f"{100 + i % 900}.5",
                    "g",
                    "30",
                    "20",
                    f"{1 + i % 9}.25",
                    "cm",
                    f"{2 + i % 50}.40",
                    "USD",
                    "no",
                    "yes" if i % 97 == 0 else "no",
                    "",
                ]
            )
        for b in range(bundles):
            writer.writerow(
                # sku, product, title, options and gtin blank, tags, status, the eight
                # measure/cost columns blank, hazmat, oversize, components
                [f"BUNDLE-{b:05d}", f"Bundle {b:05d}", "Two-pack", *[""] * 5, "bundle", "active"]
                + [""] * 8
                + ["no", "no", f"SKU-{2 * b:06d}*1;SKU-{2 * b + 1:06d}*2"]
            )


def run_import(path: Path, owner) -> dict[str, object]:
    with path.open("rb") as handle:
        upload_s, job = timed(
            lambda: imports.create_job(
                kind="items", upload=File(handle, name=path.name), user=owner
            )
        )
    job.refresh_from_db()
    if job.status != ImportStatus.READY:
        raise RuntimeError(f"import #{job.pk} is {job.status}: {job.report[:3]}")
    apply_s, _ = timed(lambda: imports.confirm_job(job, user=owner))
    job.refresh_from_db()
    if job.status != ImportStatus.APPLIED:
        raise RuntimeError(f"import #{job.pk} is {job.status}: {job.message}")
    return {
        "upload_and_validate_s": upload_s,
        "apply_s": apply_s,
        "total_s": upload_s + apply_s,
        "counts": job.counts,
    }


def bench_import(skus: int) -> dict[str, object]:
    brand, owner = new_brand("import")
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "items.csv"
        generate_s, _ = timed(lambda: write_items_csv(path, skus))
        size = path.stat().st_size
        with schema_context(brand.schema_name):
            first = run_import(path, owner)
            again = run_import(path, owner)
            rows = {
                "skus": SKU.objects.count(),
                "products": Product.objects.count(),
                "jobs": ImportJob.objects.count(),
            }
    return {
        "skus": skus,
        "file_mb": size / 1e6,
        "generate_s": generate_s,
        "first": first,
        "again": again,
        "rows_after": rows,
    }


# --- (b) movements ---------------------------------------------------------------------


def movement_loop(skus: list[SKU], warehouse: Warehouse, count: int) -> None:
    for i in range(count):
        sku = skus[(i // 2) % len(skus)]  # each receipt, then an adjustment of the same SKU
        if i % 2 == 0:
            stock.receive(sku=sku, warehouse=warehouse, quantity=3)
        else:
            stock.adjust(sku=sku, warehouse=warehouse, delta=-1, reason_code="correction")


def bench_movements(single: int) -> dict[str, object]:
    brand, _ = new_brand("ledger")
    per_writer = max(single // 4, 10)
    with schema_context(brand.schema_name):
        product = Product.objects.create(title="Ledger")
        skus = SKU.objects.bulk_create(
            [SKU(product=product, code=f"L-{i:03d}") for i in range((WRITERS + 1) * 4)]
        )
        warehouse = Warehouse.objects.create(code="MAIN", name="Main")
        # Warm-up: first-query costs (prepared plans, imports) are not per-movement costs.
        movement_loop(skus[:4], warehouse, 4)
        single_s, _ = timed(lambda: movement_loop(skus[:4], warehouse, single))

    def own(n: int) -> list:
        return skus[4 * (n + 1) : 4 * (n + 2)]

    concurrent_s = time_writers(
        brand.schema_name,
        WRITERS,
        warm=lambda n: movement_loop(own(n), warehouse, 2),
        work=lambda n: movement_loop(own(n), warehouse, per_writer),
    )
    with schema_context(brand.schema_name):
        written = StockMovement.objects.count()
    single_rate = single / single_s
    concurrent_rate = WRITERS * per_writer / concurrent_s
    return {
        "single_movements": single,
        "single_s": single_s,
        "single_per_s": single_rate,
        "writers": WRITERS,
        "concurrent_movements": WRITERS * per_writer,
        "concurrent_s": concurrent_s,
        "concurrent_per_s": concurrent_rate,
        "ratio": concurrent_rate / single_rate,
        "movements_in_ledger": written,
    }


# --- (c) available to promise ----------------------------------------------------------


def bench_atp(sku_count: int) -> dict[str, object]:
    brand, _ = new_brand("atp")
    rng = random.Random(7)
    with schema_context(brand.schema_name):
        products = Product.objects.bulk_create(
            [Product(title=f"ATP {i}") for i in range(sku_count // 5)], batch_size=2000
        )
        skus = SKU.objects.bulk_create(
            [SKU(product=products[i // 5], code=f"A-{i:06d}") for i in range(sku_count)],
            batch_size=2000,
        )
        warehouses = Warehouse.objects.bulk_create(
            [
                Warehouse(code=f"W{w}", name=f"Warehouse {w}", safety_buffer=w)
                for w in range(ATP_WAREHOUSES)
            ]
        )
        balances = []
        for sku in skus:
            for warehouse in warehouses:
                quantity = rng.randint(0, 500)
                balances.append(
                    StockBalance(
                        sku=sku,
                        warehouse=warehouse,
                        status="sellable",
                        quantity=quantity,
                        reserved=rng.randint(0, quantity // 4),
                    )
                )
            # Some damaged stock beside it, as a real brand has: rows the query must skip.
            if sku.pk % 10 == 0:
                balances.append(
                    StockBalance(sku=sku, warehouse=warehouses[0], status="damaged", quantity=2)
                )
        StockBalance.objects.bulk_create(balances, batch_size=5000)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE inventory_stockbalance")
            cursor.execute("ANALYZE inventory_warehouse")
        ids = [sku.pk for sku in skus]
        stock.available_to_promise()  # warm-up
        whole, listed = [], []
        for _ in range(ATP_RUNS):
            elapsed, result = timed(stock.available_to_promise)
            whole.append(elapsed * 1000)
            elapsed, listed_result = timed(lambda: stock.available_to_promise(sku_ids=ids))
            listed.append(elapsed * 1000)
    return {
        "skus": sku_count,
        "warehouses": ATP_WAREHOUSES,
        "pairs": len(result),
        "pairs_listed": len(listed_result),
        "whole_ms": summary(whole),
        "listed_ms": summary(listed),
    }


# --- report ----------------------------------------------------------------------------


def summary(samples: list[float]) -> dict:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "samples": samples,
    }


def server_facts() -> dict[str, str]:
    with connection.cursor() as cursor:
        facts = {}
        for name in ("server_version", "fsync", "synchronous_commit"):
            cursor.execute(f"SHOW {name}")
            facts[name] = cursor.fetchone()[0]
    return {**facts, "python": sys.version.split()[0], "cpus": str(os.cpu_count())}


def report(result: dict) -> str:
    a, b, c = result["import"], result["movements"], result["atp"]
    first, again = a["first"], a["again"]
    rows = [
        (
            f"(a) import {a['skus']:,} SKUs ({a['file_mb']:.1f} MB CSV), end to end",
            f"{first['total_s']:.2f} s  (target < {IMPORT_TARGET_S:.0f} s)",
        ),
        ("    upload + validation task", f"{first['upload_and_validate_s']:.2f} s"),
        ("    confirm + apply task (one transaction)", f"{first['apply_s']:.2f} s"),
        ("    rows per second", f"{a['skus'] / first['total_s']:,.0f}"),
        ("    counts", json.dumps(first["counts"])),
        ("    same file again, end to end", f"{again['total_s']:.2f} s"),
        ("    counts", json.dumps(again["counts"])),
        (
            "(b) movements/s, 1 writer",
            f"{b['single_per_s']:,.0f}/s  ({b['single_movements']} in {b['single_s']:.2f} s)",
        ),
        (
            f"    movements/s, {b['writers']} concurrent writers",
            f"{b['concurrent_per_s']:,.0f}/s  "
            f"({b['concurrent_movements']} in {b['concurrent_s']:.2f} s)",
        ),
        (f"    ratio {b['writers']} writers / 1 writer", f"{b['ratio']:.2f}x"),
        (
            f"(c) available_to_promise(), {c['skus']:,} SKUs x {c['warehouses']} warehouses",
            f"{c['whole_ms']['median']:.1f} ms median  (target < {ATP_TARGET_MS:.0f} ms, "
            f"{c['pairs']:,} pairs)",
        ),
        ("    min / max", f"{c['whole_ms']['min']:.1f} / {c['whole_ms']['max']:.1f} ms"),
        (
            f"    with sku_ids= all {c['skus']:,} ids, median",
            f"{c['listed_ms']['median']:.1f} ms",
        ),
    ]
    width = max(len(label) for label, _ in rows)
    facts = result["environment"]
    lines = [
        f"Stock benchmark ({result['mode']}; PostgreSQL {facts['server_version']}, "
        f"fsync={facts['fsync']}, synchronous_commit={facts['synchronous_commit']}, "
        f"{facts['cpus']} CPUs)",
        "-" * (width + 40),
        *(f"{label.ljust(width)}  {value}" for label, value in rows),
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # Tasks run in this process through the real task functions (and BrandTask's check).
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    clean_up()
    try:
        result = {
            "benchmark": "stock",
            "mode": "smoke" if args.smoke else "full",
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "environment": server_facts(),
            "import": bench_import(args.skus),
            "movements": bench_movements(args.movements),
            "atp": bench_atp(args.atp_skus),
        }
    finally:
        clean_up()
        for path in sorted(Path(MEDIA_DIR).rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        Path(MEDIA_DIR).rmdir()
    print(report(result))
    out = ROOT / ".data" / "bench" / f"stock-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
