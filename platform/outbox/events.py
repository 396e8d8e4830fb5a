"""The domain events Keel publishes (partners subscribe to these by name).

An app publishes with `outbox.services.publish_domain_event(event_type, obj_id, data)`
inside the transaction that made the change. A new event type is added here first, with
the sentence partners see when they pick the events an endpoint receives.
"""

from __future__ import annotations

EVENT_TYPES: dict[str, str] = {
    "order.created": "An order arrived (channel, API, CSV or entered by hand).",
    "order.updated": "A channel changed an order: lines, ship-to, service or other details.",
    "order.routed": "An order was assigned to one or more warehouses.",
    "order.cancelled": "An order was cancelled, on the channel or in Keel.",
    "stock.changed": (
        "Available-to-promise of a SKU at a warehouse changed (bursts within a few seconds "
        "arrive as one event)."
    ),
    "approval.decided": "An approval request was approved, rejected or expired.",
    "purchase_order.status_changed": "A purchase order moved to another status.",
    "shipment.delivered": "A shipment was delivered (parcel scan or LTL proof of delivery).",
    "shipment.exception": "A shipment needs attention: no scan, late, address, damage, return.",
}


def choices() -> list[tuple[str, str]]:
    return [(name, name) for name in EVENT_TYPES]
