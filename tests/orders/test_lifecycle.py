"""The order status lifecycle end to end: received → held → routed → partially fulfilled →
fulfilled → closed, and cancelled; each hold carries its reason, and what may follow what."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from accounts.roles import Role
from audit.models import ActivityEntry
from inventory import services as stock
from orders.models import Order
from orders.services import (
    cancel_order,
    close_order,
    ingest_order,
    mark_shipped,
    route_held_order,
)
from tests.conftest import brand_client, make_user
from tests.orders.conftest import order_input

pytestmark = pytest.mark.usefixtures("in_alpha")


def statuses(order: Order) -> list[str]:
    """Every status the order passed through, from its activity log."""
    seen = []
    for entry in ActivityEntry.objects.filter(
        object_type="orders.order", object_id=str(order.pk)
    ).order_by("id"):
        status = {
            "order.received": "received",
            "order.held": "held",
            "order.routed": "routed",
            "order.closed": "closed",
            "order.cancelled": "cancelled",
        }.get(entry.action)
        if status:
            seen.append(status)
    return seen


def test_an_order_walks_the_whole_lifecycle(network):
    skus, whs = network["skus"], network["warehouses"]
    # HAT only in PA, TEE nowhere yet: the order is held for stock first.
    for code in ("WEST", "TX", "FBA"):
        stock.adjust(sku=skus["HAT"], warehouse=whs[code], delta=-100, reason_code="lost")
    for code in whs:
        stock.adjust(sku=skus["TEE"], warehouse=whs[code], delta=-100, reason_code="lost")
    order = ingest_order(order_input(state="NJ", lines=[("TEE", 1), ("HAT", 1)])).order
    assert (order.status, order.hold_reason) == ("held", "insufficient_stock")

    stock.receive(sku=skus["TEE"], warehouse=whs["TX"], quantity=5)
    route_held_order(order)
    order.refresh_from_db()
    assert (order.status, order.hold_reason) == ("routed", "")
    tee_part = order.fulfillments.get(warehouse=whs["TX"])
    hat_part = order.fulfillments.get(warehouse=whs["PA"])

    mark_shipped(tee_part, tracking_number="T1")
    order.refresh_from_db()
    assert order.status == "partially_fulfilled"
    mark_shipped(hat_part, tracking_number="T2")
    order.refresh_from_db()
    assert order.status == "fulfilled"

    close_order(order, note="Delivered")
    order.refresh_from_db()
    assert order.status == "closed"
    assert statuses(order) == ["received", "held", "routed", "closed"]
    assert ActivityEntry.objects.get(action="order.closed").changes == {"note": "Delivered"}

    # Closed is final: a channel update is recorded and ignored, cancelling is refused.
    late = ingest_order(
        order_input(external_id=order.external_id, state="CA", lines=[("TEE", 9)], updated=30)
    )
    assert late.applied is False and late.messages == ["Order is closed; update ignored."]
    with pytest.raises(ValidationError):
        cancel_order(order)
    order.refresh_from_db()
    assert (order.status, order.ship_state) == ("closed", "NJ")


@pytest.mark.parametrize("state", ["routed", "held", "cancelled", "partially_fulfilled"])
def test_only_a_fulfilled_order_closes(network, state):
    skus, whs = network["skus"], network["warehouses"]
    lines = [("TEE", 1)] if state != "held" else [("TEE", 1000)]
    if state == "partially_fulfilled":
        for code in ("WEST", "TX", "FBA"):
            stock.adjust(sku=skus["HAT"], warehouse=whs[code], delta=-100, reason_code="lost")
        stock.adjust(sku=skus["TEE"], warehouse=whs["PA"], delta=-100, reason_code="lost")
        lines = [("TEE", 1), ("HAT", 1)]
    order = ingest_order(order_input(state="NJ", lines=lines)).order
    if state == "cancelled":
        cancel_order(order)
    if state == "partially_fulfilled":
        mark_shipped(order.fulfillments.exclude(warehouse=whs["PA"]).get())
    order.refresh_from_db()
    assert order.status == state

    with pytest.raises(ValidationError) as excinfo:
        close_order(order)

    assert excinfo.value.code == "not_fulfilled"
    order.refresh_from_db()
    assert order.status == state


def test_every_hold_reason_is_a_held_order_with_its_reason(network):
    from decimal import Decimal

    from orders.models import RoutingSettings

    unmapped = ingest_order(order_input(lines=[("NOPE", 1)])).order
    address = ingest_order(order_input(state="ZZ")).order
    short = ingest_order(order_input(lines=[("TEE", 1000)])).order
    fraud = ingest_order(order_input(fraud_flag=True)).order
    RoutingSettings.objects.update_or_create(defaults={"confidence_threshold": Decimal("0.99")})
    review = ingest_order(order_input(state="CO")).order

    held = {
        o.external_id: (o.status, o.hold_reason, bool(o.hold_detail))
        for o in Order.objects.filter(status="held")
    }
    assert held == {
        unmapped.external_id: ("held", "unmapped_sku", True),
        address.external_id: ("held", "invalid_address", True),
        short.external_id: ("held", "insufficient_stock", True),
        fraud.external_id: ("held", "fraud", True),
        review.external_id: ("held", "awaiting_review", True),
    }


def test_the_order_page_closes_a_fulfilled_order(network, brand_a):
    order = ingest_order(order_input(state="NY")).order
    mark_shipped(order.fulfillments.get(), tracking_number="1Z")
    ops = brand_client(brand_a, make_user(brand_a, role=Role.OPS_MANAGER))
    viewer = brand_client(brand_a, make_user(brand_a, role=Role.VIEWER))

    page = ops.get(f"/orders/{order.pk}/").content.decode()
    refused = viewer.post(f"/orders/{order.pk}/close/")
    closed = ops.post(f"/orders/{order.pk}/close/", {"note": "Delivered"})
    again_page = ops.get(f"/orders/{order.pk}/")

    assert "Close order</button>" in page
    assert refused.status_code == 403
    assert closed.status_code == 302
    order.refresh_from_db()
    assert order.status == "closed"
    body = again_page.content.decode()
    assert "Close order</button>" not in body and "Cancel order</button>" not in body
    assert "Closed" in [item.get("label") for item in again_page.context["timeline"]]


def test_closing_a_routed_order_on_the_page_shows_why_not(network, brand_a):
    order = ingest_order(order_input(state="NY")).order
    ops = brand_client(brand_a, make_user(brand_a, role=Role.OPS_MANAGER))

    response = ops.post(f"/orders/{order.pk}/close/")

    assert response.status_code == 422
    assert "Only a fulfilled order can be closed; this one is routed." in response.content.decode()
    order.refresh_from_db()
    assert order.status == "routed"


def test_shipping_and_closing_publish_their_events_in_the_same_transaction(network):
    # given: a subscriber of the order's closing and of its fulfillment orders' facts
    from outbox import registry
    from outbox.models import OutboxMessage

    topic = "test.lifecycle_events"
    types = ("order.closed", "fulfillment.opened", "fulfillment.shipped")
    for name in types:
        registry.subscribe(name, topic)
    try:
        # when: an order is routed, shipped (once, then again), closed (once, then again)
        order = ingest_order(order_input(state="NY")).order
        fo = order.fulfillments.get()
        mark_shipped(fo, tracking_number="1ZLIFE", carrier="UPS")
        mark_shipped(fo, tracking_number="1ZLIFE", carrier="UPS")
        close_order(order, note="Delivered")
        close_order(order)
        seen = [m.payload for m in OutboxMessage.objects.filter(topic=topic).order_by("id")]
    finally:
        for name in types:
            registry.unsubscribe(name, topic)

    # then: one message per fact; the fulfillment facts are keyed by the fulfillment order
    assert [(e["type"], e["object_id"]) for e in seen] == [
        ("fulfillment.opened", str(fo.pk)),
        ("fulfillment.shipped", str(fo.pk)),
        ("order.closed", str(order.pk)),
    ]
    opened, shipped, closed = (e["data"] for e in seen)
    assert opened == {
        "fulfillment": fo.pk,
        "order": order.pk,
        "channel": "shop",
        "warehouse": fo.warehouse_id,
    }
    assert (shipped["tracking_number"], shipped["carrier"]) == ("1ZLIFE", "UPS")
    assert (closed["status"], closed["note"]) == ("closed", "Delivered")
