"""Approvals under real concurrency: threads, each on its own database connection, all
released by one barrier so they hit the same request at the same instant."""

from __future__ import annotations

import threading

import pytest
from django.db import connections
from django_tenants.utils import schema_context

from accounts.roles import Role
from approvals import services as approvals
from approvals.models import ApprovalDecision, ApprovalPolicy, ApprovalRequest, RequestState
from inventory import services as stock
from inventory.models import StockAdjustmentRequest, StockMovement
from tests.approvals.conftest import adjust, make_goods
from tests.factories import UserFactory

pytestmark = pytest.mark.usefixtures("committed_approvals")


def run_together(work, actors) -> list:
    barrier = threading.Barrier(len(actors))
    results: list = [None] * len(actors)

    def target(i: int) -> None:
        try:
            with schema_context("brand_alpha"):
                barrier.wait()
                results[i] = work(actors[i])
        except Exception as exc:  # noqa: BLE001 - the test inspects every outcome
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(len(actors))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def ledger(adjustment: StockAdjustmentRequest) -> list[tuple[int, str]]:
    return list(
        StockMovement.objects.filter(sku_id=adjustment.sku_id, kind="adjustment").values_list(
            "quantity", "reference_id"
        )
    )


def test_two_approvers_at_the_same_instant_decide_once_and_post_once():
    goods = make_goods()
    requester = UserFactory(role=Role.WAREHOUSE)
    approvers = [UserFactory(role=Role.OWNER), UserFactory(role=Role.OPS_MANAGER)]
    outcome = adjust(goods, -100, requester)

    results = run_together(lambda who: approvals.approve(outcome.approval.pk, actor=who), approvers)

    won = [r for r in results if isinstance(r, ApprovalRequest)]
    lost = [r for r in results if isinstance(r, approvals.ApprovalConflict)]
    assert (len(won), len(lost)) == (1, 1), results
    assert lost[0].code == "request_closed"
    request = ApprovalRequest.objects.get(pk=outcome.approval.pk)
    assert request.state == RequestState.APPROVED
    assert ApprovalDecision.objects.filter(request=request).count() == 1
    assert ledger(outcome.request) == [(-100, str(request.pk))]
    assert StockAdjustmentRequest.objects.get(pk=outcome.request.pk).state == "posted"


def test_with_two_required_both_approvals_count_once_each_and_it_posts_once():
    policy = ApprovalPolicy.objects.get(subject_type="stock_adjustment")
    strict = approvals.create_policy(
        actor=UserFactory(role=Role.ADMIN),
        subject_type="stock_adjustment",
        name="Two people for big write-offs",
        position=policy.position - 1,
        amount_above=policy.amount_above,
        approvers={"owner": None, "ops_manager": None},
        required_approvals=2,
    )
    goods = make_goods()
    requester = UserFactory(role=Role.WAREHOUSE)
    approvers = [UserFactory(role=Role.OWNER), UserFactory(role=Role.OPS_MANAGER)]
    outcome = adjust(goods, -100, requester)
    assert outcome.approval.policy_id == strict.pk

    results = run_together(lambda who: approvals.approve(outcome.approval.pk, actor=who), approvers)

    assert all(isinstance(r, ApprovalRequest) for r in results), results
    request = ApprovalRequest.objects.get(pk=outcome.approval.pk)
    assert request.state == RequestState.APPROVED
    assert sorted(request.decisions.values_list("approver_id", flat=True)) == sorted(
        a.pk for a in approvers
    )
    assert ledger(outcome.request) == [(-100, str(request.pk))]


def test_an_edit_racing_an_approval_never_posts_an_unapproved_amount():
    goods = make_goods()
    requester = UserFactory(role=Role.WAREHOUSE)
    owner = UserFactory(role=Role.OWNER)
    outcome = adjust(goods, -60, requester)

    def act(who):
        if who is owner:
            return approvals.approve(outcome.approval.pk, actor=owner)
        return stock.change_adjustment_request(outcome.request, delta=-90, requested_by=requester)

    results = run_together(act, [owner, requester])

    adjustment = StockAdjustmentRequest.objects.get(pk=outcome.request.pk)
    if adjustment.state == "posted":
        # The approval came first: it posted -60, and the edit found it closed.
        assert ledger(adjustment) == [(-60, str(outcome.approval.pk))]
        assert getattr(results[1], "code", None) == "adjustment_closed", results
    else:
        # The edit came first: the approval found its request superseded, nothing posted,
        # and -90 waits under a new request.
        assert ledger(adjustment) == []
        assert isinstance(results[0], approvals.ApprovalConflict), results
        waiting = ApprovalRequest.objects.get(subject_id=str(adjustment.pk), state="pending")
        assert (waiting.amount, waiting.subject_version) == (900, 2)
