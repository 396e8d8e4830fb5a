"""The demo brand's connections: the sandbox channel, 3PL and carrier, two warehouses and
the sandbox's SKUs, so `make run` shows orders arriving, routing, shipping and stock
moving with no external account (beat polls the sandbox every minute).

Called by `keel_bootstrap --demo` inside the demo brand's schema. Idempotent: a brand
that already has connections is left as it is.
"""

from __future__ import annotations

import secrets
from decimal import Decimal

from django.db import transaction

from catalog import services as catalog
from catalog.models import SKU
from connectors.sandbox import CARRIER, CHANNEL, THREEPL
from connectors.sandbox.connectors import WAREHOUSE as SANDBOX_LOCATION
from connectors.sandbox.simulation import demo_skus
from inventory import services as stock
from inventory.models import Warehouse
from sync import services
from sync.models import Connection

# (code, name, kind, city, state, postal code, latitude, longitude, opening units per SKU)
WAREHOUSES = (
    ("NJ-3PL", "Sandbox 3PL, Edison NJ", "3pl", "Edison", "NJ", "08817", "40.52", "-74.41", 120),
    (
        "CA-HQ",
        "Our warehouse, Ontario CA",
        "in_house",
        "Ontario",
        "CA",
        "91761",
        "34.06",
        "-117.65",
        40,
    ),
)
POLL_SECONDS = 60


def connect_demo() -> list[str]:
    """Set up the demo brand's catalog, warehouses and sandbox connections (once)."""
    if Connection.objects.exists():
        return ["Demo connections already exist."]
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
            settings={
                "seed": 42,
                "skus": [s.code for s in skus],
                "orders_per_day": 240,
                "backfill_days": 2,
            },
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
            settings={"seed": 42, "skus": [s.code for s in skus], "ship_after_minutes": [2, 20]},
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
