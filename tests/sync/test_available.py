"""Available quantities flow back to channels after stock changes: outbox `stock.changed`
→ `channel.push_available` → debounced push of what changed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory import services as stock
from outbox import services as outbox
from outbox.models import OutboxMessage
from sync import services
from sync.models import AvailablePush, ChannelListing, Connection, PendingAvailable


def relay_and_consume() -> list[str]:
    """What the outbox workers would do: settle stock events into domain events, then run
    the channel.push_available messages."""
    outbox.relay_stock_events(now=timezone.now() + timedelta(minutes=5))
    results = []
    for message in OutboxMessage.objects.filter(topic="channel.push_available", status="pending"):
        results.append(outbox.consume(message.pk))
    return results


@pytest.fixture
def listed(shop, shop_catalog, shopify, tasks, clock):
    """The shop's listings pulled (they carry Shopify's inventory item ids)."""
    services.request_sync(shop, trigger="manual", streams=["listings"])
    tasks.drain(clock=clock)
    assert ChannelListing.objects.filter(connection=shop).count() == 30
    # The opening stock's changes reach the channel first; tests start from there.
    relay_and_consume()
    tasks.drain(clock=clock)
    assert len(shopify.inventory_writes) == 30
    shopify.inventory_writes.clear()
    return shop_catalog


def test_a_stock_change_reaches_the_channel_once_debounced(shop, listed, shopify, tasks, clock):
    # given: two changes to one SKU and one to another, in quick succession
    east = listed["warehouse"]
    tee, cap = listed["skus"]["KEEL-000-S"], listed["skus"]["KEEL-001-M"]
    stock.receive(sku=tee, warehouse=east, quantity=5)
    stock.adjust(sku=tee, warehouse=east, delta=-2, reason_code="damaged")
    stock.receive(sku=cap, warehouse=east, quantity=1)

    # when
    assert relay_and_consume() == ["done", "done"]
    tasks.drain(clock=clock)

    # then: one push per SKU, with the quantity as it is now
    writes = {w["item"]: w["to"] for w in shopify.inventory_writes}
    items = {v["sku"]: v["inventory_item_id"] for v in shopify.variants}
    assert writes == {items["KEEL-000-S"]: 10_003, items["KEEL-001-M"]: 10_001}
    assert tasks.names() == []
    assert PendingAvailable.objects.count() == 0
    pushed = AvailablePush.objects.filter(sku__code__in=["KEEL-000-S", "KEEL-001-M"])
    assert set(pushed.values_list("sku__code", "quantity", "outcome")) == {
        ("KEEL-000-S", 10_003, "applied"),
        ("KEEL-001-M", 10_001, "applied"),
    }


def test_unchanged_quantities_are_not_pushed_again(shop, listed, shopify, tasks, clock):
    east, tee = listed["warehouse"], listed["skus"]["KEEL-000-S"]
    stock.receive(sku=tee, warehouse=east, quantity=5)
    relay_and_consume()
    tasks.drain(clock=clock)
    shopify.inventory_writes.clear()

    # a burst that cancels itself out, then a mark with nothing new
    stock.receive(sku=tee, warehouse=east, quantity=3)
    stock.adjust(sku=tee, warehouse=east, delta=-3, reason_code="damaged")
    relay_and_consume()
    services.mark_available_changed([tee.pk])
    tasks.drain(clock=clock)

    assert shopify.inventory_writes == []


def test_the_periodic_full_check_publishes_every_mapped_sku_that_differs(
    shop, listed, shopify, tasks, clock
):
    # given: what the channel shows drifted (edited in its admin, or a push was lost)
    items = {v["sku"]: v["inventory_item_id"] for v in shopify.variants}
    AvailablePush.objects.filter(sku__code="KEEL-003-L").delete()
    shopify.set_available(items["KEEL-003-L"], 7)
    # (orders were just polled, so this cycle only checks quantities)
    Connection.objects.filter(pk=shop.pk).update(last_polled_at=timezone.now())

    # when
    services.poll_connections()
    tasks.drain(clock=clock)

    # then: only the SKU Keel has no record of publishing is sent again
    assert [(w["item"], w["from"], w["to"]) for w in shopify.inventory_writes] == [
        (items["KEEL-003-L"], 7, 10_000)
    ]
    # within the next hours the full check does not repeat
    shopify.inventory_writes.clear()
    services.poll_connections(now=timezone.now() + timedelta(hours=1))
    tasks.drain(clock=clock)
    assert shopify.inventory_writes == []


def test_channels_that_cannot_publish_quantities_get_no_marks(in_alpha, tasks):
    conn = services.create_connection(
        connector="shipbay",
        display_name="ShipBay",
        channel_key="shipbay",
        settings={"api_base_url": "https://api.shipbay.example"},
        credentials={"api_key": "sbk_live_0123456789abcdef"},
    )
    assert not services.pushes_available(conn)
    assert services.mark_available_changed([1, 2, 3]) == 0
    assert tasks.sent == []
