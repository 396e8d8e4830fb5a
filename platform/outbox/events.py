"""The domain events Keel publishes (partners subscribe to these by name).

An app publishes with `outbox.services.publish_domain_event(event_type, obj_id, data)`
inside the transaction that made the change. A new event type is added here first, with
the sentence partners see when they pick the events an endpoint receives.

INTERNAL_EVENT_TYPES are published the same way but only Keel's own apps subscribe to
them (outbox.registry.subscribe): partners cannot pick them and subscribers of every
event (partner webhooks) do not receive them. They carry facts another app turns into a
side effect, e.g. a fulfillment order that a 3PL connection must receive.
"""

from __future__ import annotations

EVENT_TYPES: dict[str, str] = {
    "order.created": "An order arrived (channel, API, CSV or entered by hand).",
    "order.updated": "A channel changed an order: lines, ship-to, service or other details.",
    "order.routed": "An order was assigned to one or more warehouses.",
    "order.cancelled": "An order was cancelled, on the channel or in Keel.",
    "order.closed": "A fulfilled order was closed: it is done and leaves the working lists.",
    "stock.changed": (
        "Available-to-promise of a SKU at a warehouse changed (bursts within a few seconds "
        "arrive as one event)."
    ),
    "approval.decided": "An approval request was approved, rejected or expired.",
    "purchase_order.status_changed": "A purchase order moved to another status.",
    "shipment.delivered": "A shipment was delivered (parcel scan or LTL proof of delivery).",
    "shipment.exception": "A shipment needs attention: no scan, late, address, damage, return.",
}

INTERNAL_EVENT_TYPES: dict[str, str] = {
    "fulfillment.opened": "A fulfillment order was created at a warehouse (routing placed it).",
    "fulfillment.shipped": "A fulfillment order shipped (3PL confirmation, label or a person).",
}


def is_known(event_type: str) -> bool:
    return event_type in EVENT_TYPES or event_type in INTERNAL_EVENT_TYPES


def choices() -> list[tuple[str, str]]:
    return [(name, name) for name in EVENT_TYPES]
