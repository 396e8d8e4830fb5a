"""Property test: whatever sequence of create / edit / approve / reject / cancel runs on
stock adjustment requests, no adjustment above the threshold reaches the ledger without an
approved request for its current version, and an edit upward always re-opens approval."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from accounts.roles import Role
from approvals import services as approvals
from approvals.models import ApprovalPolicy, ApprovalRequest, RequestState, Verdict
from inventory import services as stock
from inventory.models import AdjustmentState, StockAdjustmentRequest, StockMovement
from tests.approvals.conftest import UNIT_COST, make_goods
from tests.factories import UserFactory

THRESHOLD = Decimal("500")  # the default stock policy: 50 units at 10.00

# Mostly quantities above the threshold (51–90 units either way), some at or under it.
DELTAS = st.one_of(st.integers(51, 90), st.integers(-90, -51), st.integers(-50, 50))
OPS = st.lists(
    st.tuples(
        st.sampled_from(["create", "create", "edit", "approve", "approve", "reject", "cancel"]),
        st.integers(0, 1),  # which adjustment
        DELTAS,  # for create / edit
        st.sampled_from([0, 0, 1, 1, 2]),  # who acts: ops manager, owner, the requester
    ),
    min_size=3,
    max_size=25,
)


def current_request(adjustment: StockAdjustmentRequest) -> ApprovalRequest | None:
    return (
        ApprovalRequest.objects.filter(
            subject_type="stock_adjustment", subject_id=str(adjustment.pk)
        )
        .exclude(state=RequestState.CANCELLED, superseded_by__isnull=False)
        .order_by("-id")
        .first()
    )


def check_invariants(goods, created: list[StockAdjustmentRequest], required: int) -> None:
    movements = StockMovement.objects.filter(sku=goods.sku, kind="adjustment")
    gated = [a for a in created if a is not None]
    for adjustment in gated:
        adjustment.refresh_from_db()
        posted = list(
            movements.filter(
                reference_type="approval_request",
                reference_id__in=[
                    str(pk)
                    for pk in ApprovalRequest.objects.filter(
                        subject_id=str(adjustment.pk), subject_type="stock_adjustment"
                    ).values_list("pk", flat=True)
                ],
            )
        )
        pending = ApprovalRequest.objects.filter(
            subject_type="stock_adjustment", subject_id=str(adjustment.pk), state="pending"
        )
        assert pending.count() <= 1
        if adjustment.state == AdjustmentState.POSTED:
            # Posted exactly once, for its current quantity, under an approved request of
            # its current version that the policy's approvers (or the ceiling) allowed.
            assert len(posted) == 1
            request = ApprovalRequest.objects.get(pk=int(posted[0].reference_id))
            assert request.state == RequestState.APPROVED
            assert request.subject_version == adjustment.version
            assert posted[0].quantity == adjustment.delta
            assert abs(adjustment.delta) * UNIT_COST <= request.amount
            approvers = request.decisions.filter(verdict=Verdict.APPROVE)
            assert approvers.count() >= request.required_approvals == required
            assert adjustment.requested_by_id not in approvers.values_list("approver", flat=True)
        else:
            assert posted == []
            assert (adjustment.state == AdjustmentState.PENDING) == pending.exists()
            if pending.exists():
                assert pending.get().subject_version == adjustment.version
    # Nothing else moved: every adjustment movement is an ungated one (at or under the
    # threshold) or one of the approved postings above.
    for movement in movements.filter(reference_type=""):
        assert abs(movement.quantity) * UNIT_COST <= THRESHOLD


@pytest.mark.django_db
@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=OPS, required=st.integers(1, 2))
def test_no_adjustment_above_the_threshold_posts_without_a_current_approval(brand_a, ops, required):
    with schema_context(brand_a.schema_name):
        policy = ApprovalPolicy.objects.get(subject_type="stock_adjustment")
        admin = UserFactory(role=Role.ADMIN)
        if policy.required_approvals != required:
            approvals.update_policy(policy, actor=admin, required_approvals=required)
        goods = make_goods(quantity=400)
        requester = UserFactory(role=Role.WAREHOUSE)
        actors = [UserFactory(role=Role.OPS_MANAGER), UserFactory(role=Role.OWNER), requester]
        created: list[StockAdjustmentRequest | None] = []

        for name, index, delta, who in ops:
            actor = actors[who]
            target = created[index] if index < len(created) else None
            try:
                if name == "create":
                    outcome = stock.request_adjustment(
                        sku=goods.sku,
                        warehouse=goods.warehouse,
                        delta=delta or 1,
                        reason_code="correction",
                        requested_by=requester,
                    )
                    created.append(outcome.request)
                elif target is None:
                    continue
                elif name == "edit":
                    before = current_request(target)
                    outcome = stock.change_adjustment_request(
                        target, delta=delta or 1, requested_by=requester
                    )
                    value = abs(delta or 1) * UNIT_COST
                    if before is not None and before.state == "pending" and value > before.amount:
                        # Upward: the old request is superseded, approval starts again.
                        before.refresh_from_db()
                        assert before.state == RequestState.CANCELLED
                        assert before.superseded_by_id is not None
                        assert outcome.approval.pk == before.superseded_by_id
                        assert outcome.approval.decisions.count() == 0
                        event("an edit upward re-opened approval")
                else:
                    request = current_request(target)
                    if request is None:
                        continue
                    if name == "approve":
                        approvals.approve(request, actor=actor)
                    elif name == "reject":
                        approvals.reject(request, actor=actor, comment="no")
                    else:
                        approvals.cancel(request, actor=actor)
                event(f"{name} ok")
            except (ValidationError, PermissionDenied) as exc:
                event(f"{name} refused {getattr(exc, 'code', '')}")
                # refusals are part of the game; the invariants must still hold
            check_invariants(goods, created, required)
        for adjustment in filter(None, created):
            event(f"an adjustment ended {adjustment.state}")
