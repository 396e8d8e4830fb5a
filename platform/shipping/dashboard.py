"""The dashboard panel: open shipment exceptions and shipments waiting for a label."""

from __future__ import annotations

from typing import Any

from shipping.models import ExceptionStatus, Shipment, ShipmentException, ShipmentState


def panel_context(user: Any) -> dict | None:
    """None (hidden) when nothing needs anyone."""
    open_qs = ShipmentException.objects.exclude(status=ExceptionStatus.RESOLVED)
    open_count = open_qs.count()
    waiting = Shipment.objects.filter(state=ShipmentState.AWAITING_APPROVAL).count()
    if not open_count and not waiting:
        return None
    by_kind: dict[str, int] = {}
    for exc in open_qs.only("kind"):
        label = exc.get_kind_display()
        by_kind[label] = by_kind.get(label, 0) + 1
    return {
        "open": open_count,
        "escalated": open_qs.filter(escalated_at__isnull=False).count(),
        "by_kind": sorted(by_kind.items()),
        "awaiting_approval": waiting,
        "latest": list(open_qs.select_related("shipment")[:5]),
    }
