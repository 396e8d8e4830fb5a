"""Purchasing under real concurrency: threads on their own connections, one barrier."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from audit.models import ActivityEntry
from inventory.models import StockBalance, StockMovement
from outbox.models import OutboxMessage
from purchasing import services
from purchasing.models import POState, Receipt
from tests.approvals.test_purchase_orders import run_together
from tests.factories import SKUFactory, WarehouseFactory
from tests.purchasing.factories import SupplierFactory, SupplierSKUFactory, make_po


@pytest.fixture(autouse=True)
def committed(committed_alpha):
    """committed_alpha, plus removal of the activity entries the test committed (PO ids
    restart after the truncation, so they would name later tests' POs) and of the outbox
    messages (sent POs queue their email; committed_alpha leaves the outbox table)."""
    started = timezone.now()
    yield
    ActivityEntry.objects.filter(created_at__gte=started).delete()
    OutboxMessage.objects.filter(created_at__gte=started).delete()


def test_drafts_created_at_the_same_instant_get_distinct_consecutive_numbers():
    supplier, sku, warehouse = SupplierFactory(), SKUFactory(), WarehouseFactory()
    SupplierSKUFactory(supplier=supplier, sku=sku)

    def draft(_):
        return services.create_draft(
            supplier=supplier,
            warehouse=warehouse,
            lines=[services.DraftLine(sku, 5)],
            actor=None,
        ).number

    numbers = run_together(draft, list(range(6)))

    assert sorted(numbers) == [f"PO-{n:06d}" for n in range(1, 7)], numbers


def test_the_same_receipt_posted_twice_at_once_posts_once():
    sku = SKUFactory()
    po = services.submit(make_po((sku, 10, Decimal("3"))), actor=None)
    assert po.state == POState.SENT
    line = po.lines.get()

    def receive(_):
        return services.receive(
            po, quantities={line.pk: 10}, actor=None, operation_key="dock-door-4"
        ).pk

    results = run_together(receive, [1, 2])

    assert len(set(results)) == 1 and isinstance(results[0], int), results
    assert Receipt.objects.count() == 1
    assert StockMovement.objects.filter(sku=sku).count() == 1
    assert StockBalance.objects.get(sku=sku, status="sellable").quantity == 10
    po.refresh_from_db()
    assert po.state == POState.RECEIVED


def test_two_different_receipts_at_once_both_post_and_add_up():
    sku = SKUFactory()
    po = services.submit(make_po((sku, 10, Decimal("3"))), actor=None)
    line = po.lines.get()

    def receive(key):
        return services.receive(
            po,
            quantities={line.pk: 5},
            reasons={line.pk: "backordered"},
            actor=None,
            operation_key=key,
        ).pk

    results = run_together(receive, ["a", "b"])

    line.refresh_from_db()
    po.refresh_from_db()
    # The second, under the PO lock, sees the first: together they complete the line, so
    # its "backordered" reason (5 of 10) no longer fits and it is refused, or both fit.
    posted = [r for r in results if isinstance(r, int)]
    assert line.received_quantity == 5 * len(posted)
    assert StockBalance.objects.get(sku=sku, status="sellable").quantity == 5 * len(posted)
