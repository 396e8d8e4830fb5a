"""Canonical connector types (connectors.types) → the platform's inputs, and back.

Pure functions: no queries, so they are cheap on the webhook and polling hot paths.
"""

from __future__ import annotations

from connectors import types as ct
from orders.models import Order as OrderModel
from orders.models import ServiceLevel
from orders.services import LineInput, OrderInput

# The channel's service levels are finer than routing's three: anything faster than
# standard ships expedited; pickup and freight need special handling.
SERVICE_LEVELS: dict[str, str] = {
    ct.ServiceLevel.ECONOMY: ServiceLevel.STANDARD,
    ct.ServiceLevel.STANDARD: ServiceLevel.STANDARD,
    ct.ServiceLevel.EXPEDITED: ServiceLevel.EXPEDITED,
    ct.ServiceLevel.OVERNIGHT: ServiceLevel.EXPEDITED,
    ct.ServiceLevel.PICKUP: ServiceLevel.SPECIALTY,
    ct.ServiceLevel.FREIGHT: ServiceLevel.SPECIALTY,
}
FRAUD_FLAGS = frozenset({"fraud", "high_risk"})


def _cut(field: str, value: str) -> str:
    # Channels send whatever their merchants typed; a too-long city must not fail the order.
    limit = OrderModel._meta.get_field(field).max_length
    return (value or "")[:limit]


def order_input(order: ct.Order, *, channel: str) -> OrderInput | None:
    """The order as ingestion takes it, on the connection's channel key.

    Lines that ship nothing (gift cards, digital goods) or were removed (quantity 0) are
    left out; an order with no shippable line is not an order for operations (None).
    """
    lines = [
        LineInput(
            external_line_id=line.external_id,
            external_sku=line.sku or line.listing_id or line.external_id,
            quantity=line.quantity,
            unit_price=line.unit_price.amount,
            title=line.title[:255],
            external_listing_id=line.listing_id,
        )
        for line in order.lines
        if line.quantity > 0 and line.requires_shipping
    ]
    if not lines:
        return None
    ship = order.ship_to or ct.Address()
    customer = order.customer or ct.Customer()
    return OrderInput(
        channel=channel,
        external_id=order.external_id,
        placed_at=order.placed_at,
        updated_at=order.updated_at,
        currency=order.currency,
        lines=lines,
        status="cancelled" if order.status == ct.OrderStatus.CANCELLED else "open",
        order_type=str(order.order_type),
        service_level=SERVICE_LEVELS.get(order.service_level, ServiceLevel.STANDARD),
        customer_name=_cut("customer_name", customer.name or ship.name),
        customer_email=_cut("customer_email", customer.email or ship.email),
        ship_name=_cut("ship_name", ship.name),
        ship_company=_cut("ship_company", ship.company),
        ship_line1=_cut("ship_line1", ship.line1),
        ship_line2=_cut("ship_line2", ship.line2),
        ship_city=_cut("ship_city", ship.city),
        ship_state=_cut("ship_state", ship.region),
        ship_postal_code=_cut("ship_postal_code", ship.postal_code),
        ship_country=_cut("ship_country", ship.country),
        ship_phone=_cut("ship_phone", ship.phone or customer.phone),
        is_gift="gift" in order.flags,
        is_vip="vip" in order.flags,
        fraud_flag=bool(FRAUD_FLAGS & order.flags),
        total=order.totals.total.amount,
    )
