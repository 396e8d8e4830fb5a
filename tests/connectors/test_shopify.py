"""Shopify connector against the fake Shopify: RELIABILITY 6 and 23, inventory CAS,
fulfillments."""

from __future__ import annotations

import ast
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

import connectors.shopify as shopify_plugin
from connectors.clock import SystemClock, VirtualClock
from connectors.errors import AuthError, ConfigurationError, WebhookVerificationError
from connectors.fakeapi import FakeResponse
from connectors.http import EgressPolicy, HttpContext, parse_link_header
from connectors.manager import make_test_manager
from connectors.shopify.connector import ShopifyConnector
from connectors.state import MemoryState
from connectors.types import (
    AvailableQuantity,
    FulfillmentConfirmation,
    FulfillmentLine,
    OrderStatus,
    PushOutcome,
    ServiceLevel,
)
from tests.connectors.conftest import (
    OLD_WEBHOOK_SECRET,
    WEBHOOK_SECRET,
    shopify_credentials,
    shopify_settings,
)
from tests.fakes.shopify import FakeShopify, ShopifyWebhookSender

ROOT = Path(__file__).resolve().parents[2]


def build(
    fake: FakeShopify, http: HttpContext, clock, credentials=None, **settings
) -> ShopifyConnector:
    pm = make_test_manager(shopify_plugin)
    return pm.hook.keel_connector_factory(
        name="shopify",
        settings=shopify_settings(fake, **settings),
        credentials=credentials or shopify_credentials(fake),
        http=http,
        state=MemoryState(),
        clock=clock,
    )


def pull_all(connector, cursor=None, limit=1000):
    ids, pages = [], 0
    while pages < limit:
        result = connector.pull_orders(cursor=cursor)
        pages += 1
        ids += [o.external_id for o in result.items]
        cursor = result.next_cursor
        if not result.has_more:
            return ids, cursor, pages
    raise AssertionError("pull did not finish")


@pytest.fixture
def fake_1234(clock: VirtualClock) -> Iterator[FakeShopify]:
    with FakeShopify(clock=clock, orders=1234) as fake:
        yield fake


# -- RELIABILITY 23: pagination and politeness ---------------------------------------------------


def test_ingests_1234_orders_in_five_pages_using_page_info_verbatim(
    fake_1234: FakeShopify, http: HttpContext, clock: VirtualClock
):
    connector = build(fake_1234, http, clock)
    ids, _, pages = pull_all(connector)
    assert len(ids) == 1234
    assert set(ids) == {str(i) for i in fake_1234.order_ids}
    assert pages == 5
    entries = fake_1234.journal.entries(path=r"/orders\.json$")
    assert [e.status for e in entries] == [200] * 5
    first_query = parse_qs(entries[0].raw_query)
    assert first_query["limit"] == ["250"] and first_query["status"] == ["any"]
    # every later request is exactly the previous answer's rel="next" URL
    for previous, current in zip(entries, entries[1:], strict=False):
        link = parse_link_header(previous.response_headers["Link"])["next"]
        assert urlsplit(link).query == current.raw_query
        assert set(parse_qs(current.raw_query)) == {"limit", "page_info"}
    assert "next" not in parse_link_header(entries[-1].response_headers.get("Link"))


def test_no_request_before_retry_after_expires(
    fake_1234: FakeShopify, http: HttpContext, clock: VirtualClock
):
    # given another worker has emptied the shared bucket
    fake_1234.consume(40)
    connector = build(fake_1234, http, clock)
    # when
    ids, _, _ = pull_all(connector)
    # then
    assert len(set(ids)) == 1234
    entries = fake_1234.journal.entries()
    throttled = [i for i, e in enumerate(entries) if e.status == 429]
    assert len(throttled) == 1
    retry_after = float(entries[throttled[0]].response_headers["Retry-After"])
    assert retry_after > 0
    expires = entries[throttled[0]].at + retry_after
    assert [e for e in entries if entries[throttled[0]].at < e.at < expires] == []
    assert entries[throttled[0] + 1].at >= expires


