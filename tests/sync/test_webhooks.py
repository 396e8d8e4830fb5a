"""The webhook endpoint: verify the raw body, store once, acknowledge, process async.

RELIABILITY 6 (HMAC cases), 8 (out-of-order deliveries), 10 (reconciliation after lost
deliveries) and the acceptance "same webhook 3× + the same order polled → one order".
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Mapping
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import ActivityEntry
from connectors.sandbox.connectors import webhook_delivery
from orders.models import Order
from sync import services
from sync.models import ReceiptStatus, SyncRun, WebhookReceipt
from tests.conftest import host_of
from tests.fakes.shopify import FakeShopify, ShopifyWebhookSender
from tests.sync.conftest import SANDBOX_SECRET, SHOP_SECRET, connect_shopify, stock_network

WEBHOOK_TASK = services.WEBHOOK_TASK


def meta(headers: Mapping[str, str]) -> dict[str, str]:
    """HTTP headers as the Django test client takes them."""
    out = {}
    for name, value in headers.items():
        if name.lower() == "content-type":
            continue
        out["HTTP_" + name.upper().replace("-", "_")] = value
    return out


_clients: dict[str, Client] = {}


def deliver(brand, conn, headers: Mapping[str, str], body: bytes) -> int:
    # One client per brand host: building one loads the middleware (and whitenoise's file
    # scan), which would dominate tests sending hundreds of deliveries.
    client = _clients.setdefault(brand.slug, Client(HTTP_HOST=host_of(brand)))
    response = client.post(
        services.webhook_path(conn), data=body, content_type="application/json", **meta(headers)
    )
    assert response.content == b""
    assert "Set-Cookie" not in response.headers, "a webhook must not start a session"
    return response.status_code


def row_counts() -> dict[str, int]:
    from sync.models import Connection, StateEntry, SyncCursor

    return {
        "receipts": WebhookReceipt.objects.count(),
        "orders": Order.objects.count(),
        "runs": SyncRun.objects.count(),
        "activity": ActivityEntry.objects.count(),
        "cursors": SyncCursor.objects.count(),
        "state": StateEntry.objects.count(),
        "connections": Connection.objects.count(),
    }


def test_same_webhook_three_times_and_the_same_order_polled_make_one_order(
    brand_a, shop, shop_catalog, shopify, tasks, clock
):
    # given: one orders/create delivery, sent three times (Shopify retries)
    order_id = shopify.order_ids[0]
    delivery = shopify.webhook_for(order_id, secret=SHOP_SECRET, topic="orders/create")

    # when
    statuses = [deliver(brand_a, shop, delivery.headers, delivery.body) for _ in range(3)]

    # then: all acknowledged, one receipt, one processing task; nothing applied yet
    assert statuses == [200, 200, 200]
    assert WebhookReceipt.objects.filter(connection=shop).count() == 1
    assert tasks.names() == [WEBHOOK_TASK]
    assert Order.objects.count() == 0

    # when: the task runs, then a poll brings the same order (and the rest) again
    tasks.drain(clock=clock)
    services.request_sync(shop, trigger="manual")
    tasks.drain(clock=clock)

    # then
    assert Order.objects.filter(channel="shop", external_id=str(order_id)).count() == 1
    assert Order.objects.filter(channel="shop").count() == len(shopify.order_ids) == 120
    receipt = WebhookReceipt.objects.get()
    assert (receipt.status, receipt.result, receipt.external_id) == (
        ReceiptStatus.PROCESSED,
        "created",
        str(order_id),
    )
    run = SyncRun.objects.get()
    assert run.counts["created"] == 119 and run.counts["unchanged"] == 1


def _forgeries(fake: FakeShopify, order_id: int) -> dict[str, tuple[dict, bytes]]:
    good = fake.webhook_for(order_id, secret=SHOP_SECRET)
    headers, body = dict(good.headers), good.body
    altered = bytearray(body)
    altered[len(altered) // 2] ^= 0x01
    reserialised = json.dumps(json.loads(body), indent=2).encode()
    wrong = fake.webhook_for(order_id, secret="not-the-shop-secret-0000")
    missing = {k: v for k, v in headers.items() if k != "X-Shopify-Hmac-Sha256"}
    return {
        "one byte altered": (headers, bytes(altered)),
        "json re-serialised": (headers, reserialised),
        "wrong secret": (dict(wrong.headers), wrong.body),
        "missing signature": (missing, body),
    }


@pytest.mark.parametrize(
    "case", ["one byte altered", "json re-serialised", "wrong secret", "missing signature"]
)
def test_forged_webhook_is_401_with_nothing_stored_but_a_security_log_entry(
    brand_a, shop, shopify, tasks, caplog, case
):
    # given
    headers, body = _forgeries(shopify, shopify.order_ids[3])[case]
    before = row_counts()

    # when
    with caplog.at_level(logging.WARNING, logger="keel.security"):
        status = deliver(brand_a, shop, headers, body)

    # then: refused, no row anywhere, no task, one security log line without secrets
    assert status == 401
    assert row_counts() == before
    assert tasks.sent == []
    security = [r for r in caplog.records if r.name == "keel.security"]
    assert [r.getMessage().split(":")[0] for r in security] == ["webhook rejected"]
    assert security[0].connection == shop.pk
    assert SHOP_SECRET not in caplog.text


def test_previous_secret_is_accepted_only_inside_the_declared_rotation_window(
    brand_a, in_alpha, shopify, tasks, clock
):
    # given: the shop is switching secrets; the old one is declared valid for a day
    old_secret = "shpss_previous_secret_00000001"
    until = clock.now() + timedelta(days=1)
    conn = connect_shopify(
        shopify,
        channel_key="rotating",
        previous_webhook_secret_valid_until=until.isoformat(),
    )
    services.update_connection(conn, credentials={"previous_webhook_secret": old_secret})
    sender = ShopifyWebhookSender(secret=old_secret, shop_domain=shopify.shop, clock=clock)
    first = sender.delivery("orders/create", shopify.order(shopify.order_ids[0]))
    second = sender.delivery("orders/create", shopify.order(shopify.order_ids[1]))

    # when / then: accepted inside the window, refused after it
    assert deliver(brand_a, conn, first.headers, first.body) == 200
    clock.advance(2 * 86400)
    assert deliver(brand_a, conn, second.headers, second.body) == 401
    assert list(WebhookReceipt.objects.values_list("event_id", flat=True)) == [first.event_id]


def test_out_of_order_deliveries_end_in_the_newest_state_and_a_stale_one_is_logged(
    brand_a, shop, shop_catalog, shopify, tasks, clock
):
    # given: create (t1), an update (t2) and a stale update (t0 < t1) of one order
    order_id = shopify.order_ids[5]
    v1 = shopify.order(order_id)
    clock.advance(300)
    address = {**v1["shipping_address"], "city": "Portland", "province_code": "OR"}
    v2 = shopify.update_order(order_id, shipping_address=address)
    v0 = {**v1, "updated_at": "2020-01-01T00:00:00-04:00", "note": "stale"}
    sender = ShopifyWebhookSender(secret=SHOP_SECRET, shop_domain=shopify.shop, clock=clock)
    deliveries = [
        sender.delivery("orders/updated", v2),
        sender.delivery("orders/create", v1),
        sender.delivery("orders/updated", v0),
    ]

    # when: delivered and processed in that order
    for d in deliveries:
        assert deliver(brand_a, shop, d.headers, d.body) == 200
        tasks.drain(clock=clock)

    # then: one order, as of t2; the older versions were ignored and logged
    order = Order.objects.get(channel="shop", external_id=str(order_id))
    assert (order.ship_city, order.ship_state, order.note) == ("Portland", "OR", "")
    assert order.channel_updated_at.isoformat() == _utc(v2["updated_at"])
    assert Order.objects.count() == 1
    assert [r.result for r in WebhookReceipt.objects.order_by("id")] == [
        "created",
        "unchanged: Older or repeated update ignored.",
        "unchanged: Older or repeated update ignored.",
    ]
    assert (
        ActivityEntry.objects.filter(
            action="order.stale_update_ignored", object_id=str(order.pk)
        ).count()
        == 2
    )


def _utc(value: str) -> str:
    from datetime import UTC, datetime

    return datetime.fromisoformat(value).astimezone(UTC).isoformat()


def test_missed_webhooks_are_caught_by_one_reconciliation_poll(brand_a, in_alpha, clock, tasks):
    # given: a connection that synced once, then 500 new orders whose webhooks lose 10 %
    with FakeShopify(clock=clock, orders=0) as fake:
        # (No SKU mappings: the orders wait in the unmapped queue, which keeps 500
        # ingestions cheap; routing is not what this test is about.)
        conn = connect_shopify(fake, orders_page_size=250)
        services.request_sync(conn, trigger="manual")
        tasks.drain(clock=clock)
        clock.advance(30)
        ids = fake.add_orders(500)
        rng = random.Random(10)
        kept = [i for i in ids if rng.random() >= 0.10]
        sender = ShopifyWebhookSender(secret=SHOP_SECRET, shop_domain=fake.shop, clock=clock)
        for order_id in kept:
            d = sender.delivery("orders/create", fake.order(order_id))
            assert deliver(brand_a, conn, d.headers, d.body) == 200
        tasks.drain(clock=clock)
        assert Order.objects.count() == len(kept) < 500

        # when: the scheduled reconciliation poll runs (pull since the stored cursor)
        clock.advance(300)
        summary = services.poll_connections()
        tasks.drain(clock=clock)

    # then: every order once
    assert summary["queued"] == 1
    assert Order.objects.count() == 500
    assert set(Order.objects.values_list("external_id", flat=True)) == {str(i) for i in ids}
    run = SyncRun.objects.filter(trigger="schedule").get()
    assert (run.status, run.counts["created"], run.counts["unchanged"]) == (
        "succeeded",
        500 - len(kept),
        len(kept),
    )


def test_unknown_connection_is_404_and_get_is_not_allowed(brand_a, shop, tasks):
    client = Client(HTTP_HOST=host_of(brand_a))
    assert (
        client.post(
            "/hooks/00000000-0000-4000-8000-000000000000/", b"{}", content_type="application/json"
        ).status_code
        == 404
    )
    assert client.get(services.webhook_path(shop)).status_code == 405
    assert WebhookReceipt.objects.count() == 0 and tasks.sent == []


def test_a_connection_of_another_brand_is_not_found_on_this_host(brand_a, brand_b, shopify, tasks):
    from django_tenants.utils import schema_context

    with schema_context(brand_b.schema_name):
        theirs = connect_shopify(shopify)
    delivery = shopify.webhook_for(shopify.order_ids[0], secret=SHOP_SECRET)
    with schema_context(brand_a.schema_name):
        assert deliver(brand_a, theirs, delivery.headers, delivery.body) == 404
    with schema_context(brand_b.schema_name):
        assert WebhookReceipt.objects.count() == 0


def test_a_paused_connection_stores_deliveries_and_processes_them_on_resume(
    brand_a, shop, shop_catalog, shopify, tasks, clock
):
    services.pause_connection(shop)
    delivery = shopify.webhook_for(shopify.order_ids[0], secret=SHOP_SECRET)

    assert deliver(brand_a, shop, delivery.headers, delivery.body) == 200
    assert tasks.sent == []
    assert WebhookReceipt.objects.get().status == ReceiptStatus.RECEIVED

    services.resume_connection(shop)
    tasks.drain(clock=clock)
    assert WebhookReceipt.objects.get().status == ReceiptStatus.PROCESSED
    assert Order.objects.count() == 1


def test_sandbox_channel_webhooks_are_verified_and_applied(brand_a, in_alpha, tasks):
    conn = services.create_connection(
        connector="sandbox_channel",
        display_name="Sandbox",
        channel_key="sandbox",
        settings={"seed": 7, "skus": ["TEE-S", "TEE-M"]},
        credentials={"webhook_secret": SANDBOX_SECRET},
    )
    stock_network("sandbox", ["TEE-S", "TEE-M"])
    hour = int(time.time() // 3600) - 3
    order_id = next(
        f"SBX-{h}-0" for h in range(hour - 48, hour) if _sandbox_has(conn, f"SBX-{h}-0")
    )
    headers, body = webhook_delivery(secret=SANDBOX_SECRET, order_id=order_id)
    forged_headers, _ = webhook_delivery(secret="not-the-secret-0", order_id=order_id)

    assert deliver(brand_a, conn, forged_headers, body) == 401
    assert deliver(brand_a, conn, headers, body) == 200
    assert deliver(brand_a, conn, headers, body) == 200
    tasks.drain()
    assert list(Order.objects.values_list("channel", "external_id")) == [("sandbox", order_id)]


def _sandbox_has(conn, order_id: str) -> bool:
    from sync import plugins

    with plugins.connector_for(conn) as connector:
        return connector.simulation.order(order_id, connector.clock.now()) is not None


def test_a_verified_but_unreadable_delivery_is_kept_as_failed_not_bounced(
    brand_a, shop, shopify, tasks
):
    # given: correctly signed bytes that are not an order (the vendor would only resend them)
    sender = ShopifyWebhookSender(secret=SHOP_SECRET, shop_domain=shopify.shop)
    d = sender.delivery("orders/create", b"not json at all")

    # when
    status = deliver(brand_a, shop, d.headers, d.body)

    # then: acknowledged and kept for people to see, nothing to process
    assert status == 200
    receipt = WebhookReceipt.objects.get()
    assert (receipt.topic, receipt.status) == (services.UNPARSABLE_TOPIC, ReceiptStatus.FAILED)
    assert "not JSON" in receipt.result
    assert tasks.sent == []


def test_a_burst_is_applied_in_batches_by_one_task_at_a_time(
    brand_a, shop, shopify, tasks, clock, monkeypatch
):
    # given: 30 deliveries arrive before any worker picks them up
    monkeypatch.setattr(services, "RECEIPT_BATCH", 12)
    # (one sender: FakeShopify.webhook_for numbers event ids per call, so each call's
    # delivery would carry the same event id)
    sender = ShopifyWebhookSender(secret=SHOP_SECRET, shop_domain=shopify.shop, clock=clock)
    for order_id in shopify.order_ids[:30]:
        d = sender.delivery("orders/create", shopify.order(order_id))
        assert deliver(brand_a, shop, d.headers, d.body) == 200

    # then: one processing task was scheduled, not thirty
    assert tasks.names() == [WEBHOOK_TASK]

    # when it runs, it applies all of them, twelve per transaction
    tasks.drain(clock=clock)
    assert Order.objects.count() == 30
    assert set(WebhookReceipt.objects.values_list("status", "attempts")) == {("processed", 1)}
    # a delivery after the task started schedules the next task
    d = sender.delivery("orders/create", shopify.order(shopify.order_ids[40]))
    assert deliver(brand_a, shop, d.headers, d.body) == 200
    assert tasks.names() == [WEBHOOK_TASK]


def test_deliveries_claimed_by_a_worker_that_died_are_applied_later(
    brand_a, shop, shopify, tasks, clock
):
    # given: a worker claimed a delivery and was killed before applying it
    d = shopify.webhook_for(shopify.order_ids[0], secret=SHOP_SECRET)
    deliver(brand_a, shop, d.headers, d.body)
    tasks.sent.clear()
    claimed = services._claim_receipts(shop.pk)
    assert WebhookReceipt.objects.get().status == ReceiptStatus.PROCESSING

    # when: the schedule runs after the claim timed out
    later = timezone.now() + services.RECEIPT_CLAIM_TIMEOUT + timedelta(minutes=1)
    services.poll_connections(now=later)
    tasks.sent = [s for s in tasks.sent if s.name == WEBHOOK_TASK]
    tasks.drain(clock=clock)

    # then
    receipt = WebhookReceipt.objects.get()
    assert claimed == [receipt.pk]
    assert (receipt.status, receipt.attempts) == (ReceiptStatus.PROCESSED, 2)
    assert Order.objects.count() == 1


def test_a_delivery_that_keeps_killing_its_worker_is_given_up(brand_a, shop, shopify, tasks):
    d = shopify.webhook_for(shopify.order_ids[0], secret=SHOP_SECRET)
    deliver(brand_a, shop, d.headers, d.body)
    WebhookReceipt.objects.update(attempts=services.RECEIPT_MAX_ATTEMPTS)

    services.process_receipt(WebhookReceipt.objects.get().pk)

    receipt = WebhookReceipt.objects.get()
    assert (receipt.status, receipt.result) == ("failed", "Given up after repeated tries.")
    assert Order.objects.count() == 0


def test_with_the_broker_down_a_delivery_is_still_stored_acknowledged_and_applied_later(
    brand_a, shop, shopify, tasks, clock, monkeypatch, caplog
):
    # given: Redis refuses every publish
    from kombu.exceptions import OperationalError

    from config.celery import app
    from tests.sync.conftest import REAL_SEND_TASK

    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to redis: Connection refused.")

    monkeypatch.setattr(app, "send_task", refuse)
    monkeypatch.setattr(services, "send_task", REAL_SEND_TASK)
    monkeypatch.setattr(
        services,
        "_after_commit",
        lambda name, *args, countdown=None: services.send_task(name, *args, countdown=countdown),
    )
    d = shopify.webhook_for(shopify.order_ids[0], secret=SHOP_SECRET)

    # when
    with caplog.at_level(logging.WARNING, logger="sync.services"):
        status = deliver(brand_a, shop, d.headers, d.body)

    # then: acknowledged and stored; the sweep applies it once the broker is back
    assert status == 200
    assert WebhookReceipt.objects.get().status == ReceiptStatus.RECEIVED
    assert "could not publish sync.process_webhook" in caplog.text
    monkeypatch.setattr(services, "send_task", tasks)
    services.poll_connections(now=timezone.now() + timedelta(minutes=2))
    tasks.sent = [s for s in tasks.sent if s.name == WEBHOOK_TASK]
    tasks.drain(clock=clock)
    assert WebhookReceipt.objects.get().status == ReceiptStatus.PROCESSED
    assert Order.objects.count() == 1
