"""Generic (ShipBob-shaped) 3PL connector against the fake 3PL."""

from __future__ import annotations

import pytest

import connectors.threepl as threepl_plugin
from connectors.clock import VirtualClock
from connectors.errors import AuthError, PermanentError
from connectors.fakeapi import FakeResponse
from connectors.http import HttpContext
from connectors.manager import make_test_manager
from connectors.state import MemoryState
from connectors.threepl.connector import ThreePLConnector
from connectors.types import (
    Address,
    FulfillmentLine,
    FulfillmentRequest,
    InboundLine,
    InboundShipment,
    OrderType,
    ServiceLevel,
)
from tests.connectors.conftest import threepl_settings
from tests.fakes.threepl import FakeThreePL

ADDRESS = Address(
    name="Ada Lovelace",
    line1="1 Main St",
    city="Brooklyn",
    region="NY",
    postal_code="11201",
    country="US",
)


def build(fake: FakeThreePL, http: HttpContext, clock, **settings) -> ThreePLConnector:
    pm = make_test_manager(threepl_plugin)
    return pm.hook.keel_connector_factory(
        name="threepl",
        settings=threepl_settings(fake, **settings),
        credentials={"access_token": fake.access_token},
        http=http,
        state=MemoryState(),
        clock=clock,
    )


def request(n: int, address: Address = ADDRESS, **fields) -> FulfillmentRequest:
    return FulfillmentRequest(
        request_id=f"FR-{n}",
        order_ref=f"#{1000 + n}",
        ship_to=address,
        lines=(FulfillmentLine("KEEL-000-S", 2), FulfillmentLine("KEEL-001-M", 1)),
        **fields,
    )


def test_fulfillment_order_reaches_the_3pl_once(
    threepl_fake: FakeThreePL, http: HttpContext, clock: VirtualClock
):
    connector = build(threepl_fake, http, clock)
    first = connector.push_fulfillment_order(
        request=request(1, service_level=ServiceLevel.EXPEDITED), idempotency_key="k1"
    )
    replay = connector.push_fulfillment_order(request=request(1), idempotency_key="k1")
    assert first.external_id == replay.external_id
    assert list(threepl_fake.orders) == ["FR-1"]
    assert len(threepl_fake.intake) == 2  # the replay was refused by reference, not re-created
    order = threepl_fake.orders["FR-1"]
    assert order["shipping_method"] == "2-Day"
    assert order["recipient"]["address"]["zip_code"] == "11201"
    assert order["products"] == [
        {"reference_id": "KEEL-000-S", "quantity": 2},
        {"reference_id": "KEEL-001-M", "quantity": 1},
    ]


def test_wholesale_orders_are_b2b(threepl_fake, http, clock):
    build(threepl_fake, http, clock).push_fulfillment_order(
        request=request(2, order_type=OrderType.WHOLESALE), idempotency_key="k2"
    )
    assert threepl_fake.orders["FR-2"]["type"] == "B2B"


def test_order_post_is_retried_after_5xx_because_the_3pl_dedupes_by_reference(
    threepl_fake: FakeThreePL, http: HttpContext, clock: VirtualClock
):
    threepl_fake.fail_next(FakeResponse.json({"message": "upstream"}, 502), times=2)
    ack = build(threepl_fake, http, clock).push_fulfillment_order(
        request=request(3), idempotency_key="k3"
    )
    assert ack.external_id == str(threepl_fake.orders["FR-3"]["id"])
    assert threepl_fake.journal.statuses("POST") == [502, 502, 201]


def test_invalid_address_is_permanent_and_not_retried(
    threepl_fake: FakeThreePL, http: HttpContext, clock: VirtualClock
):
    bad = Address(name="Nobody", line1="1 Main St", city="Nowhere", country="US")
    with pytest.raises(PermanentError) as caught:
        build(threepl_fake, http, clock).push_fulfillment_order(
            request=request(4, address=bad), idempotency_key="k4"
        )
    assert caught.value.status == 400
    assert threepl_fake.journal.count("POST") == 1
    assert threepl_fake.orders == {}


