"""Outbox wiring (imported by outbox.apps at start-up).

Availability — every `stock.changed` domain event (available-to-promise of a SKU at a
warehouse moved, debounced by the outbox relay) becomes a `channel.push_available`
message; its handler marks the SKU on each channel connection that publishes quantities
and schedules the debounced push. The handler only writes rows, inside the outbox's
consuming transaction, so a redelivered message marks the SKU again and changes nothing.

Fulfillment orders and shipments — orders.services publishes the internal events
`fulfillment.opened` (routing placed a fulfillment order at a warehouse) and
`fulfillment.shipped` in the transaction that made the change. A fulfillment order at a
warehouse an active 3PL connection serves becomes a `threepl.push_fulfillment` message,
a shipment of an order from a connected channel a `channel.push_tracking` message (one
per fulfillment order and purpose: the event key makes a second publish a no-op). Their
handlers push through sync.services (deliver_fulfillment / deliver_tracking): the push is
recorded once per connection and order (FulfillmentPush), so a redelivered message finds
it sent and makes no request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from outbox.registry import handler, subscribe
from sync import services
from sync.models import Connection, ConnectionKind

if TYPE_CHECKING:
    from outbox.models import OutboxMessage

TOPIC = "channel.push_available"


def _has_channels(event_type: str) -> bool:
    # Brands without a channel connection get no message per stock change.
    return Connection.objects.active().filter(kind=ConnectionKind.CHANNEL).exists()


@handler(TOPIC, queue="sync")
def push_available(message: OutboxMessage) -> None:
    sku = (message.payload.get("data") or {}).get("sku") or {}
    if sku.get("id"):
        services.mark_available_changed([int(sku["id"])])


@handler(services.FULFILLMENT_TOPIC, queue="sync")
def push_fulfillment(message: OutboxMessage) -> None:
    services.deliver_fulfillment(int(message.payload["data"]["fulfillment"]))


@handler(services.TRACKING_TOPIC, queue="sync")
def push_tracking(message: OutboxMessage) -> None:
    services.deliver_tracking(int(message.payload["data"]["fulfillment"]))


subscribe("stock.changed", TOPIC, when=_has_channels)
subscribe("fulfillment.opened", services.FULFILLMENT_TOPIC, where=services.served_by_threepl)
subscribe("fulfillment.shipped", services.TRACKING_TOPIC, where=services.reported_to_channel)