def test_sustained_rate_stays_within_published_leak_rate_with_zero_429(
    clock: VirtualClock, http: HttpContext
):
    # 3,000 orders in pages of 50: 60 requests, 20 beyond the bucket of 40 at 2/s.
    with FakeShopify(clock=clock, orders=3000, bucket_size=40, leak_rate=2.0) as fake:
        connector = build(fake, http, clock, orders_page_size=50)
        ids, _, pages = pull_all(connector)
        times = fake.journal.times()
        statuses = fake.journal.statuses()
    assert len(set(ids)) == 3000 and pages == 60
    assert 429 not in statuses
    after_burst = times[40:]
    rate = (len(after_burst) - 1) / (after_burst[-1] - after_burst[0])
    assert rate <= 2.0 * 1.05
    # and the client does not idle either: within 5 % of the fastest the limit allows
    assert times[-1] <= (60 - 40) / 2.0 * 1.05


def test_real_clock_pacing_with_a_fast_leak_has_no_429():
    # Same politeness on the wall clock; limits are settings, so a fast bucket keeps it quick.
    clock = SystemClock()
    http = HttpContext(clock=clock, egress=EgressPolicy.permissive())
    with FakeShopify(clock=clock, orders=1500, bucket_size=10, leak_rate=40.0) as fake:
        connector = build(
            fake, http, clock, orders_page_size=25, rest_bucket_size=10, rest_leak_rate=40
        )
        started = time.monotonic()
        ids, _, pages = pull_all(connector)
        elapsed = time.monotonic() - started
        times = fake.journal.times()
        statuses = fake.journal.statuses()
    assert len(set(ids)) == 1500 and pages == 60
    assert 429 not in statuses
    # Beyond the bucket's burst, requests went out no faster than the leak rate. (Measured
    # over the whole run: on a wall clock the bucket also leaks while the burst is served,
    # so any shorter window may legitimately hold a few back-to-back requests.)
    assert (len(times) - 10) / (times[-1] - times[0]) <= 40.0 * 1.05
    assert elapsed < 5


def test_5xx_burst_and_malformed_page_are_retried_without_loss(
    fake_1234: FakeShopify, http: HttpContext, clock: VirtualClock
):
    connector = build(fake_1234, http, clock)
    first = connector.pull_orders(cursor=None)
    fake_1234.fail_next(FakeResponse.json({"errors": "Internal Server Error"}, 503), times=3)
    second = connector.pull_orders(cursor=first.next_cursor)
    fake_1234.fail_next(FakeResponse.malformed())
    rest, _, _ = pull_all(connector, second.next_cursor)
    ids = [o.external_id for o in first.items + second.items] + rest
    assert len(ids) == len(set(ids)) == 1234
    assert fake_1234.journal.statuses().count(503) == 3


def test_killed_sync_resumes_from_stored_cursor(
    fake_1234: FakeShopify, http: HttpContext, clock: VirtualClock
):
    # given two pages stored, then the worker dies
    worker = build(fake_1234, http, clock)
    page1 = worker.pull_orders(cursor=None)
    page2 = worker.pull_orders(cursor=page1.next_cursor)
    stored = page2.next_cursor
    worker.close()
    # when a new worker resumes
    rest, _, pages = pull_all(build(fake_1234, http, clock), stored)
    # then nothing is lost or repeated
    ids = [o.external_id for o in page1.items + page2.items] + rest
    assert len(ids) == len(set(ids)) == 1234
    assert pages == 3


def test_expired_page_info_restarts_the_pass_without_loss(
    fake_1234: FakeShopify, http: HttpContext, clock: VirtualClock
):
    connector = build(fake_1234, http, clock)
    page1 = connector.pull_orders(cursor=None)
    fake_1234.expire_page_info()
    rest, _, _ = pull_all(connector, page1.next_cursor)
    assert set(rest) | {o.external_id for o in page1.items} == {str(i) for i in fake_1234.order_ids}
    assert 400 in fake_1234.journal.statuses()


