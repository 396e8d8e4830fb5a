"""Layers 2 and 3: scoring with explanations, splits, the review queue, re-routing."""

from decimal import Decimal

import pytest

from inventory import services as stock
from inventory.models import StockBalance
from orders.models import Order, RoutingSettings
from orders.services import (
    choose_plan,
    ingest_order,
    mark_shipped,
    reject_fulfillment,
    route_held_order,
    suggested_rules,
)
from tests.orders.conftest import order_input


def codes(order: Order, status: str = "open") -> list[str]:
    return sorted(fo.warehouse.code for fo in order.fulfillments.filter(status=status))


def test_without_rules_the_closest_warehouse_wins_with_an_explanation(network):
    order = ingest_order(order_input(state="NY", lines=[("TEE", 1)])).order

    decision = order.decisions.get()
    assert decision.layer == "scoring"
    assert codes(order) == ["PA"]
    assert decision.explanation.startswith("No rule matched; scored 4 plans: PA is best")
    assert [c["warehouses"] for c in decision.candidates][0] == ["PA"]
    assert float(decision.confidence) >= 0.6


def test_split_when_no_warehouse_has_everything(network):
    skus, whs = network["skus"], network["warehouses"]
    for code in ("WEST", "TX", "FBA"):
        stock.adjust(sku=skus["HAT"], warehouse=whs[code], delta=-100, reason_code="lost")
    stock.adjust(sku=skus["TEE"], warehouse=whs["PA"], delta=-100, reason_code="lost")

    order = ingest_order(order_input(state="NJ", lines=[("TEE", 1), ("HAT", 1)])).order

    assert order.status == "routed"
    assert len(codes(order)) == 2
    assert "PA" in codes(order)
    covered = sorted(
        line.order_line_id for fo in order.fulfillments.all() for line in fo.lines.all()
    )
    assert covered == sorted(order.lines.values_list("id", flat=True))


def test_low_confidence_goes_to_review_and_a_person_decides(network, owner_a):
    RoutingSettings.objects.update_or_create(defaults={"confidence_threshold": Decimal("0.99")})
    order = ingest_order(order_input(state="CO", lines=[("MUG", 1)])).order
    assert (order.status, order.hold_reason) == ("held", "awaiting_review")
    review = order.decisions.get()
    assert review.layer == "review" and len(review.candidates) == 4

    choose_plan(order, allocations={"TX": [order.lines.get().pk]}, actor=owner_a)

    order.refresh_from_db()
    assert order.status == "routed"
    assert codes(order) == ["TX"]
    assert order.decisions.last().layer == "manual"


def test_manual_choices_repeated_become_rule_suggestions(network, owner_a):
    RoutingSettings.objects.update_or_create(defaults={"confidence_threshold": Decimal("0.99")})
    for _ in range(3):
        order = ingest_order(order_input(state="CO")).order
        choose_plan(order, allocations={"TX": [order.lines.get().pk]}, actor=owner_a)

    assert suggested_rules() == [
        {
            "name": "CO → TX",
            "count": 3,
            "conditions": {"country_in": ["US"], "state_in": ["CO"]},
            "actions": {"ship_from": "TX"},
        }
    ]


def test_rejected_fulfillment_is_re_routed_elsewhere(network):
    order = ingest_order(order_input(state="NY", lines=[("TEE", 1)])).order
    first = order.fulfillments.get()

    reject_fulfillment(first, reason="Flooded aisle")

    order.refresh_from_db()
    assert order.status == "routed"
    assert codes(order, "rejected") == [first.warehouse.code]
    assert first.warehouse.code not in codes(order)
    assert order.decisions.filter(layer="reroute").count() == 1


def test_held_order_routes_once_stock_arrives(network):
    order = ingest_order(order_input(lines=[("TEE", 150)])).order
    assert order.hold_reason == "insufficient_stock"
    stock.receive(sku=network["skus"]["TEE"], warehouse=network["warehouses"]["TX"], quantity=60)

    route_held_order(order)

    order.refresh_from_db()
    assert (order.status, codes(order)) == ("routed", ["TX"])


