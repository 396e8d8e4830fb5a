"""RELIABILITY 12: the outbox survives a broker outage.

Redis (a server of this test's own, never the shared one) is stopped while 200 orders
commit and 50 order transactions roll back, and stock keeps changing (30 receipts of 10
SKUs commit, 50 more roll back). Once it is back the relay publishes exactly the committed
messages (200 `order.created`, 10 `stock.changed`: each SKU's burst is one event), some of
them twice, and a real Celery worker turns them into exactly one effect each. The same
holds for an effect that leaves Keel: fulfillment orders routed to a 3PL's warehouse
during the outage reach the 3PL's fake exactly once after it.

The last test uses the ordinary `db` fixture, which also lets this module run on its own
(pytest-django creates the test database only when a collected test asks for one).
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest
import redis
from django.db import transaction
from django.utils import timezone

from audit.models import ActivityEntry
from inventory import services as stock
from inventory.models import StockEvent
from orders.models import FulfillmentOrder, FulfillmentStatus, Order
from orders.services import ingest_order
from outbox import services
from outbox.models import MessageStatus, OutboxMessage
from sync import services as sync
from sync.models import FulfillmentPush, PushStatus
from tests.factories import SKUFactory, WarehouseFactory
from tests.fakes.threepl import FakeThreePL
from tests.orders.conftest import order_input
from tests.outbox.handlers import EFFECT_ACTION, EFFECT_TOPIC
from tests.outbox.support import free_port, redis_server, use_broker
from tests.sync.conftest import committed_sync, stock_network  # noqa: F401  (fixture)
from tests.sync.test_threepl import place_order
from tests.workers.support import drained, running_worker, wait_for

COMMITTED = 200
ROLLED_BACK = 50
REPUBLISHED = 20
STOCK_SKUS = 10
RECEIPTS_PER_SKU = 3


class Rollback(Exception):
    pass


def test_outbox_survives_a_broker_outage(committed_outbox, subscribed, settings, tmp_path, caplog):
    # given: subscribers of order.created and stock.changed whose handler writes one
    # activity row per message, and Celery pointed at our own Redis, which then goes down
    subscribed("order.created", EFFECT_TOPIC)
    subscribed("stock.changed", EFFECT_TOPIC)
    # A burst settles at once (no real-time wait for the debounce window in a test).
    settings.KEEL_OUTBOX_STOCK_DEBOUNCE_SECONDS = 0
    warehouse = WarehouseFactory(code="OUTAGE")
    skus = [SKUFactory(code=f"OUT-SKU-{n}") for n in range(STOCK_SKUS)]
    with redis_server(tmp_path) as server, use_broker(server.url(), settings):
        server.stop()
        assert not _answers(server.url()), "the broker must really be down"

        # when: orders and stock changes keep arriving during the outage; some roll back
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="outbox.services"):
            for i in range(COMMITTED + ROLLED_BACK):
                data = order_input(external_id=f"OUT-{i}", lines=[("UNMAPPED", 1)])
                if i % 5 == 4:
                    _rolled_back(lambda data=data: ingest_order(data))
                    _rolled_back(
                        lambda i=i: stock.receive(
                            sku=skus[i % STOCK_SKUS], warehouse=warehouse, quantity=1
                        )
                    )
                else:
                    ingest_order(data)
                if i % 8 == 0 and i < 8 * STOCK_SKUS * RECEIPTS_PER_SKU:
                    stock.receive(sku=skus[(i // 8) % STOCK_SKUS], warehouse=warehouse, quantity=5)
        commit_seconds = time.monotonic() - started
        failed_kicks = caplog.text.count("could not kick the relay")
        # a relay during the outage settles the stock bursts, publishes nothing, loses nothing
        during = services.relay()

        # the broker comes back (empty: it kept nothing)
        server.start()
        after = services.relay()
        # a relay that "lost" 20 publishes re-publishes them: those tasks arrive twice
        first = list(OutboxMessage.objects.order_by("id").values_list("id", flat=True)[:20])
        OutboxMessage.objects.filter(pk__in=first).update(
            published_at=timezone.now() - timedelta(hours=1)
        )
        again = services.relay()
        broker = redis.Redis.from_url(server.url())
        queued = broker.llen("default")

        with running_worker(
            ["default"], tmp_path / "worker.log", include=["tests.outbox.handlers"]
        ):
            wait_for(
                lambda: (
                    OutboxMessage.objects.filter(status=MessageStatus.DONE).count()
                    == COMMITTED + STOCK_SKUS
                ),
                timeout=30,
                what=f"{COMMITTED + STOCK_SKUS} messages consumed",
            )
            wait_for(lambda: drained(broker, ["default"]), timeout=15, what="queue drained")
        broker.close()

    total = COMMITTED + STOCK_SKUS
    # then: the committing requests did not each pay a failed connect to the dead broker:
    # after a failed kick a process skips kicks for KICK_PAUSE_SECONDS
    assert 1 <= failed_kicks <= 1 + commit_seconds / services.KICK_PAUSE_SECONDS
    assert Order.objects.count() == COMMITTED
    assert StockEvent.objects.count() == STOCK_SKUS * RECEIPTS_PER_SKU
    assert (during.published, bool(during.broker_error)) == (0, True)
    assert during.stock_events == STOCK_SKUS * RECEIPTS_PER_SKU
    assert (after.published, after.broker_error) == (total, "")
    assert again.republished == REPUBLISHED
    assert queued == total + REPUBLISHED
    # exactly one message per committed order and per SKU's stock burst, none for
    # rolled-back work
    messages = list(OutboxMessage.objects.order_by("id"))
    by_type = {}
    for m in messages:
        by_type.setdefault(m.payload["type"], []).append(m)
    committed_ids = {str(pk) for pk in Order.objects.values_list("pk", flat=True)}
    assert len(messages) == total
    assert {m.payload["object_id"] for m in by_type["order.created"]} == committed_ids
    assert sorted(m.payload["object_id"] for m in by_type["stock.changed"]) == sorted(
        f"{sku.pk}:{warehouse.pk}" for sku in skus
    )
    assert {m.payload["data"]["available_after"] for m in by_type["stock.changed"]} == {
        5 * RECEIPTS_PER_SKU
    }
    assert {m.status for m in messages} == {MessageStatus.DONE}
    assert sum(m.publish_count for m in messages) == total + REPUBLISHED
    # every task ran (the queue drained), yet each message had exactly one effect
    effects = list(ActivityEntry.objects.filter(action=EFFECT_ACTION))
    assert len(effects) == total
    assert sorted(e.changes["key"] for e in effects) == sorted(m.key for m in messages)


THREEPL_ORDERS = 30
THREEPL_ROLLED_BACK = 6


@pytest.mark.usefixtures("committed_sync")
def test_3pl_pushes_committed_during_an_outage_reach_the_3pl_once_after_it(
    settings, tmp_path, monkeypatch
):
    """Fulfillment orders routed to a warehouse a 3PL serves while the broker is down are
    each sent to the 3PL's fake exactly once after it returns, though some of their tasks
    are delivered twice."""
    # given: a 3PL connection serving EAST; worker processes may call its fake on loopback
    monkeypatch.setenv("KEEL_CONNECTOR_EGRESS_PERMISSIVE", "1")
    settings.KEEL_CONNECTOR_EGRESS_PERMISSIVE = True
    codes = [f"KEEL-{p:03d}-M" for p in range(3)]
    with FakeThreePL() as fake:
        stock_network("shop", codes, quantity=1000)
        sync.create_connection(
            connector="threepl",
            display_name="ShipBob",
            channel_key="shipbob",
            settings={"api_base_url": fake.base_url, "channel_id": str(fake.channel_id)},
            credentials={"access_token": fake.access_token},
            warehouse_map={"10": "EAST"},
        )
        with redis_server(tmp_path) as server, use_broker(server.url(), settings):
            server.stop()

            # when: orders keep arriving during the outage (some roll back)
            for i in range(THREEPL_ORDERS + THREEPL_ROLLED_BACK):
                lines = [(codes[i % len(codes)], 1)]
                if i % 6 == 5:
                    _rolled_back(lambda i=i, lines=lines: place_order(f"OUT-3PL-{i}", lines))
                else:
                    place_order(f"OUT-3PL-{i}", lines)
            during = services.relay()

            # the broker comes back; a relay that "lost" some publishes sends them again
            server.start()
            after = services.relay()
            lost = list(
                OutboxMessage.objects.filter(topic=sync.FULFILLMENT_TOPIC)
                .order_by("id")
                .values_list("id", flat=True)[: THREEPL_ORDERS // 3]
            )
            OutboxMessage.objects.filter(pk__in=lost).update(
                published_at=timezone.now() - timedelta(hours=1)
            )
            again = services.relay()
            broker = redis.Redis.from_url(server.url())
            with running_worker(["default", "sync"], tmp_path / "worker.log"):
                wait_for(
                    lambda: (
                        OutboxMessage.objects.filter(
                            topic=sync.FULFILLMENT_TOPIC, status=MessageStatus.DONE
                        ).count()
                        == THREEPL_ORDERS
                    ),
                    timeout=60,
                    what=f"{THREEPL_ORDERS} pushes consumed",
                )
                wait_for(
                    lambda: drained(broker, ["default", "sync"]), timeout=15, what="queues drained"
                )
            broker.close()
        intake = list(fake.intake)
        accepted = dict(fake.orders)

    # then: nothing was published during the outage, everything after it, some twice
    assert (during.published, bool(during.broker_error)) == (0, True)
    assert (after.published, again.republished) == (THREEPL_ORDERS, len(lost))
    messages = list(OutboxMessage.objects.filter(topic=sync.FULFILLMENT_TOPIC))
    assert sum(m.publish_count for m in messages) == THREEPL_ORDERS + len(lost)
    # and: one POST per committed fulfillment order, none for rolled-back ones
    fos = FulfillmentOrder.objects.all()
    assert fos.count() == THREEPL_ORDERS
    refs = sorted(f"FO-{fo.pk}" for fo in fos)
    assert sorted(body["reference_id"] for body in intake) == refs
    assert sorted(accepted) == refs
    assert set(fos.values_list("status", flat=True)) == {FulfillmentStatus.SENT}
    pushes = FulfillmentPush.objects.all()
    assert set(pushes.values_list("status", "attempts")) == {(PushStatus.SENT, 1)}
    assert pushes.count() == THREEPL_ORDERS


def _rolled_back(work) -> None:
    try:
        with transaction.atomic():
            work()
            raise Rollback
    except Rollback:
        pass


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
    finally:
        client.close()


def test_relay_with_the_broker_down_keeps_messages_for_the_next_run(in_alpha, settings):
    # given: three due messages and a broker that refuses connections
    for i in range(3):
        services.enqueue(EFFECT_TOPIC, {"i": i}, key=f"outage-{i}")

    # when
    with use_broker(f"redis://127.0.0.1:{free_port()}/0", settings):
        result = services.relay()

    # then: nothing marked published, the error is on the first message
    assert result.published == 0
    assert "OperationalError" in result.broker_error
    rows = list(OutboxMessage.objects.order_by("id").values_list("status", "last_error"))
    assert [status for status, _ in rows] == [MessageStatus.PENDING] * 3
    assert "OperationalError" in rows[0][1] and rows[1][1] == rows[2][1] == ""
