"""The stock_adjustment subject end to end: large adjustments wait, post once on approval,
never post on rejection, and an edit upward re-opens approval."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.services import AccessError
from approvals import services as approvals
from approvals.models import ApprovalRequest, RequestState
from audit.models import ActivityEntry
from inventory import services as stock
from inventory.models import AdjustmentState, StockAdjustmentRequest, StockBalance, StockMovement
from tests.approvals.conftest import adjust, make_goods
from tests.conftest import brand_client

JSON = "application/json"

pytestmark = pytest.mark.usefixtures("alpha")


def on_hand(goods) -> int:
    return StockBalance.objects.get(
        sku=goods.sku, warehouse=goods.warehouse, status="sellable"
    ).quantity


def adjustments(goods) -> list[tuple[int, str, str]]:
    return list(
        StockMovement.objects.filter(sku=goods.sku, kind="adjustment")
        .order_by("id")
        .values_list("quantity", "reference_type", "reference_id")
    )


def test_an_adjustment_at_or_under_the_threshold_posts_at_once(goods, people):
    outcome = adjust(goods, -50, people.warehouse)  # 500.00 USD: not above 500

    assert not outcome.pending
    assert [m.quantity for m in outcome.operation.movements] == [-50]
    assert on_hand(goods) == 950
    assert not StockAdjustmentRequest.objects.exists()
    assert not ApprovalRequest.objects.exists()


def test_above_the_threshold_waits_and_the_ledger_does_not_move(goods, people):
    outcome = adjust(goods, -51, people.warehouse, note="Water damage")  # 510.00 USD

    assert outcome.pending
    adjustment, request = outcome.request, outcome.approval
    assert (adjustment.state, adjustment.value, adjustment.requested_by_id) == (
        AdjustmentState.PENDING,
        Decimal("510.0000"),
        people.warehouse.pk,
    )
    assert (request.subject_type, request.subject_id, request.amount) == (
        "stock_adjustment",
        str(adjustment.pk),
        Decimal("510.00"),
    )
    assert request.title == f"Adjust {goods.sku.code} at {goods.warehouse.code} by -51"
    assert request.explanation == (
        "Needs approval under “Stock adjustments worth over 500” (v1) because 510.00 USD "
        "is above 500.00 USD. May approve: Owner, Admin, Ops manager up to 5,000.00 USD."
    )
    assert on_hand(goods) == 1000
    assert adjustments(goods) == []


def test_approval_posts_the_adjustment_once_through_the_ledger(goods, people):
    outcome = adjust(goods, -60, people.warehouse)

    approvals.approve(outcome.approval, actor=people.ops, comment="Pallet written off")

    adjustment = StockAdjustmentRequest.objects.get(pk=outcome.request.pk)
    key = f"approval_request:{outcome.approval.pk}"
    assert (adjustment.state, adjustment.continuation_key) == (AdjustmentState.POSTED, key)
    assert adjustments(goods) == [(-60, "approval_request", str(outcome.approval.pk))]
    assert on_hand(goods) == 940
    # Running the continuation again (a retried task, a bug) changes nothing.
    stock.post_approved_adjustment(ApprovalRequest.objects.get(pk=outcome.approval.pk), key)
    assert adjustments(goods) == [(-60, "approval_request", str(outcome.approval.pk))]


def test_rejection_posts_nothing_and_the_requester_sees_why(brand_a, goods, people):
    outcome = adjust(goods, -80, people.warehouse)

    approvals.reject(outcome.approval, actor=people.owner, comment="Count it again first")

    adjustment = StockAdjustmentRequest.objects.get(pk=outcome.request.pk)
    assert (adjustment.state, adjustment.resolution) == (
        AdjustmentState.REJECTED,
        "Count it again first",
    )
    assert adjustments(goods) == []
    assert on_hand(goods) == 1000
    page = brand_client(brand_a, people.warehouse).get("/approvals/", {"tab": "mine"})
    assert "Count it again first" in page.content.decode()
    assert ActivityEntry.objects.filter(
        action="stock.adjustment_rejected", object_id=str(adjustment.pk)
    ).exists()


def test_an_uncosted_sku_cannot_be_valued_so_it_waits(alpha, people):
    goods = make_goods(unit_cost=None, cost_currency="")
    other_currency = make_goods(unit_cost=Decimal("1.00"), cost_currency="EUR")

    first = adjust(goods, -1, people.warehouse)
    second = adjust(other_currency, -1, people.warehouse)

    assert first.pending and second.pending
    assert first.approval.amount is None
    assert "its value is unknown" in first.approval.explanation
    # Only roles without a limit may approve an amount nobody knows.
    with pytest.raises(AccessError) as refused:
        approvals.approve(first.approval, actor=people.ops)
    assert refused.value.code == "over_limit"
    approvals.approve(first.approval, actor=people.admin)
    assert adjustments(goods) == [(-1, "approval_request", str(first.approval.pk))]


def test_what_could_never_post_is_refused_up_front(goods, people):
    with pytest.raises(stock.InsufficientStock) as short:
        adjust(goods, -1001, people.warehouse)
    with pytest.raises(stock.StockError) as no_reason:
        adjust(goods, -100, people.warehouse, reason_code="")

    assert short.value.details == {
        "sku": goods.sku.code,
        "warehouse": goods.warehouse.code,
        "status": "sellable",
        "available": 1000,
        "requested": 1001,
    }
    assert no_reason.value.code == "reason_required"
    assert not StockAdjustmentRequest.objects.exists()


def test_approving_when_the_stock_is_gone_fails_and_records_nothing(goods, people):
    outcome = adjust(goods, -900, people.warehouse)
    stock.adjust(sku=goods.sku, warehouse=goods.warehouse, delta=-200, reason_code="lost")

    with pytest.raises(stock.InsufficientStock):
        approvals.approve(outcome.approval, actor=people.owner)

    request = ApprovalRequest.objects.get(pk=outcome.approval.pk)
    assert (request.state, request.decisions.count()) == (RequestState.PENDING, 0)
    assert StockAdjustmentRequest.objects.get(pk=outcome.request.pk).state == "pending"
    assert on_hand(goods) == 800


def test_editing_upward_reopens_approval_and_downward_keeps_it(goods, people):
    approvals.update_policy(
        approvals.ApprovalPolicy.objects.get(subject_type="stock_adjustment"),
        actor=people.admin,
        required_approvals=2,
    )
    outcome = adjust(goods, -60, people.warehouse)
    first = outcome.approval
    approvals.approve(first, actor=people.ops)  # 1 of 2

    down = stock.change_adjustment_request(
        outcome.request, delta=-55, requested_by=people.warehouse
    )
    assert (down.approval.pk, down.approval.subject_version) == (first.pk, 2)
    assert down.approval.decisions.count() == 1

    up = stock.change_adjustment_request(outcome.request, delta=-70, requested_by=people.warehouse)

    first.refresh_from_db()
    assert (first.state, first.superseded_by_id) == (RequestState.CANCELLED, up.approval.pk)
    assert (up.approval.state, up.approval.subject_version, up.approval.amount) == (
        RequestState.PENDING,
        3,
        Decimal("700.00"),
    )
    # The approval given for 600 does not count towards 700.
    assert up.approval.decisions.count() == 0
    approvals.approve(up.approval, actor=people.ops)
    assert adjustments(goods) == []
    approvals.approve(up.approval, actor=people.owner)
    assert adjustments(goods) == [(-70, "approval_request", str(up.approval.pk))]
    with pytest.raises(stock.StockError) as closed:
        stock.change_adjustment_request(outcome.request, delta=-1)
    assert closed.value.code == "adjustment_closed"


def test_edit_that_falls_under_the_ceiling_auto_approves(goods, people):
    approvals.update_policy(
        approvals.ApprovalPolicy.objects.get(subject_type="stock_adjustment"),
        actor=people.admin,
        amount_above=None,
        auto_approve_up_to=Decimal("200"),
    )
    outcome = adjust(goods, 30, people.warehouse, reason_code="found")  # 300 > 200: waits
    assert outcome.pending

    # Not higher than the pending request: it stays pending (approvers approve up to 300).
    kept = stock.change_adjustment_request(outcome.request, delta=10)
    assert kept.pending

    # Higher: re-evaluated from scratch; 310 waits again under a new request.
    again = stock.change_adjustment_request(outcome.request, delta=31)
    assert again.pending and again.approval.pk != outcome.approval.pk


def test_adjust_page_and_api_route_through_the_gate(brand_a, goods, people):
    page = brand_client(brand_a, people.warehouse).post(
        "/inventory/adjust/",
        {
            "sku": goods.sku.code,
            "warehouse": goods.warehouse.pk,
            "status": "sellable",
            "quantity": "-75",
            "reason_code": "damaged",
        },
        follow=True,
    )
    api = brand_client(brand_a, people.ops).post(
        "/api/v1/movements/",
        {
            "kind": "adjustment",
            "sku": goods.sku.pk,
            "warehouse": goods.warehouse.pk,
            "delta": -90,
            "reason_code": "lost",
        },
        JSON,
    )

    first, second = StockAdjustmentRequest.objects.order_by("id")
    first_request = ApprovalRequest.objects.get(subject_id=str(first.pk))
    assert (
        f"The adjustment of {goods.sku.code} at {goods.warehouse.code} by -75 needs approval: "
        f"it posts once approved. Follow it in Approvals › My requests (request "
        f"#{first_request.pk})."
    ) in page.content.decode()
    assert api.status_code == 202
    assert api.json() == {
        "adjustment_request": second.pk,
        "state": "pending",
        "sku": goods.sku.pk,
        "warehouse": goods.warehouse.pk,
        "status": "sellable",
        "delta": -90,
        "value": "900.0000",
        "currency": "USD",
        "approval_request": ApprovalRequest.objects.get(subject_id=str(second.pk)).pk,
    }
    assert (first.requested_by_id, second.requested_by_id) == (people.warehouse.pk, people.ops.pk)
    assert adjustments(goods) == []
    # The Ops manager cannot approve the adjustment they asked for; the Warehouse person
    # cannot approve anything.
    assert not approvals.can_decide(
        people.ops, ApprovalRequest.objects.get(subject_id=str(second.pk))
    )
    assert not approvals.can_decide(people.warehouse, first_request)