def test_rejecting_one_part_of_a_split_order_re_routes_only_that_part(network):
    skus, whs = network["skus"], network["warehouses"]
    for code in ("WEST", "TX", "FBA"):
        stock.adjust(sku=skus["HAT"], warehouse=whs[code], delta=-100, reason_code="lost")
    stock.adjust(sku=skus["TEE"], warehouse=whs["PA"], delta=-100, reason_code="lost")
    order = ingest_order(order_input(state="NJ", lines=[("TEE", 1), ("HAT", 1)])).order
    tee_part = order.fulfillments.exclude(warehouse=whs["PA"]).get()
    hat_part = order.fulfillments.get(warehouse=whs["PA"])
    mark_shipped(tee_part, tracking_number="T1")
    stock.receive(sku=skus["HAT"], warehouse=whs["TX"], quantity=5)

    reject_fulfillment(hat_part, reason="Damaged stock")

    order.refresh_from_db()
    assert order.status == "partially_fulfilled"
    live = order.fulfillments.filter(status="open")
    assert [(fo.warehouse.code, [ln.sku.code for ln in fo.lines.all()]) for fo in live] == [
        ("TX", ["HAT"])
    ]
    # The shipped TEE is not reserved or shipped a second time.
    assert order.fulfillments.filter(status="shipped").count() == 1
    assert (
        StockBalance.objects.get(
            sku=skus["TEE"], warehouse=tee_part.warehouse, status="sellable"
        ).reserved
        == 0
    )


def test_a_warehouse_running_short_re_routes_its_newest_orders_and_logs_why(network, typical_rules):
    from inventory.services import InsufficientStock
    from orders.services import reroute_shortage

    skus, whs = network["skus"], network["warehouses"]
    orders = [ingest_order(order_input(state="CA", lines=[("TEE", 2)])).order for _ in range(3)]
    assert all(codes(o) == ["WEST"] for o in orders)
    tee_west = StockBalance.objects.get(sku=skus["TEE"], warehouse=whs["WEST"], status="sellable")
    assert tee_west.reserved == 6
    # The 3PL says only 3 are there: the ledger refuses a count below what is reserved.
    with pytest.raises(InsufficientStock):
        stock.adjust(sku=skus["TEE"], warehouse=whs["WEST"], delta=-97, reason_code="lost")

    moved = reroute_shortage(
        warehouse=whs["WEST"], sku=skus["TEE"], on_hand=3, source="3PL stock report"
    )

    # Newest first, until what is left fits: 6 − 2 − 2 = 2 ≤ 3.
    assert [o.pk for o in moved] == [orders[2].pk, orders[1].pk]
    first, second, third = (Order.objects.get(pk=o.pk) for o in orders)
    assert codes(first) == ["WEST"]
    for order in (second, third):
        assert order.status == "routed"
        assert codes(order) == ["FBA"]  # Reno: the closest of the rest to California
        assert codes(order, "rejected") == ["WEST"]
        reroute = order.decisions.get(layer="reroute")
        assert reroute.explanation.startswith(
            "WEST ran short of TEE (3PL stock report: 3 on hand, 6 reserved); re-routing FO-"
        )
        assert reroute.inputs == {
            "short_at": "WEST",
            "sku": "TEE",
            "on_hand": 3,
            "reserved": 6,
            "source": "3PL stock report",
        }
        assert order.decisions.last().layer == "scoring"
    tee_west.refresh_from_db()
    assert tee_west.reserved == 2
    stock.adjust(sku=skus["TEE"], warehouse=whs["WEST"], delta=-97, reason_code="lost")
    tee_west.refresh_from_db()
    assert (tee_west.quantity, tee_west.reserved) == (3, 2)
    # Enough on hand: nothing moves.
    assert reroute_shortage(warehouse=whs["WEST"], sku=skus["TEE"], on_hand=2, source="x") == []


def test_a_short_warehouse_whose_order_fits_nowhere_else_holds_it_with_the_reason(network):
    from orders.services import reroute_shortage

    skus, whs = network["skus"], network["warehouses"]
    for code in ("TX", "PA", "FBA"):
        stock.adjust(sku=skus["MUG"], warehouse=whs[code], delta=-100, reason_code="lost")
    order = ingest_order(order_input(state="CA", lines=[("MUG", 5)])).order
    assert codes(order) == ["WEST"]

    reroute_shortage(warehouse=whs["WEST"], sku=skus["MUG"], on_hand=0, source="cycle count")

    order.refresh_from_db()
    assert (order.status, order.hold_reason) == ("held", "insufficient_stock")
    assert [d.layer for d in order.decisions.all()] == ["scoring", "reroute", "hold"]
    mug_west = StockBalance.objects.get(sku=skus["MUG"], warehouse=whs["WEST"], status="sellable")
    assert mug_west.reserved == 0
