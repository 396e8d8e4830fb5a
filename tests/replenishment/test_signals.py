"""The forecasting issue's acceptance test: demand signals flow through real orders, real
demand history, real forecasts and the plan into purchase orders behind approvals.

Orders go in through `orders.services.ingest_orders` (and a cancellation through
`ingest_order`), `forecasting.services.rebuild_demand` turns them into demand history,
`recompute_segments` ranks the SKUs and `run_forecasts` forecasts them (its chunks run here
in-process instead of on a worker). Nothing of ours is mocked.

HERO-1 sells 20 a day for twelve weeks; then a spike (45 a day for the last week) flips it
from healthy — nothing to order — to accelerate, and the order it now suggests, worth more
than the hero ceiling (5,000), waits in the approvals inbox. SLOW-1 drops from 20 to 4 a day
and flips to brake, with a proposal (never an action) to delay or cut its open PO.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal
from itertools import count
from zoneinfo import ZoneInfo

import pytest

from approvals.models import ApprovalRequest
from approvals.services import current_brand, decidable_requests
from catalog.services import map_listing
from forecasting import services as forecasting
from inventory import services as stock
from orders.services import LineInput, OrderInput, ingest_order, ingest_orders
from purchasing.models import POState
from replenishment import services
from replenishment.models import Recommendation
from tests.factories import SKUFactory, WarehouseFactory
from tests.purchasing.factories import SupplierFactory, SupplierSKUFactory
from tests.replenishment.helpers import sent_po

pytestmark = pytest.mark.usefixtures("alpha")

_ids = count(1)
WEEKS = 12


def order(day, code: str, units: int, *, external_id: str | None = None, status="open"):
    tz = ZoneInfo(current_brand().timezone)
    placed = datetime.combine(day, time(12), tzinfo=tz)
    ext = external_id or f"sig-{next(_ids)}"
    return OrderInput(
        channel="shop",
        external_id=ext,
        placed_at=placed,
        updated_at=placed + (timedelta(hours=1) if status == "cancelled" else timedelta(0)),
        currency="USD",
        status=status,
        ship_name="Ada Buyer",
        ship_line1="1 Main St",
        ship_city="Town",
        ship_state="CA",
        ship_postal_code="90001",
        ship_country="US",
        lines=[LineInput(f"{ext}-1", f"ext-{code}", units, Decimal("20.00"))],
    )


def forecast_now(sku_ids) -> None:
    """A real forecast run over these SKUs, its chunks run in this process."""
    forecasting.rebuild_demand()
    run = forecasting.run_forecasts(sku_ids=sku_ids, kind="manual", publish=False)
    for index in range(run.chunks):
        forecasting.run_chunk(run.pk, index)
    run.refresh_from_db()
    assert (run.state, run.failed) == ("succeeded", 0)


def rec(sku, today) -> Recommendation:
    return Recommendation.objects.get(sku=sku, day=today)


def test_a_spike_accelerates_into_the_inbox_and_a_drop_brakes(today, people):
    main = WarehouseFactory(code="MAIN", priority=1)
    hero, slow = SKUFactory(code="HERO-1"), SKUFactory(code="SLOW-1")
    for sku in (hero, slow):
        map_listing(channel="shop", external_sku=f"ext-{sku.code}", sku=sku)
    stock.receive(sku=hero, warehouse=main, quantity=2300)
    stock.receive(sku=slow, warehouse=main, quantity=3000)
    supplier = SupplierFactory(code="ACME", quoted_lead_time_days=7)
    SupplierSKUFactory(supplier=supplier, sku=hero, unit_cost=Decimal("20.00"), is_preferred=True)
    SupplierSKUFactory(supplier=supplier, sku=slow, unit_cost=Decimal("1.00"), is_preferred=True)
    days = [today - timedelta(days=n) for n in range(WEEKS * 7, 0, -1)]
    last_week = days[-7:]
    slow_last_week = {}
    batch = []
    for day in days:
        batch.append(order(day, "HERO-1", 20))
        slow_order = order(day, "SLOW-1", 20)
        if day in last_week:
            slow_last_week[day] = slow_order.external_id
        batch.append(slow_order)
    ingest_orders(batch)
    # SLOW-1 has 300 units coming in five days (cheap: approved and sent on submit)
    slow_po = sent_po(supplier, main, slow, 300, expected=today + timedelta(days=5))
    assert slow_po.state == POState.SENT
    forecasting.recompute_segments(today=today)
    assert forecasting.segments_of([hero.pk])[hero.pk] == "hero"
    forecast_now([hero.pk, slow.pk])

    # before: both healthy, and HERO-1 has enough on hand that nothing is ordered
    services.plan(today=today)
    before = rec(hero, today)
    assert (before.state, rec(slow, today).state) == ("healthy", "healthy")
    assert before.suggested_quantity == 0
    assert before.available > before.reorder_point

    # the week's signals: HERO-1 spikes to 45 a day, SLOW-1 drops to 4 a day
    ingest_orders([order(day, "HERO-1", 25) for day in last_week])
    for day, external_id in slow_last_week.items():
        ingest_order(order(day, "SLOW-1", 20, external_id=external_id, status="cancelled"))
    ingest_orders([order(day, "SLOW-1", 4) for day in last_week])
    forecast_now([hero.pk, slow.pk])
    result = services.plan(today=today)

    after = rec(hero, today)
    assert after.pk == before.pk  # the day's row was replaced, not duplicated
    assert result.recommendations == 2
    assert after.state == "accelerate"
    assert "Last 7 days sold 45.0/day" in after.reason
    assert after.segment == "hero"
    assert after.service_level == forecasting.segment_policies()["hero"].service_level
    assert after.daily_mean == pytest.approx(45.0)
    assert after.suggested_quantity > 0  # pulled forward: it orders now
    assert after.suggested_quantity * Decimal("20.00") > Decimal("5000")
    braked = rec(slow, today)
    assert braked.state == "brake"
    assert "Last 7 days sold 4.0/day" in braked.reason
    assert braked.action == "slow_down"
    assert braked.proposal[0]["po"] == slow_po.pk
    slow_po.refresh_from_db()
    assert slow_po.state == POState.SENT  # braking proposes, never acts by itself

    [po] = services.create_draft_pos([after], actor=people.buyer)

    assert po.state == POState.PENDING_APPROVAL
    assert po.source == "replenishment"
    assert po.expected_on == today + timedelta(days=7)
    assert list(po.lines.values_list("sku_id", "quantity")) == [(hero.pk, after.suggested_quantity)]
    request = ApprovalRequest.objects.for_subject("purchase_order", po.pk).get()
    assert request.state == "pending"
    assert request in decidable_requests(people.ops)
    # the requester may not approve their own request
    assert request not in decidable_requests(people.buyer)
