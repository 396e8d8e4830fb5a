"""RELIABILITY 12: the outbox survives a broker outage.

Redis (a server of this test's own, never the shared one) is stopped while 200 orders
commit and 50 order transactions roll back. Once it is back the relay publishes exactly
the 200 committed messages, some of them twice, and a real Celery worker turns them into
exactly 200 effects.

The last test uses the ordinary `db` fixture, which also lets this module run on its own
(pytest-django creates the test database only when a collected test asks for one).
"""

from __future__ import annotations

import time
from datetime import timedelta

import redis
from django.db import transaction
from django.utils import timezone

from audit.models import ActivityEntry
from orders.models import Order
from orders.services import ingest_order
from outbox import services
from outbox.models import MessageStatus, OutboxMessage
from tests.orders.conftest import order_input
from tests.outbox.handlers import EFFECT_ACTION, EFFECT_TOPIC
from tests.outbox.support import free_port, redis_server, use_broker
from tests.workers.support import drained, running_worker, wait_for

COMMITTED = 200
ROLLED_BACK = 50
REPUBLISHED = 20


class Rollback(Exception):
    pass


def test_outbox_survives_a_broker_outage(committed_outbox, subscribed, settings, tmp_path):
    # given: a subscriber of order.created whose handler writes one activity row per
    # message, and Celery pointed at our own Redis, which then goes down
    subscribed("order.created", EFFECT_TOPIC)
    with redis_server(tmp_path) as server, use_broker(server.url(), settings):
        server.stop()

        # when: orders keep arriving during the outage; some transactions roll back
        started = time.monotonic()
        for i in range(COMMITTED + ROLLED_BACK):
            data = order_input(external_id=f"OUT-{i}", lines=[("UNMAPPED", 1)])
            if i % 5 == 4:
                try:
                    with transaction.atomic():
                        ingest_order(data)
                        raise Rollback
                except Rollback:
                    pass
            else:
                ingest_order(data)
        commit_seconds = time.monotonic() - started
        # a relay during the outage publishes nothing and loses nothing
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
                    OutboxMessage.objects.filter(status=MessageStatus.DONE).count() == COMMITTED
                ),
                timeout=30,
                what=f"{COMMITTED} messages consumed",
            )
            wait_for(lambda: drained(broker, ["default"]), timeout=15, what="queue drained")
        broker.close()

    # then: the committing requests never waited on the dead broker
    assert commit_seconds < 20, commit_seconds
    assert Order.objects.count() == COMMITTED
    assert (during.published, bool(during.broker_error)) == (0, True)
    assert (after.published, after.broker_error) == (COMMITTED, "")
    assert again.republished == REPUBLISHED
    assert queued == COMMITTED + REPUBLISHED
    # exactly one message per committed order, none for rolled-back ones
    messages = list(OutboxMessage.objects.order_by("id"))
    committed_ids = {str(pk) for pk in Order.objects.values_list("pk", flat=True)}
    assert len(messages) == COMMITTED
    assert {m.payload["object_id"] for m in messages} == committed_ids
    assert {m.status for m in messages} == {MessageStatus.DONE}
    assert sum(m.publish_count for m in messages) == COMMITTED + REPUBLISHED
    # every task ran (the queue drained), yet each message had exactly one effect
    effects = list(ActivityEntry.objects.filter(action=EFFECT_ACTION))
    assert len(effects) == COMMITTED
    assert sorted(e.changes["key"] for e in effects) == sorted(m.key for m in messages)


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
