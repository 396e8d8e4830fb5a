"""Fulfillment orders to ship, and delivered history for lanes (shipping tests only)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from orders.models import (
    DecisionLayer,
    FulfillmentLine,
    FulfillmentOrder,
    Order,
    OrderLine,
    OrderType,
    RoutingDecision,
)
from shipping.models import CarrierOutcome, Shipment, ShipmentState
from tests.factories import SKUFactory, WarehouseFactory

_seq = itertools.count(1)


def make_fo(
    *,
    weight_kg: Decimal | str = "2",
    quantity: int = 1,
    origin_postal: str = "90001",
    dest_state: str = "NY",
    dest_postal: str = "10001",
    order_type: str = OrderType.DTC,
    company: str = "",
    channel: str = "shopify",
    warehouse=None,
    decision: RoutingDecision | None = None,
    ship_type: str = "parcel",
) -> FulfillmentOrder:
    n = next(_seq)
    warehouse = warehouse or WarehouseFactory(
        postal_code=origin_postal, city="Los Angeles", address_line1="1 Dock Rd"
    )
    sku = SKUFactory(weight=Decimal(str(weight_kg)), weight_unit="kg")
    now = timezone.now()
    order = Order.objects.create(
        channel=channel,
        external_id=f"ship-{n}-{now.timestamp()}",
        placed_at=now,
        channel_updated_at=now,
        status="routed",
        order_type=order_type,
        currency="USD",
        ship_name=f"Customer {n}",
        ship_company=company,
        ship_line1=f"{n} Main St",
        ship_city="Springfield",
        ship_state=dest_state,
        ship_postal_code=dest_postal,
        ship_country="US",
    )
    line = OrderLine.objects.create(
        order=order,
        external_line_id="1",
        external_sku=sku.code,
        sku=sku,
        quantity=quantity,
        unit_price=Decimal("20.00"),
    )
    decision = decision or RoutingDecision.objects.create(
        order=order, layer=DecisionLayer.MANUAL, explanation="test"
    )
    if decision.order_id != order.pk:
        decision.order = order
        decision.save()
    fo = FulfillmentOrder.objects.create(
        order=order, warehouse=warehouse, decision=decision, ship_type=ship_type
    )
    FulfillmentLine.objects.create(fulfillment=fo, order_line=line, sku=sku, quantity=quantity)
    return fo


def history(
    *,
    carrier: str,
    service: str,
    lane: str,
    on_time: int,
    late: int,
    warehouse=None,
    delivered_at: datetime | None = None,
) -> None:
    """Delivered outcomes on a lane (each needs a shipment row of its own)."""
    warehouse = warehouse or WarehouseFactory()
    fo = make_fo(warehouse=warehouse)
    at = delivered_at or timezone.now() - timedelta(days=7)
    for i in range(on_time + late):
        shipment = Shipment.objects.create(
            fulfillment=fo,
            ship_type="parcel",
            warehouse=warehouse,
            lane=lane,
            state=ShipmentState.DELIVERED,
            carrier=carrier,
            service=service,
        )
        CarrierOutcome.objects.create(
            shipment=shipment,
            carrier=carrier,
            service=service,
            lane=lane,
            promised_days=3,
            actual_days=Decimal("2.5") if i < on_time else Decimal("6"),
            on_time=i < on_time,
            delivered_at=at,
        )
