"""The purchase_order subject type: facts approvals judges, segment tags, decision context."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from approvals import services as approvals
from approvals.registry import get
from forecasting.models import SkuForecast, SkuSegment
from inventory import services as stock
from purchasing import services
from purchasing.approval_subject import context_for, facts_of
from purchasing.models import POState
from tests.factories import SKUFactory, WarehouseFactory
from tests.purchasing.factories import SupplierFactory, SupplierSKUFactory, make_po

pytestmark = pytest.mark.usefixtures("alpha")


def segment(sku, name: str) -> None:
    SkuSegment.objects.create(sku=sku, segment=name, rank=1, computed_at=timezone.now())


def test_facts_name_the_po_amount_supplier_segments_and_version(people):
    hero, tail = SKUFactory(), SKUFactory()
    segment(hero, "hero")
    supplier = SupplierFactory(code="ACME", name="Acme Mills")
    po = make_po((hero, 3, Decimal("2.50")), (tail, 1, Decimal("1")), supplier=supplier)

    facts = facts_of(str(po.pk))

    assert facts.title == f"{po.number} · Acme Mills · 2 lines"
    assert facts.amount == Decimal("8.50")
    assert facts.supplier == "ACME"
    assert facts.tags == frozenset({"segment:hero", "segment:tail"})
    assert facts.version == 1
    assert get("purchase_order").facts_of is facts_of


def test_another_currency_has_no_amount(people):
    po = make_po((SKUFactory(), 1, Decimal("1")), supplier=SupplierFactory(currency="EUR"))
    assert facts_of(str(po.pk)).amount is None


def test_a_hero_po_is_auto_approved_up_to_the_hero_ceiling(people):
    """Segment ceilings are forecasting's policies: hero 5,000, tail 500 (strictest first)."""
    hero, tail = SKUFactory(), SKUFactory()
    segment(hero, "hero")

    hero_po = services.submit(make_po((hero, 1, Decimal("4000")), actor=people.buyer), actor=None)
    mixed_po = services.submit(
        make_po((hero, 1, Decimal("3000")), (tail, 1, Decimal("1")), actor=people.buyer),
        actor=None,
    )

    assert hero_po.state == POState.SENT
    assert mixed_po.state == POState.PENDING_APPROVAL  # the tail line's stricter policy
    assert "tail" in services.current_request(mixed_po).policy.name


def test_the_context_shows_lines_stock_cover_forecast_and_warnings(people):
    supplier = SupplierFactory(code="ACME", name="Acme Mills")
    warehouse = WarehouseFactory(code="MAIN")
    sku = SKUFactory(code="TEE-1")
    SupplierSKUFactory(supplier=supplier, sku=sku, unit_cost=Decimal("12.5"), case_pack=12)
    stock.receive(sku=sku, warehouse=warehouse, quantity=90)
    today = services.brand_today()
    SkuForecast.objects.create(
        sku=sku,
        generated_at=timezone.now(),
        start=today,
        horizon=28,
        method="croston_tsb",
        demand_class="smooth",
        mean=[3.0] * 28,
        lo80=[2.0] * 28,
        hi80=[4.0] * 28,
        lo95=[1.0] * 28,
        hi95=[5.0] * 28,
        daily_mean=3.0,
        daily_std=1.0,
    )
    po = services.submit(
        make_po((sku, 100), supplier=supplier, warehouse=warehouse, actor=people.buyer),
        actor=people.buyer,
    )
    request = services.current_request(po)

    context = context_for(request)

    facts = dict(context.facts)
    assert facts["Supplier"] == "ACME · Acme Mills"
    assert facts["Total"] == "1,250.00 USD"
    assert facts["Lead time (365 days)"] == "no receipts yet"
    (table,) = context.tables
    assert table.rows == [["TEE-1", "100", "12.5000", "1,250.00", "90 / 90", "30 days", "84"]]
    assert context.warnings == ["TEE-1: 100 is not a whole number of cases of 12."]
    assert context.link == ("Purchase order page", f"/purchasing/{po.pk}/")
    # The same context renders on the approval page.
    assert approvals.requirement("purchase_order", facts_of(str(po.pk))) is not None
