"""The demo brand: the sandbox channel, 3PL and carrier, two warehouses and the sandbox's
SKUs, so `make run` shows orders arriving, routing, shipping and stock moving with no
external account (beat polls the sandbox every minute); plus a year of the sandbox
channel's sales from before the connection (imported like a brand's own history, see
forecasting.history_import) and two suppliers, so forecasts, segments and the
replenishment board have something to work on from the first minute.

Called by `keel_bootstrap --demo` inside the demo brand's schema. Idempotent: each part is
skipped when the brand already has it (connections, imported history, suppliers).
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db import transaction

from catalog import services as catalog
from catalog.models import SKU
from connectors.sandbox import CARRIER, CHANNEL, THREEPL
from connectors.sandbox.connectors import WAREHOUSE as SANDBOX_LOCATION
from connectors.sandbox.connectors import channel_history
from connectors.sandbox.simulation import demo_skus
from connectors.types import OrderStatus
from forecasting import services as forecasting
from forecasting.history_import import SaleRow, load_sales
from forecasting.models import ImportedSale, RunKind
from inventory import services as stock
from inventory.models import Warehouse
from orders.models import Order
from purchasing import services as purchasing
from purchasing.models import Supplier
from replenishment import services as replenishment
from sync import services
from sync.models import ACTIVE_RUN_STATUSES, Connection, RunTrigger, SyncRun

# (code, name, kind, city, state, postal code, latitude, longitude, opening units per SKU).
# About seven weeks of the channel's sales between them (≈ 35 units a SKU a day), the cover
# a brand buying on a four-week lead time holds; the 3PL's own count (THREEPL_STOCK and up)
# replaces the NJ figure at its first stock pull.
WAREHOUSES = (
    ("NJ-3PL", "Sandbox 3PL, Edison NJ", "3pl", "Edison", "NJ", "08817", "40.52", "-74.41", 1200),
    (
        "CA-HQ",
        "Our warehouse, Ontario CA",
        "in_house",
        "Ontario",
        "CA",
        "91761",
        "34.06",
        "-117.65",
        400,
    ),
)
POLL_SECONDS = 60
THREEPL_STOCK = 1200
CHANNEL_SETTINGS = {"seed": 42, "orders_per_day": 240, "backfill_days": 2}
HISTORY_DAYS = 365
FIRST_PULL_RUNS = 10  # follow-up runs the set-up waits for before leaving it to the worker
# (code, name, lead time days, terms, item prefixes supplied, unit cost per item)
SUPPLIERS = (
    ("BLANKS", "Blank Apparel Co.", 28, "Net 30", ("TEE", "HOOD")),
    ("CAPWORKS", "Cap Works Ltd.", 14, "Net 15", ("CAP",)),
)
UNIT_COST = {"TEE": Decimal("6.50"), "HOOD": Decimal("17.80"), "CAP": Decimal("4.75")}
# (MOQ, case pack) per item: hoodies ship six to a carton, tees and caps by the dozen.
PACKING = {"TEE": (48, 12), "HOOD": (24, 6), "CAP": (48, 24)}


def connect_demo() -> list[str]:
    """Set up the demo brand: connections, sales history, suppliers (each once)."""
    lines = _connections() if not Connection.objects.exists() else []
    lines += _first_orders() + _suppliers() + _history()
    return lines or ["The demo brand is already set up."]


def _connections() -> list[str]:
    with transaction.atomic():
        warehouses = _warehouses()
        skus = _catalog()
        for warehouse, units in warehouses:
            for sku in skus:
                stock.receive(sku=sku, warehouse=warehouse, quantity=units, note="Demo stock")
        channel = services.create_connection(
            connector=CHANNEL,
            display_name="Sandbox store",
            channel_key="sandbox",
            settings={**CHANNEL_SETTINGS, "skus": [s.code for s in skus]},
            credentials={"webhook_secret": secrets.token_urlsafe(24)},
            poll_interval=POLL_SECONDS,
        )
        for sku in skus:
            catalog.map_listing(
                channel=channel.channel_key,
                external_sku=sku.code,
                sku=sku,
                external_listing_id=f"SBX-L-{sku.code}",
            )
        services.create_connection(
            connector=THREEPL,
            display_name="Sandbox 3PL",
            channel_key="sandbox-3pl",
            # Ships within minutes rather than hours, so the demo shows shipments soon.
            settings={
                "seed": 42,
                "skus": [s.code for s in skus],
                "ship_after_minutes": [2, 20],
                "initial_stock": THREEPL_STOCK,
            },
            warehouse_map={SANDBOX_LOCATION: "NJ-3PL"},
            poll_interval=POLL_SECONDS,
        )
        services.create_connection(
            connector=CARRIER,
            display_name="Sandbox carrier",
            channel_key="sandbox-carrier",
            settings={"seed": 42},
        )
    return [
        f"Connected the sandbox channel, 3PL and carrier; {len(skus)} SKUs in "
        f"{len(warehouses)} warehouses. Orders arrive once a worker and beat run."
    ]


def _first_orders() -> list[str]:
    """Pull the channel's backfill now rather than at the worker's first poll: the history
    import ends where these orders begin, and the first forecast and plan would otherwise
    read their days as days without sales."""
    conn = Connection.objects.filter(connector=CHANNEL).order_by("pk").first()
    if conn is None or Order.objects.filter(channel=conn.channel_key).exists():
        return []
    run, _ = services.request_sync(
        conn, trigger=RunTrigger.MANUAL, streams=[services.STREAM_ORDERS], requested_by="demo"
    )
    for _ in range(FIRST_PULL_RUNS):
        outcome = services.execute_run(run.pk)
        # A backfill larger than one run's time budget continues in a follow-up run.
        follow_up = (
            SyncRun.objects.filter(connection=conn, status__in=ACTIVE_RUN_STATUSES)
            .exclude(pk=run.pk)
            .first()
        )
        if outcome.retry or follow_up is None:
            break
        run = follow_up
    count = Order.objects.filter(channel=conn.channel_key).count()
    days = conn.settings["backfill_days"]
    return [f"Pulled the sandbox store's last {days} days: {count} orders."]


def _warehouses() -> list[tuple[Warehouse, int]]:
    made = []
    for code, name, kind, city, state, postal, lat, lon, units in WAREHOUSES:
        warehouse = Warehouse.objects.filter(code__iexact=code).first() or stock.create_warehouse(
            code=code,
            name=name,
            kind=kind,
            city=city,
            state=state,
            postal_code=postal,
            country="US",
            latitude=Decimal(lat),
            longitude=Decimal(lon),
            capabilities=["parcel", "expedited"],
        )
        made.append((warehouse, units))
    return made


def _catalog() -> list[SKU]:
    skus = []
    products: dict[str, object] = {}
    for code in demo_skus():
        existing = SKU.objects.filter(code__iexact=code).first()
        if existing is not None:
            skus.append(existing)
            continue
        _, item, colour, size = code.split("-")
        title = {"TEE": "Keel Tee", "HOOD": "Keel Hoodie", "CAP": "Keel Cap"}[item]
        product = products.get(title) or catalog.create_product(title=title, status="active")
        products[title] = product
        skus.append(
            catalog.create_sku(
                product=product,
                code=code,
                title=f"{title} {colour} {size}",
                option_values={"Colour": colour, "Size": size},
                weight=Decimal("450") if item == "HOOD" else Decimal("180"),
                weight_unit="g",
            )
        )
    return skus


def _history() -> list[str]:
    """A year of the sandbox channel's sales before its backfill starts, imported as the
    brand's pre-Keel history (cancelled orders left out, like the orders' own history)."""
    conn = Connection.objects.filter(connector=CHANNEL).order_by("pk").first()
    if conn is None or ImportedSale.objects.exists():
        return []
    tz = forecasting.brand_timezone()
    backfill = timedelta(days=conn.settings.get("backfill_days", 14))
    end = (conn.created_at - backfill).astimezone(tz).date()
    first_order = forecasting.first_order_days().first(conn.channel_key)
    if first_order is not None:
        end = min(end, first_order)
    start = end - timedelta(days=HISTORY_DAYS)
    sku_ids = dict(SKU.objects.values_list("code", "pk"))
    units: dict[tuple[int, date], int] = defaultdict(int)
    revenue: dict[tuple[int, date], Decimal] = defaultdict(Decimal)
    orders = channel_history(
        conn.settings,
        datetime.combine(start, time.min, tzinfo=tz),
        datetime.combine(end, time.min, tzinfo=tz),
    )
    for order in orders:
        if order.status == OrderStatus.CANCELLED:
            continue
        day = order.placed_at.astimezone(tz).date()
        for line in order.lines:
            if line.sku in sku_ids:
                key = (sku_ids[line.sku], day)
                units[key] += line.quantity
                revenue[key] += line.unit_price.amount * line.quantity
    rows = [
        SaleRow(sku_id, conn.channel_key, None, day, n, revenue[sku_id, day])
        for (sku_id, day), n in sorted(units.items())
    ]
    with transaction.atomic():
        result = load_sales(rows)
    # Forecast here rather than through the worker (12 SKUs, seconds), so the first page
    # a newcomer opens already has forecasts and the day's replenishment plan.
    run = forecasting.run_forecasts(kind=RunKind.MANUAL, publish=False)
    for index in range(run.chunks):
        forecasting.run_chunk(run.pk, index)
    run.refresh_from_db()
    planned = replenishment.plan()
    states = ", ".join(f"{n} {state}" for state, n in sorted(planned.by_state.items()))
    return [
        f"Imported {result['units']} units of simulated sales history ({start} to "
        f"{end - timedelta(days=1)}); forecast {run.done} SKUs ({run.failed} failed); "
        f"replenishment plan: {states}."
    ]


def _suppliers() -> list[str]:
    if Supplier.objects.exists():
        return []
    made = 0
    with transaction.atomic():
        for code, name, lead_time, terms, items in SUPPLIERS:
            supplier = purchasing.create_supplier(
                actor=None,
                code=code,
                name=name,
                contact_name="Sales desk",
                email=f"orders@{code.lower()}.example",
                currency="USD",
                payment_terms=terms,
                quoted_lead_time_days=lead_time,
            )
            for sku in SKU.objects.filter(is_bundle=False).order_by("code"):
                item = sku.code.split("-")[1] if sku.code.count("-") >= 3 else ""
                if item not in items:
                    continue
                moq, case_pack = PACKING[item]
                purchasing.save_supplier_sku(
                    supplier=supplier,
                    sku=sku,
                    actor=None,
                    supplier_code=f"{code}-{sku.code}",
                    unit_cost=UNIT_COST[item],
                    currency="USD",
                    moq=moq,
                    case_pack=case_pack,
                    is_preferred=True,
                )
                made += 1
    return [f"Added {len(SUPPLIERS)} suppliers quoting {made} SKUs."]
