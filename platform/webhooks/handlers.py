"""Outbox wiring: every domain event some endpoint wants becomes deliveries."""

from __future__ import annotations

from outbox.models import OutboxMessage
from outbox.registry import ALL_EVENTS, handler, subscribe
from webhooks import services

DISPATCH_TOPIC = "webhooks.dispatch"


@handler(DISPATCH_TOPIC)
def dispatch(message: OutboxMessage) -> None:
    services.dispatch_event(message.payload)


subscribe(ALL_EVENTS, DISPATCH_TOPIC, when=services.has_subscribers)
