"""The fakes reproduce the vendors' documented behaviour (checked with a bare httpx client),
and the webhook sender delivers duplicates and out-of-order events like Shopify does."""

from __future__ import annotations

import threading

import httpx
import pytest

import connectors.shopify as shopify_plugin
from connectors.clock import VirtualClock
from connectors.errors import WebhookVerificationError
from connectors.fakeapi import FakeAPI, FakeRequest, FakeResponse
from connectors.http import EgressPolicy, HttpContext, parse_link_header
from connectors.manager import make_test_manager
from connectors.state import MemoryState
from tests.connectors.conftest import WEBHOOK_SECRET, shopify_credentials, shopify_settings
from tests.fakes.shopify import FakeShopify, ShopifyWebhookSender
from tests.fakes.threepl import FakeThreePL


def shopify_get(fake: FakeShopify, url: str, **params) -> httpx.Response:
    return httpx.get(
        url if "://" in url else fake.url + url,
        params=params or None,
        headers={"X-Shopify-Access-Token": fake.access_token},
    )


def test_shopify_fake_refuses_page_info_with_filters_and_unknown_tokens(clock: VirtualClock):
    with FakeShopify(clock=clock, orders=30) as fake:
        first = shopify_get(fake, "/admin/api/2024-10/orders.json", limit=10, status="any")
        next_url = parse_link_header(first.headers["Link"])["next"]
        assert shopify_get(fake, next_url).status_code == 200
        assert shopify_get(fake, next_url + "&status=any").status_code == 400
        assert shopify_get(fake, next_url.replace("page_info=", "page_info=x")).status_code == 400
        too_many = shopify_get(fake, "/admin/api/2024-10/orders.json", limit=251)
        assert too_many.status_code == 400
        assert first.headers["X-Shopify-Shop-Api-Call-Limit"] == "1/40"
        assert len(first.json()["orders"]) == 10


def test_shopify_fake_status_defaults_to_open(clock: VirtualClock):
    with FakeShopify(clock=clock, orders=5) as fake:
        fake.cancel_order(fake.order_ids[0])
        default = shopify_get(fake, "/admin/api/2024-10/orders.json")
        everything = shopify_get(fake, "/admin/api/2024-10/orders.json", status="any")
    assert len(default.json()["orders"]) == 4
    assert len(everything.json()["orders"]) == 5


def test_shopify_fake_leaky_bucket_answers_429_with_retry_after(clock: VirtualClock):
    with FakeShopify(clock=clock, bucket_size=5, leak_rate=1.0) as fake:
        statuses = [shopify_get(fake, "/admin/api/2024-10/shop.json").status_code for _ in range(7)]
        throttled = shopify_get(fake, "/admin/api/2024-10/shop.json")
        clock.advance(2.0)
        after_leak = shopify_get(fake, "/admin/api/2024-10/shop.json")
    assert statuses == [200] * 5 + [429, 429]
    assert throttled.status_code == 429
    assert float(throttled.headers["Retry-After"]) == pytest.approx(1.0)
    assert after_leak.status_code == 200


def test_shopify_fake_rejects_a_revoked_token(clock: VirtualClock):
    with FakeShopify(clock=clock) as fake:
        fake.revoke_token()
        response = shopify_get(fake, "/admin/api/2024-10/shop.json")
    assert response.status_code == 401
    assert "Invalid API key or access token" in response.json()["errors"]


def test_threepl_fake_sliding_window_answers_x_retry_after(clock: VirtualClock):
    with FakeThreePL(clock=clock, limit=3, window=60.0) as fake:
        headers = {"Authorization": f"Bearer {fake.access_token}"}
        answers = [httpx.get(fake.base_url + "/channel", headers=headers) for _ in range(3)]
        clock.advance(20)
        throttled = httpx.get(fake.base_url + "/channel", headers=headers)
        clock.advance(40)
        again = httpx.get(fake.base_url + "/channel", headers=headers)
    assert [a.headers["x-remaining-calls"] for a in answers] == ["2", "1", "0"]
    assert throttled.status_code == 429
    assert throttled.headers["x-retry-after"] == "40"
    assert throttled.json()["message"] == "Rate limit is exceeded. Try again in 40 seconds."
    assert again.status_code == 200