def test_next_poll_returns_new_and_updated_orders_since_watermark(
    fake_1234: FakeShopify, http: HttpContext, clock: VirtualClock
):
    # given a completed backfill
    connector = build(fake_1234, http, clock)
    _, cursor, _ = pull_all(connector)
    # when orders change afterwards
    clock.advance(600)
    old = fake_1234.order_ids[:5]
    for order_id in old:
        fake_1234.cancel_order(order_id)
    new = fake_1234.add_orders(50)
    clock.advance(60)
    result = connector.pull_orders(cursor=cursor)
    # then the reconciliation poll sees every change, in one page
    returned = {o.external_id: o for o in result.items}
    changed = {str(i) for i in old + new}
    assert changed <= set(returned)
    assert all(returned[str(i)].status is OrderStatus.CANCELLED for i in old)
    assert len(returned) - len(changed) <= 1  # the overlap re-reads at most the newest order
    assert not result.has_more


def test_expired_token_raises_auth_error_without_retry_storm(
    fake_1234: FakeShopify, http: HttpContext, clock: VirtualClock
):
    connector = build(fake_1234, http, clock)
    page1 = connector.pull_orders(cursor=None)
    fake_1234.revoke_token()
    for _ in range(3):
        with pytest.raises(AuthError):
            connector.pull_orders(cursor=page1.next_cursor)
    assert fake_1234.journal.statuses() == [200, 401]


def test_settings_are_validated_without_echoing_values(
    shopify_fake: FakeShopify, http: HttpContext, clock: VirtualClock
):
    with pytest.raises(ConfigurationError) as caught:
        build(shopify_fake, http, clock, shop_domain="evil.example.com")
    assert "shop_domain" in str(caught.value) and "evil" not in str(caught.value)
    with pytest.raises(ConfigurationError) as caught:
        build(shopify_fake, http, clock, credentials={"access_token": "short"})
    assert "short" not in str(caught.value)


# -- order mapping --------------------------------------------------------------------------------


def test_orders_map_to_canonical_types(
    fake_1234: FakeShopify, http: HttpContext, clock: VirtualClock
):
    order_id = fake_1234.order_ids[3]
    fake_1234.update_order(
        order_id,
        shipping_lines=[{"code": "EXPRESS", "title": "Express 2-Day", "price": "14.00"}],
        tags="wholesale, vip",
        financial_status="pending",
    )
    fake_1234.cancel_order(order_id)
    connector = build(fake_1234, http, clock)
    order = next(
        o for o in connector.pull_orders(cursor=None).items if o.external_id == str(order_id)
    )
    raw = fake_1234.order(order_id)
    assert order.status is OrderStatus.CANCELLED
    assert order.service_level is ServiceLevel.EXPEDITED
    assert order.order_type.value == "wholesale"
    assert order.flags == {"unpaid"}
    assert order.placed_at.tzinfo is UTC
    assert order.placed_at == datetime.fromisoformat(raw["created_at"])
    assert order.totals.total.amount == Decimal(raw["total_price"])
    assert isinstance(order.lines[0].unit_price.amount, Decimal)
    assert order.lines[0].listing_id == str(raw["line_items"][0]["variant_id"])
    assert order.ship_to is not None and order.ship_to.country == "US"
    assert order.customer is not None and order.customer.email == raw["email"]
    assert order.raw["id"] == order_id


# -- RELIABILITY 6: webhooks ------------------------------------------------------------------


@pytest.fixture
def webhook_case(shopify_fake: FakeShopify, http: HttpContext, clock: VirtualClock):
    shopify_fake.add_orders(1)
    order_id = shopify_fake.order_ids[0]
    delivery = shopify_fake.webhook_for(order_id, secret=WEBHOOK_SECRET, event_id="evt-1")
    return shopify_fake, delivery


def test_valid_webhook_verifies_and_parses(webhook_case, http, clock):
    fake, delivery = webhook_case
    connector = build(fake, http, clock)
    connector.verify_webhook(headers=delivery.headers, body=delivery.body)
    event = connector.parse_webhook(headers=delivery.headers, body=delivery.body)
    assert event.event_id == "evt-1"
    assert event.delivery_id == delivery.webhook_id
    assert event.topic == "orders/create"
    assert event.order is not None and event.order.external_id == str(fake.order_ids[0])
    assert fake.journal.count() == 0  # verification and parsing are offline


