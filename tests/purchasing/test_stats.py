"""Lead-time statistics from receipts: lead time, on time, in full, fill rate, window."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from purchasing import services
from purchasing.models import PurchaseOrder, Receipt
from purchasing.stats import lead_time_stats, supplier_summary
from tests.factories import SKUFactory
from tests.purchasing.factories import SupplierFactory, make_po

pytestmark = pytest.mark.usefixtures("alpha")

TODAY = date(2026, 6, 30)


def at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def delivered(supplier, sku, *, sent: date, expected: date, arrivals, ordered: int = 10):
    """A sent PO received in `arrivals` ([(day, units, reason)]), with backdated dates."""
    po = make_po((sku, ordered, Decimal("1")), supplier=supplier, expected_on=expected)
    po = services.submit(po, actor=None)
    PurchaseOrder.objects.filter(pk=po.pk).update(sent_at=at(sent))
    line = po.lines.get()
    for day, units, reason in arrivals:
        receipt = services.receive(
            po, quantities={line.pk: units}, reasons={line.pk: reason}, actor=None
        )
        Receipt.objects.filter(pk=receipt.pk).update(received_at=at(day))
    return po


def test_lead_time_on_time_in_full_and_fill_rate_per_supplier_and_sku():
    supplier, sku = SupplierFactory(), SKUFactory()
    start = TODAY - timedelta(days=100)
    # 10 days, on time, in full (in two parts: the completing receipt counts).
    delivered(
        supplier,
        sku,
        sent=start,
        expected=start + timedelta(days=12),
        arrivals=[
            (start + timedelta(days=6), 4, "backordered"),
            (start + timedelta(days=10), 6, ""),
        ],
    )
    # 20 days, late, short (8 of 10, closed short).
    delivered(
        supplier,
        sku,
        sent=start,
        expected=start + timedelta(days=12),
        arrivals=[(start + timedelta(days=20), 8, "short_shipped")],
    )

    stats = lead_time_stats(today=TODAY)[(supplier.pk, sku.pk)]

    assert stats.samples == 2
    assert stats.mean_days == 15.0
    assert stats.std_days == pytest.approx(7.0710678)  # sample std of 10 and 20
    assert (stats.on_time_rate, stats.otif_rate) == (0.5, 0.5)
    assert stats.fill_rate == pytest.approx(18 / 20)


def test_the_trailing_window_drops_old_receipts():
    supplier, sku = SupplierFactory(), SKUFactory()
    old = TODAY - timedelta(days=200)
    delivered(supplier, sku, sent=old, expected=old, arrivals=[(old + timedelta(days=5), 10, "")])
    recent = TODAY - timedelta(days=30)
    delivered(
        supplier, sku, sent=recent, expected=recent, arrivals=[(recent + timedelta(days=3), 10, "")]
    )

    assert lead_time_stats(today=TODAY)[(supplier.pk, sku.pk)].samples == 2
    last_90 = lead_time_stats(window_days=90, today=TODAY)[(supplier.pk, sku.pk)]
    assert (last_90.samples, last_90.mean_days) == (1, 3.0)
    assert supplier_summary(supplier.pk, window_days=90, today=TODAY).on_time_rate == 0.0
    assert lead_time_stats(supplier_ids=[supplier.pk + 1], today=TODAY) == {}
