"""Fixtures for order tests: a typical multi-warehouse brand inside brand alpha."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count

import pytest

from catalog.services import map_listing
from inventory import services as stock
from orders.services import LineInput, OrderInput, draft_rule_set, publish_rule_set
from tests.factories import SKUFactory, WarehouseFactory

_ids = count(1)
T0 = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)

# The rules of a typical $50M brand, first match wins.
TYPICAL_RULES = [
    {
        "name": "Expedited ships in-house",
        "conditions": {"service_level_in": ["expedited"]},
        "actions": {"ship_from": "TX"},
    },
    {
        "name": "Wholesale from the PA 3PL",
        "conditions": {"order_type_in": ["wholesale"]},
        "actions": {"ship_from": "PA", "ship_type": "ltl"},
    },
    {
        "name": "Subscriptions from FBA",
        "conditions": {"order_type_in": ["subscription"]},
        "actions": {"ship_from": "FBA"},
    },
    {
        "name": "West coast",
        "conditions": {"state_in": ["CA", "NV", "AZ", "OR", "WA"]},
        "actions": {"ship_from": "WEST"},
    },
    {
        "name": "South central",
        "conditions": {"state_in": ["TX", "OK", "AR", "LA"]},
        "actions": {"ship_from": "TX"},
    },
    {
        "name": "North east",
        "conditions": {"state_in": ["NY", "NJ", "PA", "MA"]},
        "actions": {"ship_from": "PA"},
    },
]


@pytest.fixture
def network(in_alpha):
    """Four warehouses, three SKUs mapped on the `shop` channel, 100 units everywhere."""
    return build_network()


def build_network(levels: list[int] | None = None) -> dict:
    whs = {
        "WEST": WarehouseFactory(
            code="WEST",
            kind="3pl",
            state="CA",
            postal_code="90001",
            latitude=Decimal("34.05"),
            longitude=Decimal("-118.24"),
            priority=20,
        ),
        "TX": WarehouseFactory(
            code="TX",
            kind="in_house",
            state="TX",
            postal_code="75201",
            latitude=Decimal("32.78"),
            longitude=Decimal("-96.80"),
            capabilities=["parcel", "expedited", "hazmat"],
            priority=10,
        ),
        "PA": WarehouseFactory(
            code="PA",
            kind="3pl",
            state="PA",
            postal_code="19103",
            latitude=Decimal("39.95"),
            longitude=Decimal("-75.17"),
            capabilities=["parcel", "ltl"],
            priority=30,
        ),
        "FBA": WarehouseFactory(
            code="FBA",
            kind="fba",
            state="NV",
            postal_code="89501",
            latitude=Decimal("39.53"),
            longitude=Decimal("-119.81"),
            priority=90,
        ),
    }
    skus = {
        code: SKUFactory(code=code, weight=Decimal("500"), weight_unit="g")
        for code in ("TEE", "HAT", "MUG")
    }
    levels = iter(levels or [100] * (len(skus) * len(whs)))
    for code, sku in skus.items():
        map_listing(channel="shop", external_sku=f"ext-{code}", sku=sku)
        for wh in whs.values():
            quantity = next(levels)
            if quantity:
                stock.receive(sku=sku, warehouse=wh, quantity=quantity)
    return {"warehouses": whs, "skus": skus}


@pytest.fixture
def typical_rules(network):
    return publish_typical_rules()


def publish_typical_rules():
    return publish_rule_set(draft_rule_set(actor=None, rules=TYPICAL_RULES))


def order_input(
    *, state="CA", lines=(("TEE", 1),), external_id=None, updated=0, **kw
) -> OrderInput:
    ext = external_id or f"o-{next(_ids)}"
    defaults = dict(
        channel="shop",
        external_id=ext,
        placed_at=T0,
        updated_at=T0 + timedelta(minutes=updated),
        currency="USD",
        ship_name="Ada Buyer",
        ship_line1="1 Main St",
        ship_city="Town",
        ship_state=state,
        ship_postal_code="12345",
        ship_country="US",
        lines=[
            LineInput(f"{ext}-{i}", f"ext-{code}", qty, Decimal("20.00"))
            for i, (code, qty) in enumerate(lines)
        ],
    )
    defaults.update(kw)
    return OrderInput(**defaults)
