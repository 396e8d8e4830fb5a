"""Layer 2 weighs carrier performance when delivery history exists: the on-time record of
the lanes from each candidate warehouse to the customer's state (shipping's carrier
outcomes), shrunk toward the pooled rate when a lane has few deliveries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.roles import Role
from orders import routing
from orders.models import Order
from orders.services import ingest_order, ingest_orders, order_facts, warehouse_infos
from tests.conftest import brand_client, make_user
from tests.orders.conftest import build_network, order_input
from tests.shipping.factories import history

pytestmark = pytest.mark.usefixtures("in_alpha")


def colorado(**kw):
    return order_input(state="CO", lines=[("MUG", 1)], **kw)


def west_delivers_tx_does_not(network, *, delivered_at=None) -> None:
    whs = network["warehouses"]
    # Lanes are origin 3-digit postal prefix → destination state (shipping.scoring.lane_of).
    history(
        carrier="UPS",
        service="Ground",
        lane="752→CO",
        on_time=2,
        late=18,
        warehouse=whs["TX"],
        delivered_at=delivered_at,
    )
    history(
        carrier="UPS",
        service="Ground",
        lane="900→CO",
        on_time=20,
        late=0,
        warehouse=whs["WEST"],
        delivered_at=delivered_at,
    )


def open_codes(order: Order) -> list[str]:
    return sorted(
        order.fulfillments.filter(status="open").values_list("warehouse__code", flat=True)
    )


def test_without_history_distance_decides_and_no_carrier_part_is_scored(network):
    order = ingest_order(colorado()).order

    decision = order.decisions.get()
    # Dallas is closest to Colorado (a close call: it may wait for a person's review).
    assert decision.candidates[0]["warehouses"] == ["TX"]
    assert "carrier_on_time" not in decision.inputs
    assert all("carrier" not in c["parts"] for c in decision.candidates)
    assert "on time" not in decision.explanation


def test_a_closer_warehouse_with_late_deliveries_loses_to_a_reliable_one(network):
    west_delivers_tx_does_not(network)

    order = ingest_order(colorado()).order

    decision = order.decisions.get()
    assert decision.layer == "scoring"
    assert open_codes(order) == ["WEST"]
    assert decision.inputs["carrier_on_time"] == {"TX": [2, 20], "WEST": [20, 20]}
    parts = {"+".join(c["warehouses"]): c["parts"]["carrier"] for c in decision.candidates}
    # (on time + 10 × pooled 22/40) / (timed + 10); no history → the pooled rate.
    assert parts == pytest.approx({"WEST": 0.85, "TX": 0.25, "FBA": 0.55, "PA": 0.55}, abs=1e-4)
    assert "WEST is best" in decision.explanation
    assert "85% on time to CO" in decision.explanation


def test_history_outside_the_window_is_not_counted(network):
    west_delivers_tx_does_not(network, delivered_at=timezone.now() - timedelta(weeks=20))

    order = ingest_order(colorado()).order

    decision = order.decisions.get()
    assert decision.candidates[0]["warehouses"] == ["TX"]
    assert "carrier_on_time" not in decision.inputs


def test_an_order_a_rule_settles_reads_no_history(network, typical_rules):
    west_delivers_tx_does_not(network)

    order = ingest_order(order_input(state="TX", lines=[("MUG", 1)])).order

    decision = order.decisions.get()
    assert (decision.layer, open_codes(order)) == ("rules", ["TX"])
    assert "carrier_on_time" not in decision.inputs


def test_bulk_ingestion_weighs_history_as_the_single_path_does(brand_a, network):
    west_delivers_tx_does_not(network)
    inputs = [colorado(external_id=f"CO-{i}") for i in range(3)]

    def outcome() -> list:
        return [
            (o.external_id, o.status, open_codes(o), o.decisions.get().inputs["carrier_on_time"])
            for o in Order.objects.filter(external_id__startswith="CO-").order_by("external_id")
        ]

    with transaction.atomic():
        for data in inputs:
            ingest_order(data)
        single = outcome()
        transaction.set_rollback(True)
    ingest_orders(inputs)

    assert outcome() == single
    assert [codes for _, _, codes, _ in single] == [["WEST"]] * 3


def test_the_review_queue_shows_the_on_time_part(network, brand_a):
    from orders.models import RoutingSettings

    west_delivers_tx_does_not(network)
    RoutingSettings.objects.update_or_create(defaults={"confidence_threshold": "0.99"})
    order = ingest_order(colorado()).order
    assert order.hold_reason == "awaiting_review"
    ops = brand_client(brand_a, make_user(brand_a, role=Role.OPS_MANAGER))

    response = ops.get("/orders/review/")

    item = response.context["groups"][0]["items"][0]
    assert item["candidates"][0]["label"] == "WEST"
    assert item["candidates"][0]["parts"][-1] == pytest.approx(0.85)
    assert ">On time</th>" in response.content.decode()


@pytest.mark.django_db
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    record=st.dictionaries(
        st.integers(0, 3),
        st.tuples(st.integers(0, 30), st.integers(0, 30)).map(lambda t: (min(t), max(t))),
    ),
    state=st.sampled_from(["CO", "NY", "CA", "FL"]),
)
def test_the_same_facts_and_history_always_give_the_same_decision(brand_a, record, state):
    from django_tenants.utils import schema_context

    with schema_context(brand_a.schema_name), transaction.atomic():
        build_network()
        order = ingest_order(order_input(state=state, lines=[("MUG", 1), ("TEE", 2)])).order
        whs = warehouse_infos()
        ids = sorted(w.id for w in whs)
        carrier = routing.CarrierRecord({ids[i]: v for i, v in record.items()})
        facts = order_facts(order, list(order.lines.all()), now=datetime(2026, 11, 2, tzinfo=UTC))
        from inventory import services as stock

        atp = stock.available_to_promise()
        runs = [
            routing.decide(
                facts,
                warehouses=list(reversed(whs)) if i % 2 else whs,
                atp=dict(reversed(list(atp.items()))) if i % 2 else atp,
                rules=[],
                threshold=0.6,
                carrier=carrier,
            )
            for i in range(4)
        ]
        assert len({(d.layer, d.plan, d.confidence, d.explanation) for d in runs}) == 1
        for candidate in runs[0].candidates:
            if carrier:
                assert 0.0 <= candidate["parts"]["carrier"] <= 1.0
            else:
                assert "carrier" not in candidate["parts"]
        transaction.set_rollback(True)
