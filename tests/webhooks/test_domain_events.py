"""Domain events reach partners: `order.closed` from closing an order; internal events
(a fulfillment order opened or shipped, which sync turns into 3PL and channel pushes) are
never offered to partners nor sent to endpoints that take every event."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from orders.services import close_order, ingest_order, mark_shipped
from outbox.events import EVENT_TYPES, INTERNAL_EVENT_TYPES
from outbox.models import OutboxMessage
from tests.orders.conftest import build_network, order_input
from tests.webhooks.receiver import receiver
from tests.webhooks.support import deliver_pending, endpoint_for, received_events
from webhooks import services
from webhooks.handlers import DISPATCH_TOPIC
from webhooks.models import DeliveryStatus


@pytest.fixture
def network(in_alpha):
    return build_network()


def fulfilled_order(state: str = "NJ"):
    order = ingest_order(order_input(state=state, lines=[("TEE", 1)])).order
    mark_shipped(order.fulfillments.get(), tracking_number="1ZCLOSE", carrier="UPS")
    return order


def test_closing_an_order_reaches_an_endpoint_subscribed_to_order_closed(network):
    with receiver() as partner:
        # given: an endpoint that wants closings only, and a fulfilled order
        endpoint_for(partner, "order.closed")
        order = fulfilled_order()

        # when: a person closes it, and the workers deliver
        close_order(order, note="Delivered and paid")
        deliveries = deliver_pending()

    # then: exactly one signed delivery, the closing, with the order as it was left
    [event] = received_events(partner)
    assert (event["type"], event["object_id"], event["brand"]) == (
        "order.closed",
        str(order.pk),
        "alpha",
    )
    data = event["data"]
    assert (data["status"], data["note"], data["external_id"]) == (
        "closed",
        "Delivered and paid",
        order.external_id,
    )
    assert [fo["status"] for fo in data["fulfillments"]] == ["shipped"]
    assert [(d.event_type, d.status) for d in deliveries] == [
        ("order.closed", DeliveryStatus.SUCCEEDED)
    ]


def test_closing_twice_publishes_once(network):
    with receiver() as partner:
        endpoint_for(partner, "order.closed")
        order = fulfilled_order()
        close_order(order)
        close_order(order)  # already closed: nothing changes, nothing is published
        deliver_pending()

    assert [e["type"] for e in received_events(partner)] == ["order.closed"]


def test_internal_events_never_reach_partner_endpoints(network):
    # given: they are not offered for subscription
    assert not set(INTERNAL_EVENT_TYPES) & set(EVENT_TYPES)
    with pytest.raises(ValidationError):
        services.create_endpoint(
            actor=None, url="https://partner.example/hooks", event_types=["fulfillment.shipped"]
        )
    with receiver() as partner:
        # and: an endpoint that takes every partner event
        endpoint_for(partner, *EVENT_TYPES)

        # when: an order is routed (a fulfillment order opens) and ships
        order = ingest_order(order_input(state="NJ", lines=[("TEE", 1)])).order
        mark_shipped(order.fulfillments.get(), tracking_number="1ZINT")
        deliver_pending()

    # then: the partner heard about the order, never about the internal facts
    types = [e["type"] for e in received_events(partner)]
    assert types == ["order.created", "order.routed"]
    dispatched = OutboxMessage.objects.filter(topic=DISPATCH_TOPIC)
    assert {m.payload["type"] for m in dispatched} == {"order.created", "order.routed"}
