"""Bulk ingestion gives exactly what one-at-a-time ingestion gives, in one transaction."""

from collections import Counter

import pytest
from django.db import transaction
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from inventory.models import Reservation, StockBalance
from orders.models import Order
from orders.services import ingest_order, ingest_orders
from tests.orders.conftest import build_network, order_input, publish_typical_rules

STATES = ["CA", "TX", "NY", "CO", "FL", "WA", "ZZ"]
BATCH = st.lists(
    st.tuples(
        st.sampled_from(STATES),
        st.lists(
            st.tuples(st.sampled_from(["TEE", "HAT", "MUG", "???"]), st.integers(1, 40)),
            min_size=1,
            max_size=3,
            unique_by=lambda t: t[0],
        ),
        st.sampled_from(["dtc", "wholesale", "subscription"]),
        st.booleans(),  # cancelled on arrival
    ),
    min_size=1,
    max_size=12,
)


def outcome() -> list:
    orders = []
    for o in Order.objects.order_by("external_id"):
        fos = sorted(
            (
                fo.warehouse.code,
                fo.ship_type,
                sorted((ln.sku.code, ln.quantity) for ln in fo.lines.all()),
            )
            for fo in o.fulfillments.filter(status="open")
        )
        orders.append((o.external_id, o.status, o.hold_reason, fos))
    stock = sorted(
        StockBalance.objects.values_list(
            "sku__code", "warehouse__code", "status", "quantity", "reserved"
        )
    )
    active = Counter(
        Reservation.objects.filter(status="active").values_list("sku__code", "warehouse__code")
    )
    return [orders, stock, sorted(active.items())]


def run(inputs, *, bulk: bool) -> list:
    with transaction.atomic():
        build_network([30] * 12)
        publish_typical_rules()
        if bulk:
            ingest_orders(inputs)
        else:
            for data in inputs:
                ingest_order(data)
        result = outcome()
        transaction.set_rollback(True)
    return result


@pytest.mark.django_db
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=BATCH)
# Found by CI: an order sent to review must stay held even when later orders in the page
# spend the stock that made its choice close (fewer candidates, higher confidence).
@example(
    batch=[
        ("CA", [("TEE", 1), ("HAT", 30)], "dtc", False),
        ("CA", [("TEE", 1)], "dtc", False),
        ("FL", [("HAT", 17)], "dtc", False),
        ("TX", [("TEE", 1), ("HAT", 18)], "dtc", False),
    ]
)
def test_bulk_equals_one_at_a_time(brand_a, batch):
    inputs = [
        order_input(
            external_id=f"B-{i:03d}",
            state=state,
            lines=[(code if code != "???" else "NOPE", q) for code, q in lines],
            order_type=kind,
            status="cancelled" if cancelled else "open",
        )
        for i, (state, lines, kind, cancelled) in enumerate(batch)
    ]
    with schema_context(brand_a.schema_name):
        assert run(inputs, bulk=True) == run(inputs, bulk=False)


def test_bulk_page_with_a_repeat_applies_in_order(brand_a):
    with schema_context(brand_a.schema_name):
        build_network()
        first = order_input(external_id="R-1", state="CA", lines=[("TEE", 1)], updated=1)
        newer = order_input(external_id="R-1", state="NY", lines=[("TEE", 2)], updated=2)

        results = ingest_orders([first, newer])

        assert [r.created for r in results] == [True, False]
        order = Order.objects.get(external_id="R-1")
        assert (order.ship_state, order.lines.get().quantity) == ("NY", 2)
