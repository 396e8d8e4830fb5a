"""Outbox wiring (imported by outbox.apps at start-up, in every process).

Purchase-order emails — purchasing.services writes an `EMAIL_TOPIC` message (with the
PurchaseOrderEmail row it delivers) in the transaction that sent the PO or asked to email
it again. The handler renders the PDF and sends through Django's email backend inside the
outbox's consuming transaction, so the email's row, its activity entry and "consumed"
commit together; see services.deliver_email for the one window in which a supplier can
receive the same email twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from outbox.registry import handler
from purchasing import services

if TYPE_CHECKING:
    from outbox.models import OutboxMessage


@handler(services.EMAIL_TOPIC, queue="default")
def email_purchase_order(message: OutboxMessage) -> None:
    # attempts counts the failed runs before this one.
    services.deliver_email(message.key, attempt=message.attempts + 1)
