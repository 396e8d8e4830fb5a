"""Outbox wiring (imported by outbox.apps at start-up).

Every `stock.changed` domain event (available-to-promise of a SKU at a warehouse moved,
debounced by the outbox relay) becomes a `channel.push_available` message; its handler
marks the SKU on each channel connection that publishes quantities and schedules the
debounced push. The handler only writes rows, inside the outbox's consuming transaction,
so a redelivered message marks the SKU again and changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from outbox.registry import handler, subscribe
from sync.models import Connection, ConnectionKind

if TYPE_CHECKING:
    from outbox.models import OutboxMessage

TOPIC = "channel.push_available"


def _has_channels(event_type: str) -> bool:
    # Brands without a channel connection get no message per stock change.
    return Connection.objects.active().filter(kind=ConnectionKind.CHANNEL).exists()


@handler(TOPIC, queue="sync")
def push_available(message: OutboxMessage) -> None:
    from sync.services import mark_available_changed

    sku = (message.payload.get("data") or {}).get("sku") or {}
    if sku.get("id"):
        mark_available_changed([int(sku["id"])])


subscribe("stock.changed", TOPIC, when=_has_channels)
