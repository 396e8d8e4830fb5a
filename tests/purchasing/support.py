"""What the outbox workers would do for purchasing: run the queued PO email messages."""

from __future__ import annotations

from collections.abc import Iterable

from outbox import services as outbox
from outbox.models import MessageStatus, OutboxMessage
from purchasing.services import EMAIL_TOPIC


def email_messages() -> list[OutboxMessage]:
    return list(OutboxMessage.objects.filter(topic=EMAIL_TOPIC).order_by("id"))


def deliver_emails(purchase_orders: Iterable[int] | None = None) -> list[str]:
    """Consume every due PO email message once (of these PO ids, when given), oldest
    first, as `outbox.consume` tasks would; returns each outcome."""
    due = OutboxMessage.objects.filter(topic=EMAIL_TOPIC, status=MessageStatus.PENDING)
    if purchase_orders is not None:
        due = due.filter(payload__purchase_order__in=list(purchase_orders))
    return [outbox.consume(pk) for pk in due.order_by("id").values_list("pk", flat=True)]
