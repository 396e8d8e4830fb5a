"""Order ingestion, routing and rule simulation benchmarks. Prints figures; asserts nothing.

    scripts/bench.sh [--smoke] [--profile]                       (make bench ARGS=...)

scripts/bench.sh starts throwaway PostgreSQL/Redis and runs `keel_bootstrap` first; this
script provisions its own brand (slug `bench-orders-net`) and drops it again.

The brand: five warehouses (West 3PL, Texas in-house, Pennsylvania 3PL, FBA, Atlanta
3PL), 200 SKUs mapped on two channels, stock everywhere except a few SKU × warehouse
gaps (so some rule targets run short and scoring or splits take over), and the typical
rule set of tests/orders published. Orders are a seeded mix of US states, order types,
service levels and one to three lines.

(1) ingest + reserve + route, orders/s: N orders (3,000; smoke 200) through
    orders.services.ingest_order, each its own transaction, on one connection; then N
    more split over 2 threads with a connection each (ratio 2 threads / 1); then N more
    over 2 forked processes, which is how workers run in production. The one-connection
    run also reports CPU per order (this process, and its PostgreSQL backend read from
    /proc), which stays meaningful when other work shares the machine, and the
    orders/s that CPU cost allows at most.
(2) routing latency, p50/p99: each single-thread ingest call as a whole; the facts
    gathering a routing attempt does (order facts, stock, rules, settings, warehouses);
    and orders.routing.decide alone over those same facts.
(3) rule-set simulation: 10,000 historical orders (smoke 1,000) bulk-inserted, then
    orders.services.simulate(draft, last=10,000) for a draft that adds a south-east rule.

--profile adds a cProfile of extra single-thread ingests and of one simulation, printing
where the time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import multiprocessing
import os
import pstats
import random
import statistics
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()
warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)

from django.db import connection, connections  # noqa: E402
from django_tenants.utils import schema_context  # noqa: E402

from catalog.models import SKU, ListingMapping, Product  # noqa: E402
from inventory import services as stock  # noqa: E402
from inventory.models import StockBalance, Warehouse  # noqa: E402
from orders import routing, services  # noqa: E402
from orders.models import Order, OrderLine, RoutingDecision, RoutingSettings  # noqa: E402
from orders.services import LineInput, OrderInput  # noqa: E402
from tenants.models import Brand  # noqa: E402
from tenants.services import Owner, provision_brand  # noqa: E402
from tests.benchmarks.concurrency import time_writers  # noqa: E402
from tests.orders.conftest import TYPICAL_RULES  # noqa: E402

PREFIX = "bench-orders-"
PASSWORD = "correct-horse-battery-staple"
THROUGHPUT_TARGET = 300.0  # orders/s on 2 cores
ROUTING_P99_TARGET_MS = 50.0
SIMULATION_TARGET_S = 10.0
WRITERS = 2  # threads, then processes: one per core of the target machine
SKUS = 200
CHANNELS = ("shop", "amazon")
STOCK_PER_ROW = 20_000
T0 = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)

# (code, kind, state, lat, lon, capabilities, priority)
WAREHOUSES = [
    ("WEST", "3pl", "CA", "34.05", "-118.24", ["parcel"], 20),
    ("TX", "in_house", "TX", "32.78", "-96.80", ["parcel", "expedited", "hazmat"], 10),
    ("PA", "3pl", "PA", "39.95", "-75.17", ["parcel", "ltl"], 30),
    ("FBA", "fba", "NV", "39.53", "-119.81", ["parcel"], 90),
    ("ATL", "3pl", "GA", "33.75", "-84.39", ["parcel"], 40),
]
# Roughly where US e-commerce orders ship to.
STATE_WEIGHTS = {
    "CA": 14, "TX": 9, "FL": 7, "NY": 7, "PA": 4, "IL": 4, "OH": 4, "GA": 4, "NC": 3,
    "MI": 3, "NJ": 3, "VA": 3, "WA": 3, "AZ": 3, "MA": 2, "TN": 2, "IN": 2, "MO": 2,
    "MD": 2, "WI": 2, "CO": 2, "MN": 2, "SC": 2, "AL": 1, "LA": 1, "KY": 1, "OR": 1,
    "OK": 1, "CT": 1, "UT": 1, "NV": 1, "AR": 1, "KS": 1, "NM": 1,
}  # fmt: skip
# The draft simulated in (3): the typical rules plus a south-east rule before them.
SOUTH_EAST_RULE = {
    "name": "South east from Atlanta",
    "conditions": {"state_in": ["GA", "FL", "SC", "NC", "AL", "TN"]},
    "actions": {"ship_from": "ATL"},
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CI size: 200 orders, 1,000 history.")
    parser.add_argument("--orders", type=int, help="Orders per throughput run (default 3,000).")
    parser.add_argument("--history", type=int, help="Orders simulated (default 10,000).")
    parser.add_argument("--profile", action="store_true", help="Print cProfile summaries.")
    # scripts/bench.sh passes every benchmark the same arguments (--runs, --brands, --out
    # are the provisioning benchmark's): ignore them, so its --out file is never overwritten.
    args, _ = parser.parse_known_args(argv)
    args.orders = args.orders or (200 if args.smoke else 3_000)
    args.history = args.history or (1_000 if args.smoke else 10_000)
    return args


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def latency(samples_s: list[float]) -> dict:
    ms = [s * 1000 for s in samples_s]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms),
        "mean_ms": statistics.fmean(ms),
    }


def clean_up() -> None:
    connection.set_schema_to_public()
    for brand in Brand.objects.filter(slug__startswith=PREFIX):
        brand.delete(force_drop=True)


# --- The brand -------------------------------------------------------------------------


def build_brand() -> Brand:
    slug = f"{PREFIX}net"
    brand = provision_brand(
        name="Bench orders", slug=slug, owner=Owner(f"owner@{slug}.example", "Bench", PASSWORD)
    )
    rng = random.Random(11)
    with schema_context(brand.schema_name):
        warehouses = Warehouse.objects.bulk_create(
            [
                Warehouse(
                    code=code,
                    name=f"{code} warehouse",
                    kind=kind,
                    state=state,
                    country="US",
                    latitude=Decimal(lat),
                    longitude=Decimal(lon),
                    capabilities=capabilities,
                    priority=priority,
                )
                for code, kind, state, lat, lon, capabilities, priority in WAREHOUSES
            ]
        )
        products = Product.objects.bulk_create(
            [Product(title=f"Bench product {i}", status="active") for i in range(SKUS // 4)]
        )
        skus = SKU.objects.bulk_create(
            [
                SKU(
                    product=products[i // 4],
                    code=f"B-{i:04d}",
                    title=f"Bench SKU {i}",
                    weight=Decimal(rng.choice([150, 300, 450, 900, 2500])),
                    weight_unit="g",
                    tags=["fragile"] if i % 17 == 0 else [],
                    is_hazmat=i % 50 == 7,
                )
                for i in range(SKUS)
            ]
        )
        ListingMapping.objects.bulk_create(
            [
                ListingMapping(channel=channel, external_sku=f"ext-{sku.code}", sku=sku)
                for channel in CHANNELS
                for sku in skus
            ]
        )
        balances = []
        for i, sku in enumerate(skus):
            for w, warehouse in enumerate(warehouses):
                # A few gaps: the rule's warehouse is sometimes short and scoring decides.
                if (i + w) % 9 == 0:
                    continue
                balances.append(
                    StockBalance(
                        sku=sku, warehouse=warehouse, status="sellable", quantity=STOCK_PER_ROW
                    )
                )
        StockBalance.objects.bulk_create(balances)
        services.publish_rule_set(services.draft_rule_set(actor=None, rules=TYPICAL_RULES))
        with connection.cursor() as cursor:
            for table in ("inventory_stockbalance", "catalog_sku", "catalog_listingmapping"):
                cursor.execute(f"ANALYZE {table}")
    return brand


def order_inputs(prefix: str, count: int, seed: int) -> list[OrderInput]:
    rng = random.Random(seed)
    states, weights = zip(*STATE_WEIGHTS.items(), strict=True)
    out = []
    for n in range(count):
        ext = f"{prefix}-{n:06d}"
        roll = rng.random()
        order_type = "wholesale" if roll < 0.04 else "subscription" if roll < 0.10 else "dtc"
        expedited = order_type == "dtc" and rng.random() < 0.08
        codes = rng.sample(range(SKUS), rng.choice([1, 1, 1, 2, 2, 3]))
        lines = [
            LineInput(
                external_line_id=f"{ext}-{i}",
                external_sku=f"ext-B-{code:04d}",
                quantity=rng.randint(20, 40) if order_type == "wholesale" else rng.randint(1, 3),
                unit_price=Decimal(rng.choice(["9.90", "24.00", "49.50", "120.00"])),
                title=f"Bench SKU {code}",
            )
            for i, code in enumerate(codes)
        ]
        placed = T0 + timedelta(seconds=n)
        out.append(
            OrderInput(
                channel=rng.choice(CHANNELS),
                external_id=ext,
                placed_at=placed,
                updated_at=placed,
                currency="USD",
                lines=lines,
                order_type=order_type,
                service_level="expedited" if expedited else "standard",
                customer_name=f"Customer {n}",
                ship_name=f"Customer {n}",
                ship_line1=f"{n} Main St",
                ship_city="Town",
                ship_state=rng.choices(states, weights)[0],
                ship_postal_code=f"{rng.randint(10000, 99999)}",
                ship_country="US",
            )
        )
    return out


# --- (1) throughput and (2) whole-call latency -----------------------------------------


def ingest_all(orders: list[OrderInput], samples: list[float] | None = None) -> None:
    for data in orders:
        start = time.perf_counter()
        services.ingest_order(data)
        if samples is not None:
            samples.append(time.perf_counter() - start)


def backend_cpu_s() -> float | None:
    """CPU seconds this connection's PostgreSQL backend has used (None when the server
    is not on this machine)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def run_single(brand: Brand, orders: list[OrderInput]) -> dict:
    with schema_context(brand.schema_name):
        # Warm-up: first-query costs (imports, prepared plans, caches) are not per-order.
        ingest_all(order_inputs("WARM", 20, seed=3))
        calls: list[float] = []
        pg_before, cpu_before = backend_cpu_s(), time.process_time()
        wall_s, _ = timed(lambda: ingest_all(orders, calls))
        python_cpu_s = time.process_time() - cpu_before
        pg_after = backend_cpu_s()
    pg_cpu_s = None if pg_before is None else pg_after - pg_before
    return {
        "wall_s": wall_s,
        "calls": calls,
        "python_cpu_ms": python_cpu_s * 1000 / len(orders),
        "pg_cpu_ms": None if pg_cpu_s is None else pg_cpu_s * 1000 / len(orders),
    }


