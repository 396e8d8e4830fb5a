"""Sandbox channel, 3PL and carrier: deterministic simulated traffic with no network."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

import connectors.sandbox as sandbox
from connectors.clock import VirtualClock
from connectors.errors import NotFoundError, WebhookVerificationError
from connectors.http import HttpContext
from connectors.manager import make_test_manager
from connectors.sandbox.connectors import channel_history, webhook_delivery
from connectors.sandbox.simulation import Simulation, SimulationConfig
from connectors.state import MemoryState
from connectors.types import (
    Address,
    AvailableQuantity,
    FulfillmentLine,
    FulfillmentRequest,
    InboundLine,
    InboundShipment,
    OrderStatus,
    Parcel,
    RateRequest,
    ServiceLevel,
    TrackingStatus,
)

SKUS = ["TEE-S", "TEE-M", "HOOD-M", "CAP", "SOCKS"]
SECRET = "sandbox-webhook-secret-1"


def build(name: str, clock, state=None, **settings):
    pm = make_test_manager(sandbox)
    return pm.hook.keel_connector_factory(
        name=name,
        settings={"skus": SKUS, **settings},
        credentials={"webhook_secret": SECRET} if name == sandbox.CHANNEL else {},
        http=HttpContext(clock=clock),
        state=state if state is not None else MemoryState(),
        clock=clock,
    )


def pull_all(connector, cursor=None):
    orders = []
    while True:
        page = connector.pull_orders(cursor=cursor)
        orders += page.items
        cursor = page.next_cursor
        if not page.has_more:
            return orders, cursor


def test_same_seed_same_orders_and_ids(clock: VirtualClock):
    first, _ = pull_all(build(sandbox.CHANNEL, clock))
    second, _ = pull_all(build(sandbox.CHANNEL, clock))
    assert len(first) > 100
    assert [o.external_id for o in first] == [o.external_id for o in second]
    assert first == second
    other, _ = pull_all(build(sandbox.CHANNEL, clock, seed=7))
    assert [o.external_id for o in other] != [o.external_id for o in first]


def test_resume_from_cursor_never_loses_or_repeats(clock: VirtualClock):
    connector = build(sandbox.CHANNEL, clock, page_hours=6)
    page = connector.pull_orders(cursor=None)
    rest, cursor = pull_all(build(sandbox.CHANNEL, clock, page_hours=6), page.next_cursor)
    everything, _ = pull_all(build(sandbox.CHANNEL, clock, page_hours=6))
    resumed = [o.external_id for o in page.items] + [o.external_id for o in rest]
    assert resumed == [o.external_id for o in everything]
    assert len(resumed) == len(set(resumed))
    # orders keep flowing: an hour later the next poll brings new ones
    clock.advance(3600 * 3)
    fresh = connector.pull_orders(cursor=cursor)
    assert fresh.items and not fresh.has_more
    assert min(o.updated_at for o in fresh.items) > max(o.updated_at for o in everything)


def test_weekly_seasonality_and_trending_skus():
    config = SimulationConfig(
        seed=3,
        skus=tuple(SKUS),
        trending_skus=frozenset({"CAP"}),
        orders_per_day=200,
        trend_multiplier=6,
        currency="USD",
    )
    simulation = Simulation(config)
    start = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday
    orders = simulation.changes_between(start, start + timedelta(days=56))
    by_weekday = Counter(o.placed_at.weekday() for o in orders)
    weekend = (by_weekday[5] + by_weekday[6]) / 2
    midweek = (by_weekday[1] + by_weekday[2]) / 2
    assert weekend > midweek * 1.15

    # the trending SKU sells more at the top of its 28-day cycle than at its start
    def cap_share(first_day: int, last_day: int) -> float:
        lines = [
            line
            for o in orders
            if first_day <= int(o.placed_at.timestamp() // 86400) % 28 <= last_day
            for line in o.lines
        ]
        return sum(line.sku == "CAP" for line in lines) / len(lines)

    assert cap_share(22, 27) > cap_share(0, 5) * 1.5


def test_history_is_the_same_traffic_the_channel_pulls(clock: VirtualClock):
    pulled, _ = pull_all(build(sandbox.CHANNEL, clock, backfill_days=14))
    now = clock.now()
    start = now - timedelta(days=14)

    history = list(channel_history({"skus": SKUS}, start, now))

    # order for order what the channel's backfill brings, placed in the window
    assert {o.external_id: o for o in history} == {
        o.external_id: o for o in pulled if o.placed_at >= start
    }
    assert [o.placed_at for o in history] == sorted(o.placed_at for o in history)
    # and the day before the window is history of its own, with no order twice
    earlier = list(channel_history({"skus": SKUS}, start - timedelta(days=1), start))
    assert earlier and max(o.placed_at for o in earlier) < start
    assert not {o.external_id for o in earlier} & {o.external_id for o in history}


def test_some_orders_are_cancelled_later_as_updates(clock: VirtualClock):
    orders, _ = pull_all(build(sandbox.CHANNEL, clock, orders_per_day=400, backfill_days=7))
    cancelled = [o for o in orders if o.status is OrderStatus.CANCELLED]
    assert cancelled
    assert all(o.updated_at > o.placed_at for o in cancelled)
    assert all(o.totals.total.amount > 0 and o.lines for o in orders)


def test_webhooks_verify_and_parse(clock: VirtualClock):
    channel = build(sandbox.CHANNEL, clock)
    order = channel.pull_orders(cursor=None).items[0]
    headers, body = webhook_delivery(secret=SECRET, order_id=order.external_id)
    channel.verify_webhook(headers=headers, body=body)
    event = channel.parse_webhook(headers=headers, body=body)
    assert event.order is not None and event.order.external_id == order.external_id
    with pytest.raises(WebhookVerificationError):
        channel.verify_webhook(headers=headers, body=body + b" ")


def test_pushes_are_recorded(clock: VirtualClock):
    state = MemoryState()
    channel = build(sandbox.CHANNEL, clock, state=state)
    [first] = channel.push_available(levels=[AvailableQuantity("SBX-INV-CAP", 5)])
    [second] = channel.push_available(levels=[AvailableQuantity("SBX-INV-CAP", 3)])
    assert (first.previous, second.previous) == (None, 5)
    assert state.snapshot()["available"] == {"SBX-INV-CAP@SBX-WH1": 3}
    listings = channel.list_listings(cursor=None).items
    assert {item.sku for item in listings} == set(SKUS)


def test_warehouse_ships_after_a_delay_and_stock_follows(clock: VirtualClock):
    state = MemoryState()
    warehouse = build(sandbox.THREEPL, clock, state=state)
    before = {s.sku: s for s in warehouse.pull_stock_levels(cursor=None).items}
    request = FulfillmentRequest(
        request_id="FR-1",
        order_ref="SBX-1",
        ship_to=Address(name="A", line1="1 Main", city="X", postal_code="10001", country="US"),
        lines=(FulfillmentLine("CAP", 2),),
    )
    ack = warehouse.push_fulfillment_order(request=request, idempotency_key="k")
    assert warehouse.push_fulfillment_order(request=request, idempotency_key="k") == ack
    committed = {s.sku: s for s in warehouse.pull_stock_levels(cursor=None).items}
    assert committed["CAP"].available == before["CAP"].available - 2
    first = warehouse.pull_shipment_confirmations(cursor=None)
    assert first.items == ()
    clock.advance(4 * 3600 + 1)
    shipped = warehouse.pull_shipment_confirmations(cursor=first.next_cursor)
    [confirmation] = shipped.items
    assert confirmation.request_id == "FR-1" and confirmation.tracking_numbers
    assert warehouse.pull_shipment_confirmations(cursor=shipped.next_cursor).items == ()
    after = {s.sku: s for s in warehouse.pull_stock_levels(cursor=None).items}
    assert after["CAP"].on_hand == before["CAP"].on_hand - 2
    assert after["CAP"].available == before["CAP"].available - 2
    warehouse.push_inbound(
        shipment=InboundShipment(
            reference="PO-1",
            location="SBX-WH1",
            lines=(InboundLine("CAP", 10),),
            expected_at=clock.now(),
        ),
        idempotency_key="asn",
    )
    restocked = {s.sku: s for s in warehouse.pull_stock_levels(cursor=None).items}
    assert restocked["CAP"].on_hand == after["CAP"].on_hand + 10


def test_carrier_quotes_buys_voids_and_tracks(clock: VirtualClock):
    state = MemoryState()
    carrier = build(sandbox.CARRIER, clock, state=state)
    shipment = RateRequest(
        ship_from=Address(postal_code="92101", country="US"),
        ship_to=Address(postal_code="11201", country="US"),
        parcels=(Parcel(weight_g=1200),),
    )
    rates = carrier.quote_rates(request=shipment)
    assert [r.amount.amount for r in rates] == sorted(r.amount.amount for r in rates)
    assert {r.service_level for r in rates} >= {ServiceLevel.STANDARD, ServiceLevel.OVERNIGHT}
    near = carrier.quote_rates(
        request=RateRequest(
            ship_from=Address(postal_code="10001", country="US"),
            ship_to=Address(postal_code="11201", country="US"),
            parcels=(Parcel(weight_g=1200),),
        )
    )
    assert near[0].amount.amount < rates[0].amount.amount  # distance costs
    label = carrier.buy_label(rate=rates[0], request=shipment, idempotency_key="ship-1")
    assert carrier.buy_label(rate=rates[0], request=shipment, idempotency_key="ship-1") == label
    assert len(state.snapshot()["labels"]) == 1
    clock.advance(10 * 24 * 3600)
    events = carrier.track(tracking_number=label.tracking_number)
    assert events[-1].status is TrackingStatus.DELIVERED
    other = carrier.buy_label(rate=rates[1], request=shipment, idempotency_key="ship-2")
    carrier.void_label(label_id=other.label_id)
    carrier.void_label(label_id=other.label_id)  # voiding twice is fine
    clock.advance(3 * 24 * 3600)
    assert [e.status for e in carrier.track(tracking_number=other.tracking_number)] == [
        TrackingStatus.PRE_TRANSIT
    ]
    with pytest.raises(NotFoundError):
        carrier.void_label(label_id="lbl_missing")
