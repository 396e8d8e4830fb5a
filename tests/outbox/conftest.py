"""Outbox test fixtures: per-test subscriptions and clean-up of committed outbox rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from django.db import connection

from outbox import registry
from tests.outbox import handlers  # noqa: F401  (registers the test topics' handlers)
from tests.workers.support import delete_rows

OUTBOX_TABLES = (
    "outbox_outboxmessage",
    "webhooks_webhookdelivery",
    "webhooks_webhookendpoint",
)


@pytest.fixture
def subscribed() -> Iterator[Callable[[str, str], None]]:
    """Subscribe a topic to an event type for this test only."""
    added: list[tuple[str, str]] = []

    def subscribe(event_type: str, topic: str) -> None:
        registry.subscribe(event_type, topic)
        added.append((event_type, topic))

    yield subscribe
    for event_type, topic in added:
        registry.unsubscribe(event_type, topic)


@pytest.fixture
def committed_outbox(committed_alpha) -> Iterator[None]:
    """committed_alpha, plus: outbox and webhook tables and the test handlers' activity
    rows in alpha are emptied afterwards (committed_alpha leaves them)."""
    delete_rows(handlers.EFFECT_ACTION)
    try:
        yield
    finally:
        delete_rows(handlers.EFFECT_ACTION)
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE "
                + ", ".join(f"brand_alpha.{t}" for t in OUTBOX_TABLES)
                + " RESTART IDENTITY CASCADE"
            )