def run_threads(brand: Brand, orders: list[OrderInput]) -> float:
    return time_writers(
        brand.schema_name,
        WRITERS,
        warm=lambda n: ingest_all(order_inputs(f"WARMT{n}", 2, seed=10 + n)),
        work=lambda n: ingest_all(orders[n::WRITERS]),
    )


def run_processes(brand: Brand, orders: list[OrderInput]) -> float:
    """Like run_threads with forked processes: how Celery prefork workers and gunicorn
    run ingestion, free of the GIL."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(WRITERS + 1)

    def worker(n: int) -> None:
        try:
            with schema_context(brand.schema_name):
                ingest_all(order_inputs(f"WARMP{n}", 2, seed=20 + n))
                barrier.wait()
                ingest_all(orders[n::WRITERS])
        except BaseException:
            barrier.abort()
            raise
        finally:
            connections.close_all()

    # A forked child must never use the parent's socket: each opens its own connection.
    connections.close_all()
    processes = [context.Process(target=worker, args=(n,)) for n in range(WRITERS)]
    for p in processes:
        p.start()
    barrier.wait()
    started = time.perf_counter()
    for p in processes:
        p.join()
    elapsed = time.perf_counter() - started
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} ingest processes failed (exit codes {failed})")
    return elapsed


PAGE = 250  # a connector page


def run_bulk(brand: Brand, orders: list[OrderInput], writers: int = 1) -> float:
    """orders.services.ingest_orders over pages of PAGE, by `writers` forked processes
    (each its own connection), the way sync workers ingest a channel page."""
    pages = [orders[i : i + PAGE] for i in range(0, len(orders), PAGE)]
    if writers == 1:
        with schema_context(brand.schema_name):
            services.ingest_orders(order_inputs("WARMB", 20, seed=31))
            elapsed, _ = timed(lambda: [services.ingest_orders(p) for p in pages])
        return elapsed
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(writers + 1)

    def worker(n: int) -> None:
        try:
            with schema_context(brand.schema_name):
                services.ingest_orders(order_inputs(f"WARMB{n}", 2, seed=40 + n))
                barrier.wait()
                for page in pages[n::writers]:
                    services.ingest_orders(page)
        except BaseException:
            barrier.abort()
            raise
        finally:
            connections.close_all()

    connections.close_all()
    processes = [context.Process(target=worker, args=(n,)) for n in range(writers)]
    for p in processes:
        p.start()
    barrier.wait()
    started = time.perf_counter()
    for p in processes:
        p.join()
    elapsed = time.perf_counter() - started
    if any(p.exitcode != 0 for p in processes):
        raise RuntimeError("bulk ingest processes failed")
    return elapsed


def bench_throughput(brand: Brand, count: int) -> dict:
    bulk_s = run_bulk(brand, order_inputs("BLK", count, seed=4))
    bulk2_s = run_bulk(brand, order_inputs("BL2", count, seed=5), writers=WRITERS)
    single = run_single(brand, order_inputs("ONE", count, seed=1))
    threaded_s = run_threads(brand, order_inputs("TWO", count, seed=2))
    processes_s = run_processes(brand, order_inputs("PRC", count, seed=6))
    with schema_context(brand.schema_name):
        bench_orders = Order.objects.filter(external_id__regex=r"^(ONE|TWO|PRC|BLK|BL2)-")
        statuses = Counter(bench_orders.values_list("status", flat=True))
        layers = Counter(
            RoutingDecision.objects.filter(order__in=bench_orders).values_list("layer", flat=True)
        )
    single_rate = count / single["wall_s"]
    cpu_ms = single["python_cpu_ms"] + (single["pg_cpu_ms"] or 0)
    return {
        "orders": count,
        "bulk_s": bulk_s,
        "bulk_per_s": count / bulk_s,
        "bulk2_s": bulk2_s,
        "bulk2_per_s": count / bulk2_s,
        "single_s": single["wall_s"],
        "single_per_s": single_rate,
        "python_cpu_ms_per_order": single["python_cpu_ms"],
        "pg_cpu_ms_per_order": single["pg_cpu_ms"],
        # With every core busy and nothing else running: the most this path can do here.
        "cpu_bound_ceiling_per_s": (os.cpu_count() or 1) * 1000 / cpu_ms,
        "writers": WRITERS,
        "threaded_s": threaded_s,
        "threaded_per_s": count / threaded_s,
        "threads_ratio": count / threaded_s / single_rate,
        "processes_s": processes_s,
        "processes_per_s": count / processes_s,
        "processes_ratio": count / processes_s / single_rate,
        "order_statuses": dict(statuses),
        "decision_layers": dict(layers),
        "ingest_call": latency(single["calls"]),
    }


# --- (2) routing latency -------------------------------------------------------------------


def gather(order: Order, lines: list[OrderLine]) -> dict:
    """The reads one routing attempt in orders.services._route_new makes before deciding."""
    facts = services.order_facts(order, lines)
    atp = stock.available_to_promise(sku_ids={s for line in facts.lines for s in line.needs()})
    _, rules = services.published_rules()
    cfg = RoutingSettings.objects.get()  # ingest_order created it
    return {
        "facts": facts,
        "warehouses": services.warehouse_infos(),
        "atp": atp,
        "rules": rules,
        "threshold": float(cfg.confidence_threshold),
        "weights": routing.Weights(
            distance=float(cfg.weight_distance),
            cover=float(cfg.weight_cover),
            cutoff=float(cfg.weight_cutoff),
            packages=float(cfg.weight_packages),
        ),
    }


def bench_routing(brand: Brand) -> dict:
    with schema_context(brand.schema_name):
        orders = list(
            Order.objects.filter(external_id__startswith="ONE-")
            .order_by("pk")
            .prefetch_related("lines")
        )
        gather_s, inputs = [], []
        for order in orders:
            lines = list(order.lines.all())
            elapsed, facts = timed(lambda order=order, lines=lines: gather(order, lines))
            gather_s.append(elapsed)
            inputs.append(facts)
        decide_s = []
        outcomes: Counter[str] = Counter()
        for kw in inputs:
            elapsed, decision = timed(lambda kw=kw: routing.decide(**kw))
            decide_s.append(elapsed)
            outcomes[decision.layer] += 1
    return {
        "orders": len(orders),
        "gather": latency(gather_s),
        "decide": latency(decide_s),
        "decide_outcomes_now": dict(outcomes),
    }


# --- (3) simulation --------------------------------------------------------------------


def insert_history(count: int, seed: int) -> None:
    """Routed orders with mapped lines, inserted in bulk: simulation only reads them."""
    sku_ids = list(SKU.objects.order_by("pk").values_list("pk", flat=True))
    inputs = order_inputs("HIST", count, seed=seed)
    created = Order.objects.bulk_create(
        [
            Order(
                channel=data.channel,
                external_id=data.external_id,
                placed_at=data.placed_at - timedelta(days=30),
                channel_updated_at=data.updated_at - timedelta(days=30),
                status="routed",
                order_type=data.order_type,
                service_level=data.service_level,
                customer_name=data.customer_name,
                ship_name=data.ship_name,
                ship_line1=data.ship_line1,
                ship_city=data.ship_city,
                ship_state=data.ship_state,
                ship_postal_code=data.ship_postal_code,
                ship_country=data.ship_country,
                currency=data.currency,
                total=sum((ln.unit_price * ln.quantity for ln in data.lines), Decimal("0")),
            )
            for data in inputs
        ],
        batch_size=2_000,
    )
    OrderLine.objects.bulk_create(
        [
            OrderLine(
                order=order,
                external_line_id=line.external_line_id,
                external_sku=line.external_sku,
                sku_id=sku_ids[int(line.external_sku.rsplit("-", 1)[1])],
                title=line.title,
                quantity=line.quantity,
                unit_price=line.unit_price,
            )
            for order, data in zip(created, inputs, strict=True)
            for line in data.lines
        ],
        batch_size=5_000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE orders_order")
        cursor.execute("ANALYZE orders_orderline")


def bench_simulation(brand: Brand, history: int, profile: bool) -> dict:
    with schema_context(brand.schema_name):
        insert_s, _ = timed(lambda: insert_history(history, seed=4))
        draft = services.draft_rule_set(actor=None, rules=[SOUTH_EAST_RULE, *TYPICAL_RULES])
        services.simulate(draft, last=50)  # warm-up
        simulate_s, rows = timed(lambda: services.simulate(draft, last=history))
        profiled = profile_call(lambda: services.simulate(draft, last=history)) if profile else ""
    changed = [r for r in rows if r.changed]
    return {
        "history": history,
        "insert_s": insert_s,
        "simulate_s": simulate_s,
        "rows": len(rows),
        "changed": len(changed),
        "orders_per_s": len(rows) / simulate_s,
        "profile": profiled,
    }


# --- Profiling -------------------------------------------------------------------------


def profile_call(fn: Callable[[], object], top: int = 25) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def profile_ingest(brand: Brand, count: int) -> str:
    orders = order_inputs("PROF", count, seed=5)
    with schema_context(brand.schema_name):
        return profile_call(lambda: ingest_all(orders))


# --- Report ----------------------------------------------------------------------------


def server_facts() -> dict[str, str]:
    with connection.cursor() as cursor:
        facts = {}
        for name in ("server_version", "fsync", "synchronous_commit"):
            cursor.execute(f"SHOW {name}")
            facts[name] = cursor.fetchone()[0]
    return {**facts, "python": sys.version.split()[0], "cpus": str(os.cpu_count())}


def report(result: dict) -> str:
    t, r, s = result["throughput"], result["routing"], result["simulation"]
    call = t["ingest_call"]
    mix = ", ".join(f"{k} {v}" for k, v in sorted(t["decision_layers"].items()))
    pg_cpu = "n/a" if t["pg_cpu_ms_per_order"] is None else f"{t['pg_cpu_ms_per_order']:.1f} ms"
    rows = [
        (
            f"(1) ingest+reserve+route, pages of {PAGE} (ingest_orders), 1 connection",
            f"{t['bulk_per_s']:,.0f} orders/s  ({t['bulk_s']:.2f} s; "
            f"{t['bulk_per_s'] / t['single_per_s']:.1f}x one-at-a-time)",
        ),
        (
            f"    pages of {PAGE}, {t['writers']} processes",
            f"{t['bulk2_per_s']:,.0f} orders/s  ({t['bulk2_s']:.2f} s; "
            f"target >= {THROUGHPUT_TARGET:.0f}/s)",
        ),
        (
            f"    one order per call (ingest_order), 1 connection ({t['orders']:,} orders)",
            f"{t['single_per_s']:,.0f} orders/s  ({t['single_s']:.2f} s)",
        ),
        (
            f"    {t['writers']} threads, a connection each ({t['orders']:,} orders)",
            f"{t['threaded_per_s']:,.0f} orders/s  ({t['threaded_s']:.2f} s; "
            f"target >= {THROUGHPUT_TARGET:.0f}/s)",
        ),
        (f"    ratio {t['writers']} threads / 1", f"{t['threads_ratio']:.2f}x"),
        (
            f"    {t['writers']} processes, a connection each ({t['orders']:,} orders)",
            f"{t['processes_per_s']:,.0f} orders/s  ({t['processes_s']:.2f} s; "
            f"{t['processes_ratio']:.2f}x)",
        ),
        (
            "    CPU per order, 1 connection: Python / PostgreSQL backend",
            f"{t['python_cpu_ms_per_order']:.1f} ms / {pg_cpu}",
        ),
        (
            f"    ceiling if all {result['environment']['cpus']} CPUs did only this",
            f"{t['cpu_bound_ceiling_per_s']:,.0f} orders/s",
        ),
        ("    routing decisions by layer", mix),
        (
            "(2) whole ingest call, p50 / p99",
            f"{call['p50_ms']:.1f} / {call['p99_ms']:.1f} ms  (max {call['max_ms']:.1f})",
        ),
        (
            "    routing facts gathering (reads), p50 / p99",
            f"{r['gather']['p50_ms']:.2f} / {r['gather']['p99_ms']:.2f} ms",
        ),
        (
            "    orders.routing.decide alone, p50 / p99",
            f"{r['decide']['p50_ms']:.3f} / {r['decide']['p99_ms']:.3f} ms  "
            f"(target p99 < {ROUTING_P99_TARGET_MS:.0f} ms)",
        ),
        (
            f"(3) simulate a draft over {s['history']:,} historical orders",
            f"{s['simulate_s']:.2f} s  (target < {SIMULATION_TARGET_S:.0f} s; "
            f"{s['changed']:,} of {s['rows']:,} would change)",
        ),
        ("    bulk insert of the history (not timed above)", f"{s['insert_s']:.2f} s"),
    ]
    width = max(len(label) for label, _ in rows)
    facts = result["environment"]
    lines = [
        f"Orders benchmark ({result['mode']}; PostgreSQL {facts['server_version']}, "
        f"fsync={facts['fsync']}, synchronous_commit={facts['synchronous_commit']}, "
        f"{facts['cpus']} CPUs)",
        "-" * (width + 44),
        *(f"{label.ljust(width)}  {value}" for label, value in rows),
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    clean_up()
    try:
        brand = build_brand()
        result = {
            "benchmark": "orders",
            "mode": "smoke" if args.smoke else "full",
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "environment": server_facts(),
            "throughput": bench_throughput(brand, args.orders),
            "routing": bench_routing(brand),
            "simulation": bench_simulation(brand, args.history, args.profile),
        }
        if args.profile:
            result["ingest_profile"] = profile_ingest(brand, min(args.orders, 500))
    finally:
        clean_up()
    print(report(result))
    if args.profile:
        print("\ncProfile, single-thread ingest:\n" + result["ingest_profile"])
        print("\ncProfile, simulation:\n" + result["simulation"]["profile"])
    out = ROOT / ".data" / "bench" / f"orders-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
