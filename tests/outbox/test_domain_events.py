"""Domain events: orders publish through the outbox; stock events are relayed, debounced."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory import services as stock
from inventory.models import StockEvent
from orders.services import cancel_order, ingest_order
from outbox import services
from outbox.models import OutboxMessage
from tests.factories import SKUFactory, WarehouseFactory
from tests.orders.conftest import order_input
from tests.outbox.handlers import EFFECT_TOPIC


def messages_for(topic: str = EFFECT_TOPIC) -> list[OutboxMessage]:
    return list(OutboxMessage.objects.filter(topic=topic).order_by("id"))


def test_order_changes_publish_domain_events(in_alpha, subscribed):
    # given: a subscriber of every order event
    for event_type in ("order.created", "order.updated", "order.cancelled"):
        subscribed(event_type, EFFECT_TOPIC)

    # when: an order arrives, the channel changes it, a person cancels it
    order = ingest_order(order_input(external_id="EV-1", lines=[("NOPE", 2)])).order
    ingest_order(
        order_input(external_id="EV-1", lines=[("NOPE", 2)], ship_city="Elsewhere", updated=5)
    )
    cancel_order(order, reason="Customer asked")

    # then: one message per event, in order, each with the event envelope
    events = [m.payload for m in messages_for()]
    assert [e["type"] for e in events] == ["order.created", "order.updated", "order.cancelled"]
    assert {e["object_id"] for e in events} == {str(order.pk)}
    assert {e["brand"] for e in events} == {"alpha"}
    assert len({e["id"] for e in events}) == 3
    created, updated, cancelled = (e["data"] for e in events)
    # created is published as the order arrives, before routing decides anything
    assert (created["external_id"], created["status"]) == ("EV-1", "received")
    assert created["lines"][0]["external_sku"] == "ext-NOPE"
    assert created["lines"][0]["quantity"] == 2
    assert updated["ship_city"] == "Elsewhere" and updated["changed"] == ["ship_city"]
    assert (cancelled["status"], cancelled["reason"]) == ("cancelled", "Customer asked")
    assert {m.key for m in messages_for()} == {f"{e['id']}:{EFFECT_TOPIC}" for e in events}


def test_an_event_nobody_subscribes_to_writes_nothing(in_alpha):
    built = []

    event_id = services.publish_domain_event(
        "order.created", 1, lambda: built.append(1) or {"x": 1}
    )

    assert event_id.startswith("evt_")
    assert OutboxMessage.objects.count() == 0
    assert built == []  # the data was never even described


def test_unknown_event_types_are_refused(in_alpha):
    with pytest.raises(ValueError, match="Unknown domain event"):
        services.publish_domain_event("order.exploded", 1, {})


def test_stock_changes_become_one_debounced_event_per_sku_and_warehouse(
    in_alpha, subscribed, settings
):
    # given: a burst of moves on two SKU × warehouse pairs and one that cancels itself out
    settings.KEEL_OUTBOX_STOCK_DEBOUNCE_SECONDS = 2
    subscribed("stock.changed", EFFECT_TOPIC)
    west, east = WarehouseFactory(code="W"), WarehouseFactory(code="E")
    tee, hat = SKUFactory(code="TEE"), SKUFactory(code="HAT")
    stock.receive(sku=tee, warehouse=west, quantity=10)
    stock.receive(sku=tee, warehouse=west, quantity=5)
    stock.adjust(sku=tee, warehouse=west, delta=-3, reason_code="damaged")
    stock.receive(sku=hat, warehouse=east, quantity=7)
    stock.receive(sku=hat, warehouse=west, quantity=4)
    stock.adjust(sku=hat, warehouse=west, delta=-4, reason_code="damaged")
    now = timezone.now()

    # when: the relay looks during the burst, then after it settled
    during = services.relay_stock_events(now)
    after = services.relay_stock_events(now + timedelta(seconds=3))

    # then: nothing while it was moving; then one event per pair, net of the burst
    assert during == 0
    assert after == 6
    events = {
        (m.payload["data"]["sku"]["code"], m.payload["data"]["warehouse"]["code"]): m.payload
        for m in messages_for()
    }
    assert set(events) == {("TEE", "W"), ("HAT", "E")}
    tee_w = events[("TEE", "W")]
    assert tee_w["type"] == "stock.changed"
    assert (tee_w["data"]["available_before"], tee_w["data"]["available_after"]) == (0, 12)
    assert tee_w["data"]["changes"] == 3
    assert tee_w["object_id"] == f"{tee.pk}:{west.pk}"
    assert StockEvent.objects.filter(published_at__isnull=True).count() == 0
    assert services.relay_stock_events(now + timedelta(seconds=10)) == 0


def test_a_sku_that_never_settles_still_reports_after_the_max_wait(in_alpha, subscribed, settings):
    settings.KEEL_OUTBOX_STOCK_DEBOUNCE_SECONDS = 2
    settings.KEEL_OUTBOX_STOCK_MAX_WAIT_SECONDS = 30
    subscribed("stock.changed", EFFECT_TOPIC)
    wh, sku = WarehouseFactory(code="W"), SKUFactory(code="BUSY")
    stock.receive(sku=sku, warehouse=wh, quantity=1)
    StockEvent.objects.update(created_at=timezone.now() - timedelta(seconds=40))
    stock.receive(sku=sku, warehouse=wh, quantity=1)  # still moving right now

    assert services.relay_stock_events() == 2
    [message] = messages_for()
    assert message.payload["data"]["available_after"] == 2


def test_internal_events_reach_only_their_own_subscribers_and_only_where_wanted(in_alpha):
    from outbox import registry

    # given: a subscriber of every event, and one of fulfillment.opened at warehouse 7 only
    everything, sevens = "test.everything", "test.sevens"
    registry.subscribe(registry.ALL_EVENTS, everything)
    registry.subscribe("fulfillment.opened", sevens, where=lambda data: data["warehouse"] == 7)
    try:
        # when: two fulfillment orders open, at warehouses 7 and 8, and an order arrives
        for fo, warehouse in ((1, 7), (2, 8)):
            services.publish_domain_event(
                "fulfillment.opened",
                fo,
                {"fulfillment": fo, "warehouse": warehouse},
                key=f"fulfillment:{fo}:opened",
            )
        services.publish_domain_event("order.created", 3, {"id": 3})
        # and the first is published again (same key)
        services.publish_domain_event(
            "fulfillment.opened", 1, {"fulfillment": 1, "warehouse": 7}, key="fulfillment:1:opened"
        )
    finally:
        registry.unsubscribe(registry.ALL_EVENTS, everything)
        registry.unsubscribe("fulfillment.opened", sevens)

    # then: the catch-all subscriber (partner webhooks' kind) never sees internal events;
    # the other gets the one at warehouse 7, once
    assert [m.payload["type"] for m in messages_for(everything)] == ["order.created"]
    assert [m.payload["object_id"] for m in messages_for(sevens)] == ["1"]
