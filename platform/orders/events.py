"""What an order looks like in its domain events (partner webhooks and other subscribers).

Built from the rows as they are inside the publishing transaction, so an event shows the
order exactly as the change left it.
"""

from __future__ import annotations

from typing import Any

from orders.models import Order

HEADER = [
    "channel",
    "external_id",
    "status",
    "hold_reason",
    "order_type",
    "service_level",
    "currency",
    "total",
    "placed_at",
    "customer_name",
    "customer_email",
    "ship_name",
    "ship_company",
    "ship_line1",
    "ship_line2",
    "ship_city",
    "ship_state",
    "ship_postal_code",
    "ship_country",
]


def order_event(order: Order, **extra: Any) -> dict[str, Any]:
    """The order, its lines and its fulfillment orders, plus `extra` (e.g. a reason)."""
    data: dict[str, Any] = {"id": order.pk, **{name: getattr(order, name) for name in HEADER}}
    data["total"] = str(order.total)
    data["placed_at"] = order.placed_at.isoformat() if order.placed_at else None
    data["lines"] = [
        {
            "id": line.pk,
            "external_line_id": line.external_line_id,
            "external_sku": line.external_sku,
            "sku": line.sku.code if line.sku_id else None,
            "quantity": line.quantity,
            "unit_price": str(line.unit_price),
        }
        for line in order.lines.select_related("sku").order_by("id")
    ]
    data["fulfillments"] = [
        {
            "id": fo.pk,
            "warehouse": fo.warehouse.code,
            "status": fo.status,
            "ship_type": fo.ship_type,
            "lines": [
                {"order_line": fl.order_line_id, "sku": fl.sku.code, "quantity": fl.quantity}
                for fl in fo.lines.all()
            ],
        }
        for fo in order.fulfillments.select_related("warehouse")
        .prefetch_related("lines__sku")
        .order_by("id")
    ]
    return data | extra
