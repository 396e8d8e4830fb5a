"""Helpers for tests that follow a domain event to a partner's endpoint."""

from __future__ import annotations

import json
from typing import Any

from outbox import services as outbox
from outbox.models import MessageStatus, OutboxMessage
from tests.webhooks.receiver import Receiver
from webhooks import services
from webhooks.handlers import DISPATCH_TOPIC
from webhooks.models import DeliveryStatus, WebhookDelivery


def endpoint_for(partner: Receiver, *event_types: str):
    """An active endpoint at the receiver, subscribed to `event_types`; the receiver
    holds its secret, so it verifies each signature."""
    issued = services.create_endpoint(actor=None, url=partner.url, event_types=list(event_types))
    partner.secret = issued.secret
    return issued.endpoint


def deliver_pending() -> list[WebhookDelivery]:
    """What the workers would do after the commit: the outbox's dispatch messages become
    deliveries, and each pending delivery makes its first attempt."""
    for pk in (
        OutboxMessage.objects.filter(topic=DISPATCH_TOPIC, status=MessageStatus.PENDING)
        .order_by("id")
        .values_list("pk", flat=True)
    ):
        assert outbox.consume(pk) == "done"
    pending = WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, attempts=0)
    for pk in pending.order_by("id").values_list("pk", flat=True):
        services.attempt_delivery(pk, attempt=1)
    return list(WebhookDelivery.objects.order_by("id"))


def received_events(partner: Receiver) -> list[dict[str, Any]]:
    """The event bodies the partner received, in order; every signature must verify."""
    assert all(r.signature_ok for r in partner.received), "a delivery failed verification"
    return [json.loads(r.body) for r in partner.received]
