"""Layers 2 and 3: scoring with explanations, splits, the review queue, re-routing."""

from decimal import Decimal

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
