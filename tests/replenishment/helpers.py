"""Building blocks for replenishment tests, in the current schema: a stocked SKU with a
supplier, demand history, a forecast, and POs delivered on backdated dates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from forecasting.models import SkuSegment
from inventory import services as stock
from purchasing import services as purchasing
from purchasing.models import PurchaseOrder, Receipt
from tests.factories import SKUFactory, WarehouseFactory
from tests.forecasting.helpers import put_demand, put_forecast
from tests.purchasing.factories import SupplierFactory, SupplierSKUFactory


@dataclass
class Stocked:
    sku: object
    warehouse: object
    supplier: object
    supplier_sku: object


def stocked(
    *,
    on_hand: int,
    warehouse=None,
    supplier=None,
    lead: int = 14,
    moq: int = 1,
    case_pack: int = 1,
    cost: str = "1.00",
    code: str | None = None,
    with_supplier: bool = True,
) -> Stocked:
    sku = SKUFactory(**({"code": code} if code else {}))
    warehouse = warehouse or WarehouseFactory()
    if on_hand:
        stock.receive(sku=sku, warehouse=warehouse, quantity=on_hand)
    row = None
    if with_supplier:
        supplier = supplier or SupplierFactory(quoted_lead_time_days=lead)
        row = SupplierSKUFactory(
            supplier=supplier,
            sku=sku,
            moq=moq,
            case_pack=case_pack,
            unit_cost=Decimal(cost),
            is_preferred=True,
        )
    return Stocked(sku, warehouse, supplier, row)


def history(sku, today: date, units: list[int], *, warehouse=None) -> None:
    """Demand for the days ending yesterday (the last value is yesterday's)."""
    put_demand(sku, today - timedelta(days=len(units)), units, warehouse=warehouse)


def forecast(sku, today: date, *, mean: float, spread: float = 1.0):
    return put_forecast(sku, start=today, mean=[mean] * 56, spread=spread)


def segment(sku, name: str, rank: int = 1) -> None:
    from django.utils import timezone

    SkuSegment.objects.update_or_create(
        sku=sku, defaults={"segment": name, "rank": rank, "computed_at": timezone.now()}
    )


def at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def sent_po(supplier, warehouse, sku, quantity: int, *, expected: date) -> PurchaseOrder:
    """A PO submitted (and sent: the test policies let it through) expecting `expected`."""
    po = purchasing.create_draft(
        supplier=supplier,
        warehouse=warehouse,
        lines=[purchasing.DraftLine(sku, quantity)],
        actor=None,
        expected_on=expected,
    )
    return purchasing.submit(po, actor=None)


def delivered(supplier, warehouse, sku, *, sent: date, expected: date, arrived: date, qty=10):
    """A PO sent on `sent`, expected on `expected`, received in full on `arrived`."""
    po = sent_po(supplier, warehouse, sku, qty, expected=expected)
    PurchaseOrder.objects.filter(pk=po.pk).update(sent_at=at(sent))
    line = po.lines.get()
    receipt = purchasing.receive(po, quantities={line.pk: qty}, actor=None)
    Receipt.objects.filter(pk=receipt.pk).update(received_at=at(arrived))
    return po


def restore_segment_policies() -> None:
    """Forecasting's seeded segment policies, as its data migration writes them.

    Committing tests empty every forecasting_ table afterwards (tests.conftest
    BUSINESS_APPS), seeded rows included; this puts the missing ones back.
    """
    from importlib import import_module

    from forecasting.models import SegmentPolicy

    seeded = import_module("forecasting.migrations.0002_segment_defaults")
    for name, cadence, level in seeded.POLICIES:
        SegmentPolicy.objects.get_or_create(
            segment=name,
            defaults={"review_cadence_days": cadence, "service_level": Decimal(level)},
        )
