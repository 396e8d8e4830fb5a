"""RELIABILITY 7: the same delivery 5× concurrently and 3× later → 8×200, one receipt,
one order, one reservation, and no duplicated outbox message. Committed data: the
concurrent requests run on connections of their own."""

from __future__ import annotations

import threading
from collections import Counter

from django.db import connections
from django.test import Client

from inventory.models import Reservation, StockEvent
from orders.models import Order
from outbox.models import OutboxMessage
from sync import services
from sync.models import WebhookReceipt
from tenants.models import Brand
from tests.conftest import host_of
from tests.fakes.shopify import FakeShopify
from tests.sync.conftest import SHOP_SECRET, connect_shopify, stock_network
from tests.sync.test_webhooks import meta


def test_duplicate_webhook_storm_makes_one_receipt_one_order_one_reservation(
    committed_sync, tasks, clock
):
    # given (no `db` fixtures here: their test transaction would hide the rows from the
    # concurrent requests)
    brand_a = Brand.objects.get(slug="alpha")
    with FakeShopify(clock=clock, orders=3) as fake:
        conn = connect_shopify(fake)
        stock_network(conn.channel_key, [v["sku"] for v in fake.variants])
        delivery = fake.webhook_for(fake.order_ids[0], secret=SHOP_SECRET)
    path = services.webhook_path(conn)
    statuses: list[int] = []
    start = threading.Barrier(5)

    def send() -> None:
        try:
            client = Client(HTTP_HOST=host_of(brand_a))
            start.wait()
            response = client.post(
                path, data=delivery.body, content_type="application/json", **meta(delivery.headers)
            )
            statuses.append(response.status_code)
        finally:
            connections.close_all()

    # when: five at once, then three more one after the other
    threads = [threading.Thread(target=send) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for _ in range(3):
        send_sequential = Client(HTTP_HOST=host_of(brand_a)).post(
            path, data=delivery.body, content_type="application/json", **meta(delivery.headers)
        )
        statuses.append(send_sequential.status_code)
    tasks.drain(clock=clock)

    # then
    assert statuses == [200] * 8
    assert WebhookReceipt.objects.count() == 1
    assert tasks.names() == []
    order = Order.objects.get()
    assert order.status == "routed"
    fo = order.fulfillments.get()
    assert Reservation.objects.filter(reference_id=str(fo.pk)).count() == len(
        {line.sku_id for line in fo.lines.all()}
    )
    assert (
        StockEvent.objects.filter(cause="reserved").values("operation_id").distinct().count() == 1
    )
    keys = Counter(
        (m.topic, m.payload.get("type"), m.payload.get("object_id"))
        for m in OutboxMessage.objects.all()
    )
    assert all(n == 1 for n in keys.values()), keys
