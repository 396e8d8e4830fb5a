"""Routing properties over random orders and stock (hypothesis)."""

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import transaction
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inventory.models import Reservation, StockBalance
from orders import routing
from orders.models import Order
from orders.services import ingest_order, order_facts, published_rules, warehouse_infos
from tests.orders.conftest import build_network, order_input, publish_typical_rules

STATES = ["CA", "TX", "NY", "CO", "FL", "WA", "IL"]
ORDERS = st.lists(
    st.tuples(
        st.sampled_from(STATES),
        st.lists(
            st.tuples(st.sampled_from(["TEE", "HAT", "MUG"]), st.integers(1, 60)),
            min_size=1,
            max_size=3,
            unique_by=lambda t: t[0],
        ),
        st.sampled_from(["dtc", "wholesale", "subscription"]),
    ),
    min_size=1,
    max_size=8,
)
STOCK = st.lists(st.integers(0, 80), min_size=12, max_size=12)


@pytest.mark.django_db
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(orders=ORDERS, levels=STOCK, with_rules=st.booleans())
def test_routed_orders_are_exactly_covered_and_never_oversold(brand_a, orders, levels, with_rules):
    # Each example runs in a savepoint that is rolled back: examples never see each other.
    with schema_context(brand_a.schema_name), transaction.atomic():
        build_network(levels)
        if with_rules:
            publish_typical_rules()
        created = []
        for state, lines, kind in orders:
            created.append(
                ingest_order(order_input(state=state, lines=lines, order_type=kind)).order
            )

        for order in Order.objects.filter(pk__in=[o.pk for o in created]):
            if order.status == "routed":
                covered = Counter()
                for fo in order.fulfillments.filter(status="open"):
                    for line in fo.lines.all():
                        covered[line.order_line_id] += line.quantity
                assert covered == Counter({ln.pk: ln.quantity for ln in order.lines.all()})
                assert order.hold_reason == ""
            else:
                assert order.status == "held" and order.hold_reason
                assert not order.fulfillments.filter(status="open").exists()
        for row in StockBalance.objects.filter(status="sellable"):
            assert 0 <= row.reserved <= row.quantity
            active = sum(
                r.quantity
                for r in Reservation.objects.filter(
                    sku=row.sku, warehouse=row.warehouse, status="active"
                )
            )
            assert active == row.reserved
        transaction.set_rollback(True)


@pytest.mark.django_db
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(state=st.sampled_from(STATES), qty=st.integers(1, 120))
def test_the_same_inputs_always_give_the_same_decision(brand_a, state, qty):
    with schema_context(brand_a.schema_name), transaction.atomic():
        build_network()
        order = ingest_order(order_input(state=state, lines=[("TEE", qty), ("MUG", 1)])).order
        facts = order_facts(
            order, list(order.lines.all()), now=datetime(2026, 11, 2, 12, tzinfo=UTC)
        )
        from inventory import services as stock

        atp = stock.available_to_promise()
        _, rules = published_rules()
        runs = [
            routing.decide(
                facts,
                warehouses=list(reversed(warehouse_infos())) if i % 2 else warehouse_infos(),
                atp=dict(reversed(list(atp.items()))) if i % 2 else atp,
                rules=rules,
                threshold=0.6,
            )
            for i in range(4)
        ]
        assert len({(d.layer, d.plan, d.confidence, d.explanation) for d in runs}) == 1
        assert Decimal(0) <= Decimal(str(runs[0].confidence or 0)) <= Decimal(1)
        transaction.set_rollback(True)
