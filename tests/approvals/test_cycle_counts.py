"""Cycle counts whose corrections are worth more than the brand's ceiling wait for
approval; a 3PL's own stock report never does."""

from __future__ import annotations

import pytest

from approvals import services as approvals
from approvals.models import RequestState
from inventory import services as stock
from inventory.models import CountStatus, MovementKind, StockBalance, StockMovement
from tests.approvals.conftest import make_goods
from tests.conftest import brand_client

pytestmark = pytest.mark.usefixtures("alpha")


def sellable(goods) -> int:
    return StockBalance.objects.get(
        sku=goods.sku, warehouse=goods.warehouse, status="sellable"
    ).quantity


def counted(goods, quantity: int):
    count = stock.start_count(warehouse=goods.warehouse)
    stock.enter_count(count=count, sku=goods.sku, counted=quantity)
    return count


def test_a_small_count_posts_at_once(goods, people):
    count = stock.post_count(count=counted(goods, 990), requested_by=people.warehouse)

    assert count.status == CountStatus.POSTED  # 10 units × 10.00 = 100, under 500
    assert sellable(goods) == 990


def test_a_large_count_waits_then_posts_once_when_approved(goods, people):
    count = stock.post_count(count=counted(goods, 900), requested_by=people.warehouse)

    assert count.status == CountStatus.PENDING_APPROVAL  # 100 × 10.00 = 1,000 > 500
    assert sellable(goods) == 1000
    request = approvals.decidable_requests(people.ops)[0]
    assert (request.subject_type, request.amount) == ("cycle_count", 1000)

    approvals.approve(request, actor=people.ops)
    with pytest.raises(stock.StockError):
        stock.post_count(count=count)

    count.refresh_from_db()
    assert count.status == CountStatus.POSTED
    assert sellable(goods) == 900
    assert StockMovement.objects.filter(kind=MovementKind.COUNT_CORRECTION).count() == 1


def test_a_rejected_count_reopens_with_the_reason(goods, people):
    count = stock.post_count(count=counted(goods, 900), requested_by=people.warehouse)
    request = approvals.decidable_requests(people.ops)[0]

    approvals.reject(request, actor=people.ops, comment="Recount aisle 4 first.")

    count.refresh_from_db()
    assert (count.status, count.resolution) == (CountStatus.OPEN, "Recount aisle 4 first.")
    assert sellable(goods) == 1000


def test_count_page_shows_the_waiting_request(goods, people, brand_a):
    count = stock.post_count(count=counted(goods, 900), requested_by=people.warehouse)

    page = brand_client(brand_a, people.warehouse).get(f"/inventory/counts/{count.pk}/")

    assert "Waiting for approval" in page.text
    assert "Awaiting approval" in page.text


def test_approval_is_refused_when_stock_moved_and_the_value_grew(goods, people):
    stock.post_count(count=counted(goods, 900), requested_by=people.warehouse)
    request = approvals.decidable_requests(people.ops)[0]
    stock.receive(sku=goods.sku, warehouse=goods.warehouse, quantity=50)  # now 150 over

    with pytest.raises(stock.StockError) as refused:
        approvals.approve(request, actor=people.ops)

    request.refresh_from_db()
    assert refused.value.code == "count_changed"
    assert request.state == RequestState.PENDING
    assert sellable(goods) == 1050


def test_the_counter_cannot_approve_their_own_count(goods, people):
    stock.post_count(count=counted(goods, 900), requested_by=people.ops)

    assert approvals.decidable_requests(people.ops) == []
    assert len(approvals.decidable_requests(people.owner)) == 1


def test_a_threepl_stock_report_is_never_gated(people):
    goods = make_goods()

    count = stock.post_count(count=counted(goods, 10), gated=False)

    assert count.status == CountStatus.POSTED
    assert sellable(goods) == 10
