"""Test-only outbox handlers, registered on import: by the tests, and by a real worker
started with `-I tests.outbox.handlers`. Only handlers live here: subscriptions are
added per test (fixture `subscribed`) so other tests' orders never enqueue test messages.
"""

from __future__ import annotations

from audit.services import record
from outbox.models import OutboxMessage
from outbox.registry import RetryLater, handler

EFFECT_TOPIC = "test.outbox.effect"
EFFECT_ACTION = "test.outbox.effect"
FAILING_TOPIC = "test.outbox.failing"
WAITING_TOPIC = "test.outbox.waiting"


@handler(EFFECT_TOPIC)
def write_effect(message: OutboxMessage) -> None:
    # The effect commits together with "consumed", so a duplicate task cannot repeat it.
    record(
        EFFECT_ACTION,
        changes={"key": message.key, "event": message.payload.get("id", "")},
    )


@handler(FAILING_TOPIC, max_attempts=3)
def always_fail(message: OutboxMessage) -> None:
    record(EFFECT_ACTION, changes={"key": message.key, "rolled_back": True})
    raise ConnectionError("partner API is down")


@handler(WAITING_TOPIC, max_attempts=2)
def told_to_wait(message: OutboxMessage) -> None:
    record(EFFECT_ACTION, changes={"key": message.key, "rolled_back": True})
    raise RetryLater("partner asked to come back later", seconds=message.payload.get("after"))