def test_x_retry_after_is_honoured(
    threepl_fake: FakeThreePL, http: HttpContext, clock: VirtualClock
):
    threepl_fake.throttle_next(retry_after=25)
    build(threepl_fake, http, clock).check_connection()
    first, second = threepl_fake.journal.entries()
    assert first.status == 429 and first.response_headers["x-retry-after"] == "25"
    assert second.at - first.at >= 25


def test_sliding_window_is_never_exceeded_and_never_throttled(
    clock: VirtualClock, http: HttpContext
):
    # 400 calls against 150/min: the client paces itself, the fake never answers 429.
    with FakeThreePL(clock=clock, limit=150, window=60.0) as fake:
        connector = build(fake, http, clock)
        for _ in range(400):
            connector.check_connection()
        times = fake.journal.times()
        statuses = fake.journal.statuses()
    assert 429 not in statuses
    assert all(times[i + 150] - times[i] >= 60 for i in range(len(times) - 150))
    # sustained: beyond the first window, at most the published rate (+5 %)
    assert (len(times) - 150) / (times[-1] - times[0]) <= 150 / 60 * 1.05


def test_stock_levels_pull_every_center_and_sku(clock: VirtualClock, http: HttpContext):
    with FakeThreePL(clock=clock) as fake:
        connector = build(fake, http, clock, page_size=7)
        cursor, levels, pages = None, [], 0
        while True:
            page = connector.pull_stock_levels(cursor=cursor)
            levels += page.items
            pages += 1
            cursor = page.next_cursor
            if not page.has_more:
                break
    assert pages == 5  # 30 SKUs, 7 per page
    assert len(levels) == 60
    assert {(level.sku, level.location) for level in levels} == {
        (sku, str(center)) for sku in fake.skus for center, _ in fake.centers
    }
    assert all(level.on_hand == 100 and level.as_of == clock.now() for level in levels)


def test_shipments_are_confirmed_with_tracking_and_resume_without_loss(
    threepl_fake: FakeThreePL, http: HttpContext, clock: VirtualClock
):
    # given 25 orders shipped over time
    connector = build(threepl_fake, http, clock, page_size=10)
    for n in range(25):
        connector.push_fulfillment_order(request=request(n), idempotency_key=f"k{n}")
        clock.advance(30)
        threepl_fake.ship(f"FR-{n}")
    # when a first page is stored and the worker dies; meanwhile one shipment is updated
    page1 = connector.pull_shipment_confirmations(cursor=None)
    threepl_fake.touch_shipment(threepl_fake.shipments[0]["id"])
    resumed = build(threepl_fake, http, clock, page_size=10)
    cursor, rest = page1.next_cursor, []
    while True:
        page = resumed.pull_shipment_confirmations(cursor=cursor)
        rest += page.items
        cursor = page.next_cursor
        if not page.has_more:
            break
    # then every shipment arrives (the touched one possibly twice), none is skipped
    references = [s.request_id for s in page1.items] + [s.request_id for s in rest]
    assert set(references) == {f"FR-{n}" for n in range(25)}
    assert len(references) <= 26
    confirmation = page1.items[0]
    assert confirmation.tracking_numbers and confirmation.carrier == "USPS"
    assert {(line.sku, line.quantity) for line in confirmation.lines} == {
        ("KEEL-000-S", 2),
        ("KEEL-001-M", 1),
    }


def test_inbound_shipment_is_created_once(
    threepl_fake: FakeThreePL, http: HttpContext, clock: VirtualClock
):
    shipment = InboundShipment(
        reference="PO-77",
        location="10",
        lines=(InboundLine("KEEL-002-L", 48),),
        expected_at=clock.now(),
        tracking_numbers=("1ZINBOUND",),
    )
    connector = build(threepl_fake, http, clock)
    first = connector.push_inbound(shipment=shipment, idempotency_key="asn-1")
    again = connector.push_inbound(shipment=shipment, idempotency_key="asn-1")
    assert first.external_id == again.external_id
    assert len(threepl_fake.receiving) == 1


def test_revoked_token_raises_auth_error_after_one_request(
    threepl_fake: FakeThreePL, http: HttpContext, clock: VirtualClock
):
    threepl_fake.revoke_token()
    connector = build(threepl_fake, http, clock)
    for _ in range(3):
        with pytest.raises(AuthError):
            connector.pull_stock_levels(cursor=None)
    assert threepl_fake.journal.statuses() == [401]