@pytest.mark.parametrize(
    "case",
    ["one_byte_altered", "reserialised_json", "wrong_secret", "missing_header", "other_shop"],
)
def test_forged_webhooks_are_rejected(webhook_case, http, clock, case):
    fake, delivery = webhook_case
    headers, body = dict(delivery.headers), delivery.body
    if case == "one_byte_altered":
        body = body.replace(b'"quantity":', b'"quantitx":', 1)
    elif case == "reserialised_json":
        body = json.dumps(json.loads(body), indent=1).encode()
    elif case == "wrong_secret":
        headers = dict(
            ShopifyWebhookSender(secret="not-the-secret-0000", shop_domain=fake.shop)
            .delivery("orders/create", delivery.body)
            .headers
        )
    elif case == "missing_header":
        del headers["X-Shopify-Hmac-Sha256"]
    elif case == "other_shop":
        headers["X-Shopify-Shop-Domain"] = "someone-else.myshopify.com"
    connector = build(fake, http, clock)
    with pytest.raises(WebhookVerificationError):
        connector.verify_webhook(headers=headers, body=body)


def test_previous_secret_is_accepted_only_during_the_rotation_window(
    shopify_fake: FakeShopify, http: HttpContext, clock: VirtualClock
):
    # given a rotation declared for the next 24 hours
    until = (clock.now() + timedelta(hours=24)).isoformat()
    credentials = shopify_credentials(shopify_fake, previous_webhook_secret=OLD_WEBHOOK_SECRET)
    connector = build(
        shopify_fake,
        http,
        clock,
        credentials=credentials,
        previous_webhook_secret_valid_until=until,
    )
    sender = ShopifyWebhookSender(secret=OLD_WEBHOOK_SECRET, shop_domain=shopify_fake.shop)
    delivery = sender.delivery("orders/updated", {"id": 1})
    # when / then: inside the window the old secret verifies
    connector.verify_webhook(headers=delivery.headers, body=delivery.body)
    # and after the window it no longer does
    clock.advance(24 * 3600 + 1)
    with pytest.raises(WebhookVerificationError):
        connector.verify_webhook(headers=delivery.headers, body=delivery.body)
    # while the current secret keeps working
    current = ShopifyWebhookSender(secret=WEBHOOK_SECRET, shop_domain=shopify_fake.shop)
    fresh = current.delivery("orders/updated", {"id": 1})
    connector.verify_webhook(headers=fresh.headers, body=fresh.body)


def test_signature_comparison_is_constant_time():
    # Static check (RELIABILITY 6): digests are compared with hmac.compare_digest only.
    for path in (
        ROOT / "connectors/shopify/webhooks.py",
        ROOT / "connectors/sandbox/connectors.py",
    ):
        tree = ast.parse(path.read_text())
        calls = {
            node.func.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        }
        assert "compare_digest" in calls, path
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                assert not names & {"expected", "received", "digest", "signature"}, (
                    f"{path.name}:{node.lineno} compares a signature with =="
                )


def test_duplicate_deliveries_share_the_event_id(webhook_case, http, clock):
    fake, delivery = webhook_case
    connector = build(fake, http, clock)
    events = {
        connector.parse_webhook(headers=delivery.headers, body=delivery.body).event_id
        for _ in range(3)
    }
    assert events == {"evt-1"}


# -- inventory (compare-and-swap) -------------------------------------------------------------


def _levels(fake: FakeShopify, *quantities: int) -> list[AvailableQuantity]:
    return [
        AvailableQuantity(inventory_ref=str(v["inventory_item_id"]), available=q)
        for v, q in zip(fake.variants, quantities, strict=False)
    ]


def test_push_available_uses_compare_quantity(
    shopify_fake: FakeShopify, http: HttpContext, clock: VirtualClock
):
    connector = build(shopify_fake, http, clock)
    results = connector.push_available(levels=_levels(shopify_fake, 7, 0, 12))
    assert [r.outcome for r in results] == [PushOutcome.APPLIED] * 3
    assert [r.previous for r in results] == [50, 50, 50]
    assert [shopify_fake.available(v["inventory_item_id"]) for v in shopify_fake.variants[:3]] == [
        7,
        0,
        12,
    ]
    assert all(w["from"] == 50 for w in shopify_fake.inventory_writes)


