"""Shipments go back to the channel they came from, once, with the channel's own order and
line ids and the tracking number (Shopify: a fulfillment with tracking info): through the
outbox when the fulfillment order ships (`channel.push_tracking`), and through the
`tracking` stream's reconciliation pass for what that push skipped."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from keel_shipbay.fake import FakeShipBay

from catalog.services import map_listing
from orders.models import FulfillmentOrder, FulfillmentStatus, Order
from orders.services import LineInput, OrderInput, ingest_order, mark_shipped
from outbox import services as outbox
from outbox.models import OutboxMessage
from sync import services
from sync.models import FulfillmentPush, PushStatus, RunTrigger, SyncRun
from tests.fakes.shopify import FakeShopify
from tests.sync.conftest import connect_shopify, consume_outbox, stock_network

SHIPBAY_KEY = "sbk_live_0123456789abcdef"
FULFILLMENTS_POST = r"/fulfillments\.json$"
TRACKING = services.TRACKING_TOPIC


@pytest.fixture
def small_shop(clock) -> Iterator[FakeShopify]:
    with FakeShopify(clock=clock, orders=3) as fake:
        yield fake


@pytest.fixture
def shop3(in_alpha, small_shop, tasks, clock):
    """A Shopify connection whose three orders were polled in and routed to EAST."""
    conn = connect_shopify(small_shop)
    network = stock_network(conn.channel_key, [v["sku"] for v in small_shop.variants])
    services.request_sync(conn, trigger="manual", streams=["orders"])
    tasks.drain(clock=clock)
    assert Order.objects.filter(channel=conn.channel_key).count() == 3
    tasks.sent.clear()
    return conn, network


def fulfillment_of(fake: FakeShopify, order_id: int) -> FulfillmentOrder:
    return FulfillmentOrder.objects.get(order__channel="shop", order__external_id=str(order_id))


def test_a_shipment_is_reported_to_the_channel_once_with_its_tracking(
    shop3, small_shop, tasks, clock
):
    # given: a person ships one order's fulfillment order (as a label purchase would)
    conn, _ = shop3
    order_id = small_shop.order_ids[0]
    fo = mark_shipped(
        fulfillment_of(small_shop, order_id), tracking_number="1ZKEEL0001", carrier="UPS"
    )

    # when: the channel syncs, twice
    for _ in range(2):
        services.request_sync(conn, trigger="manual")
        tasks.drain(clock=clock)

    # then: Shopify holds one fulfillment for the order, with our tracking, for all its lines
    [fulfillment] = small_shop.fulfillments[order_id]
    assert (fulfillment["tracking_number"], fulfillment["tracking_company"]) == (
        "1ZKEEL0001",
        "UPS",
    )
    assert small_shop.order(order_id)["fulfillment_status"] == "fulfilled"
    assert len(small_shop.journal.entries("POST", FULFILLMENTS_POST)) == 1
    # the other orders, not shipped, were not touched
    assert set(small_shop.fulfillments) == {order_id}
    push = FulfillmentPush.objects.get(connection=conn)
    assert (push.fulfillment_id, push.status, push.external_id, push.attempts) == (
        fo.pk,
        PushStatus.SENT,
        str(fulfillment["id"]),
        1,
    )
    # (the fixture's first run polled the orders in)
    _, first, second = SyncRun.objects.filter(connection=conn).order_by("id")
    assert (first.counts.get("reported"), second.counts.get("reported")) == (1, None)
    conn.refresh_from_db()
    assert conn.last_success_at is not None and conn.last_success_at >= second.finished_at


def test_a_shipment_is_reported_through_the_outbox_once(shop3, small_shop, tasks, clock):
    # given: a person ships one order's fulfillment order
    conn, _ = shop3
    order_id = small_shop.order_ids[0]
    fo = mark_shipped(
        fulfillment_of(small_shop, order_id), tracking_number="1ZKEEL0003", carrier="UPS"
    )

    # then: the shipping transaction wrote one message for the channel, keyed by the
    # fulfillment order, and asked for no sync run
    [message] = OutboxMessage.objects.filter(topic=TRACKING)
    assert message.payload["type"] == "fulfillment.shipped"
    assert message.payload["data"]["fulfillment"] == fo.pk
    assert message.payload["data"]["tracking_number"] == "1ZKEEL0003"
    assert tasks.names() == []

    # when: the outbox delivers it; a duplicate task and a person's "Sync now" follow
    assert consume_outbox(TRACKING) == {TRACKING: ["done"]}
    assert outbox.consume(message.pk) == "duplicate"
    services.request_sync(conn, trigger="manual", streams=["tracking"])
    tasks.drain(clock=clock)

    # then: Shopify received one fulfillment, with our tracking
    [fulfillment] = small_shop.fulfillments[order_id]
    assert fulfillment["tracking_number"] == "1ZKEEL0003"
    assert len(small_shop.journal.entries("POST", FULFILLMENTS_POST)) == 1
    push = FulfillmentPush.objects.get(connection=conn)
    assert (push.status, push.attempts) == (PushStatus.SENT, 1)
    run = SyncRun.objects.filter(connection=conn).latest("id")
    assert run.counts.get("reported") is None


def test_a_3pl_shipment_reaches_the_channel_without_waiting_for_its_poll(
    shop3, small_shop, tasks, clock
):
    # given: ShipBay fulfils the EAST warehouse (connected after the orders were routed,
    # so its first run sends them)
    conn, _ = shop3
    with FakeShipBay(clock=clock, api_key=SHIPBAY_KEY, per_second=50) as shipbay:
        threepl = services.create_connection(
            connector="shipbay",
            display_name="ShipBay East",
            channel_key="shipbay",
            settings={"api_base_url": shipbay.url, "requests_per_second": 50},
            credentials={"api_key": SHIPBAY_KEY},
            warehouse_map={"SB-EAST": "EAST"},
        )
        services.request_sync(threepl, trigger="manual", streams=["fulfillments"])
        tasks.drain(clock=clock)
        order_id = small_shop.order_ids[1]
        fo = fulfillment_of(small_shop, order_id)
        clock.advance(60)
        shipped = shipbay.ship(f"FO-{fo.pk}")

        # when: the 3PL's next run learns about the shipment, and the outbox relays
        clock.advance(60)
        services.request_sync(threepl, trigger="manual", streams=["shipments"])
        tasks.drain(clock=clock)
        assert consume_outbox(TRACKING) == {TRACKING: ["done"]}

    # then: the channel has ShipBay's tracking, with no channel sync run
    fo.refresh_from_db()
    assert (fo.status, fo.tracking_number) == (
        FulfillmentStatus.SHIPPED,
        shipped["tracking_number"],
    )
    [fulfillment] = small_shop.fulfillments[order_id]
    assert fulfillment["tracking_number"] == shipped["tracking_number"]
    assert SyncRun.objects.filter(connection=conn).count() == 1  # the fixture's poll


def test_shipments_of_orders_from_other_channels_cost_no_message(shop3, small_shop):
    conn, network = shop3
    now = timezone.now()
    sku = network["skus"][small_shop.variants[0]["sku"]]
    map_listing(channel="api", external_sku=sku.code, sku=sku)
    order = ingest_order(
        OrderInput(
            channel="api",
            external_id="API-1",
            placed_at=now,
            updated_at=now,
            currency="USD",
            lines=[LineInput("API-1-0", sku.code, 1, Decimal("10.00"))],
            ship_name="Ada Lovelace",
            ship_line1="1 Main St",
            ship_city="Newark",
            ship_state="NJ",
            ship_postal_code="07102",
            ship_country="US",
        )
    ).order

    mark_shipped(order.fulfillments.get(), tracking_number="1ZAPI")

    assert not OutboxMessage.objects.filter(topic=TRACKING).exists()


def test_a_paused_channel_hears_of_a_shipment_from_reconciliation_after_resume(
    shop3, small_shop, tasks, clock
):
    # given: the channel is paused while an order ships
    conn, _ = shop3
    services.pause_connection(conn)
    order_id = small_shop.order_ids[2]
    mark_shipped(fulfillment_of(small_shop, order_id), tracking_number="1ZKEEL0004")
    assert not OutboxMessage.objects.filter(topic=TRACKING).exists()

    # when: it is resumed and its scheduled poll runs, twice in a row
    conn = services.resume_connection(conn)
    for _ in range(2):
        services.request_sync(conn, trigger=RunTrigger.SCHEDULE, streams=["tracking"])
        tasks.drain(clock=clock)

    # then: the first pass reported the shipment; the second was not due yet (the pass
    # runs at most every TRACKING_RECONCILE_EVERY on schedule)
    [fulfillment] = small_shop.fulfillments[order_id]
    assert fulfillment["tracking_number"] == "1ZKEEL0004"
    first, second = SyncRun.objects.filter(connection=conn, trigger="schedule").order_by("id")
    assert (first.counts.get("reported"), second.counts.get("reported")) == (1, None)
    assert second.pages == 0


def test_a_refused_shipment_is_recorded_and_given_up_after_bounded_attempts(
    shop3, small_shop, tasks, clock
):
    # given: the order was fulfilled on Shopify by hand, with other tracking
    conn, _ = shop3
    order_id = small_shop.order_ids[2]
    with services.plugins.connector_for(conn) as connector:
        shipment = services.channel_shipment(fulfillment_of(small_shop, order_id))
        connector.push_fulfillment(
            shipment=dataclasses.replace(shipment, tracking_numbers=("HANDWRITTEN-1",))
        )
    mark_shipped(fulfillment_of(small_shop, order_id), tracking_number="1ZKEEL0002", carrier="UPS")
    small_shop.journal.clear()

    # when: the channel syncs more often than a push is attempted
    for _ in range(services.MAX_PUSH_ATTEMPTS + 1):
        services.request_sync(conn, trigger="manual", streams=["tracking"])
        tasks.drain(clock=clock)

    # then: refused each time until the limit, then left alone; shown on the run
    push = FulfillmentPush.objects.get(connection=conn)
    assert (push.status, push.attempts) == (PushStatus.FAILED, services.MAX_PUSH_ATTEMPTS)
    assert "nothing left to fulfill" in push.error
    assert small_shop.journal.entries("POST", FULFILLMENTS_POST) == []
    runs = list(SyncRun.objects.filter(connection=conn, streams=["tracking"]).order_by("id"))
    assert [r.status for r in runs] == ["partial"] * services.MAX_PUSH_ATTEMPTS + ["succeeded"]
    assert [(e["code"], e["ref"]) for e in runs[0].errors] == [
        ("refused", f"FO-{push.fulfillment_id}")
    ]
    assert len(small_shop.fulfillments[order_id]) == 1


def test_shipments_from_before_the_connection_existed_are_not_reported(
    shop3, small_shop, tasks, clock
):
    conn, _ = shop3
    fo = mark_shipped(fulfillment_of(small_shop, small_shop.order_ids[0]), tracking_number="1Z0")
    FulfillmentOrder.objects.filter(pk=fo.pk).update(
        closed_at=conn.created_at - timedelta(minutes=1)
    )

    assert not services.pending_tracking(conn).exists()
    services.request_sync(conn, trigger="manual", streams=["tracking"])
    tasks.drain(clock=clock)

    assert small_shop.fulfillments == {}
    assert FulfillmentPush.objects.filter(connection=conn).count() == 0