class WebhookReceiver(FakeAPI):
    """A stand-in for the platform's webhook endpoint, built on the SDK the way the sync app
    will be: verify over the raw body, dedupe by event id, keep the newest order version."""

    def __init__(self, connector) -> None:
        super().__init__()
        self.connector = connector
        self.seen: set[tuple[str, str]] = set()
        self.orders: dict[str, object] = {}
        self.stale = 0
        self.route("POST", "/webhooks/shopify", self._receive)

    def _receive(self, request: FakeRequest) -> FakeResponse:
        try:
            self.connector.verify_webhook(headers=request.headers, body=request.body)
        except WebhookVerificationError:
            return FakeResponse.json({"error": "invalid signature"}, 401)
        event = self.connector.parse_webhook(headers=request.headers, body=request.body)
        key = (event.topic, event.event_id)
        if key in self.seen:
            return FakeResponse.json({"duplicate": True})
        self.seen.add(key)
        held = self.orders.get(event.order.external_id)
        if held is not None and held.updated_at >= event.order.updated_at:
            self.stale += 1
        else:
            self.orders[event.order.external_id] = event.order
        return FakeResponse.json({"ok": True})


def test_duplicates_and_out_of_order_deliveries_end_in_one_current_order(clock: VirtualClock):
    with FakeShopify(clock=clock, orders=20) as shop:
        connector = make_test_manager(shopify_plugin).hook.keel_connector_factory(
            name="shopify",
            settings=shopify_settings(shop),
            credentials=shopify_credentials(shop),
            http=HttpContext(clock=clock, egress=EgressPolicy.permissive()),
            state=MemoryState(),
            clock=clock,
        )
        sender = ShopifyWebhookSender(secret=WEBHOOK_SECRET, shop_domain=shop.shop, clock=clock)
        deliveries = []
        for order_id in shop.order_ids:
            deliveries.append(sender.delivery("orders/create", shop.order(order_id)))
            clock.advance(60)
            deliveries.append(
                sender.delivery("orders/updated", shop.update_order(order_id, note="gift"))
            )
        forged = sender.delivery("orders/create", shop.order(shop.order_ids[0]), secret="nope" * 4)
        with WebhookReceiver(connector) as receiver:
            url = receiver.url + "/webhooks/shopify"
            records = sender.send_all(url, deliveries, duplicates=2, shuffle_seed=11, concurrency=4)
            assert sender.send(url, forged).status == 401
    assert len(records) == 120 and {r.status for r in records} == {200}
    assert len(receiver.seen) == 40
    assert len(receiver.orders) == 20
    assert all("has_note" in order.flags for order in receiver.orders.values())
    assert receiver.stale > 0  # some creates arrived after their update and were ignored


def test_send_all_can_drop_deliveries_for_reconciliation_tests(clock: VirtualClock):
    sender = ShopifyWebhookSender(secret=WEBHOOK_SECRET, clock=clock)
    received = []
    lock = threading.Lock()

    class Sink(FakeAPI):
        def __init__(self) -> None:
            super().__init__()
            self.route("POST", "/hook", self._hook)

        def _hook(self, request: FakeRequest) -> FakeResponse:
            with lock:
                received.append(request.header("x-shopify-event-id"))
            return FakeResponse()

    deliveries = [sender.delivery("orders/create", {"id": n}) for n in range(500)]
    with Sink() as sink:
        sender.send_all(sink.url + "/hook", deliveries, drop_ratio=0.1, shuffle_seed=3)
    assert 400 < len(received) < 500
    assert len(set(received)) == len(received)
    assert deliveries[0].headers["X-Shopify-Triggered-At"] == clock.now().isoformat()