def test_stale_compare_quantity_is_reread_and_retried(
    shopify_fake: FakeShopify, http: HttpContext, clock: VirtualClock
):
    shopify_fake.interleave_sales(2)
    connector = build(shopify_fake, http, clock)
    [result] = connector.push_available(levels=_levels(shopify_fake, 20))
    assert result.outcome is PushOutcome.APPLIED and result.attempts == 3
    assert result.previous == 48
    assert shopify_fake.available(shopify_fake.variants[0]["inventory_item_id"]) == 20


def test_stale_more_than_three_retries_gives_up_without_writing(
    shopify_fake: FakeShopify, http: HttpContext, clock: VirtualClock
):
    shopify_fake.interleave_sales(10)
    connector = build(shopify_fake, http, clock)
    [result] = connector.push_available(levels=_levels(shopify_fake, 20))
    assert result.outcome is PushOutcome.STALE and result.attempts == 4
    assert shopify_fake.inventory_writes == []
    assert shopify_fake.available(shopify_fake.variants[0]["inventory_item_id"]) == 46
    assert shopify_fake.journal.count(path="graphql") == 8  # 4 × (read + write)


def test_rejected_item_does_not_block_the_others(
    shopify_fake: FakeShopify, http: HttpContext, clock: VirtualClock
):
    levels = [AvailableQuantity(inventory_ref="424242", available=3), *_levels(shopify_fake, 9)]
    results = build(shopify_fake, http, clock).push_available(levels=levels)
    assert [r.outcome for r in results] == [PushOutcome.REJECTED, PushOutcome.APPLIED]


def test_graphql_throttle_waits_for_the_cost_bucket(
    shopify_fake: FakeShopify, http: HttpContext, clock: VirtualClock
):
    shopify_fake.drain_graphql()
    connector = build(shopify_fake, http, clock)
    [result] = connector.push_available(levels=_levels(shopify_fake, 5))
    assert result.outcome is PushOutcome.APPLIED
    entries = shopify_fake.journal.entries(path="graphql")
    # 10 points at 50/s restore: the retry comes no sooner than 0.2 s later
    assert entries[1].at - entries[0].at >= 0.2


# -- fulfillments ----------------------------------------------------------------------------------


def test_push_fulfillment_with_tracking_is_idempotent(
    fake_1234: FakeShopify, http: HttpContext, clock: VirtualClock
):
    order_id = fake_1234.order_ids[0]
    raw = fake_1234.order(order_id)
    shipment = FulfillmentConfirmation(
        external_id="shp-1",
        order_ref=str(order_id),
        carrier="USPS",
        tracking_numbers=("9400111",),
        tracking_urls=("https://tools.usps.com/go/TrackConfirmAction?tLabels=9400111",),
        lines=tuple(
            FulfillmentLine(
                sku=line["sku"], quantity=line["quantity"], external_line_id=str(line["id"])
            )
            for line in raw["line_items"]
        ),
        shipped_at=clock.now(),
    )
    connector = build(fake_1234, http, clock)
    first = connector.push_fulfillment(shipment=shipment)
    again = connector.push_fulfillment(shipment=shipment)
    assert not first.already_existed and again.already_existed
    assert first.external_id == again.external_id
    [fulfillment] = fake_1234.fulfillments[order_id]
    assert fulfillment["tracking_number"] == "9400111"
    assert fulfillment["tracking_company"] == "USPS"
    assert fake_1234.order(order_id)["fulfillment_status"] == "fulfilled"
    assert fake_1234.journal.count("POST") == 1


def test_list_listings_pages_through_every_variant(clock: VirtualClock, http: HttpContext):
    with FakeShopify(clock=clock, products=300) as fake:
        connector = build(fake, http, clock)
        cursor, listings = None, []
        while True:
            page = connector.list_listings(cursor=cursor)
            listings += page.items
            cursor = page.next_cursor
            if not page.has_more:
                break
    assert len(listings) == 900
    assert {item.inventory_ref for item in listings} == {
        str(v["inventory_item_id"]) for v in fake.variants
    }
    assert all(item.price is not None and item.price.currency == "USD" for item in listings)
