"""The periodic sweep with a fake clock: escalation widens who may decide and tells them,
expiry closes the request and its subject, digests go out once a brand-local day."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from accounts.roles import Role
from approvals import services as approvals
from approvals import tasks
from approvals.models import ApprovalPolicy, ApprovalRequest, EmailMode, RequestState
from inventory.models import StockAdjustmentRequest, StockMovement
from tests.approvals.conftest import adjust

pytestmark = pytest.mark.usefixtures("alpha")

OWNER_A = "owner@alpha.example"  # the brand's first owner, made at signup


@pytest.fixture
def ops_only(people):
    """Stock adjustments approved by Ops managers; after 4 h escalated to Owners; expire
    after 2 days."""
    return approvals.update_policy(
        ApprovalPolicy.objects.get(subject_type="stock_adjustment"),
        actor=people.admin,
        approvers={"ops_manager": None},
        escalate_after=timedelta(hours=4),
        escalate_to=[Role.OWNER],
        expire_after=timedelta(days=2),
    )


def test_escalation_after_its_time_lets_the_higher_role_decide(
    goods, people, ops_only, mailoutbox, django_capture_on_commit_callbacks, eager_celery
):
    request = adjust(goods, -100, people.warehouse).approval
    assert not approvals.can_decide(people.owner, request)

    early = approvals.sweep(now=request.created_at + timedelta(hours=3, minutes=59))
    assert early["escalated"] == 0

    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        done = approvals.sweep(now=request.created_at + timedelta(hours=4))

    request.refresh_from_db()
    assert done["escalated"] == 1
    assert request.escalated_at == request.created_at + timedelta(hours=4)
    assert request.eligible_roles == ["ops_manager", "owner"]
    assert approvals.can_decide(people.owner, request)
    # Only the role it escalated to is told (the Ops manager heard when it opened).
    assert sorted(m.to[0] for m in mailoutbox) == sorted([people.owner.email, OWNER_A])
    assert {m.subject for m in mailoutbox} == {f"[Alpha] Escalated to you: {request.title}"}
    # Escalating twice does nothing.
    assert approvals.sweep(now=request.created_at + timedelta(hours=5))["escalated"] == 0


def test_expiry_closes_the_request_and_the_adjustment_never_posts(goods, people, ops_only):
    outcome = adjust(goods, -100, people.warehouse)
    request = outcome.approval

    assert approvals.sweep(now=request.expires_at - timedelta(seconds=1))["expired"] == 0
    done = approvals.sweep(now=request.expires_at)

    request.refresh_from_db()
    assert done["expired"] == 1
    assert (request.state, request.resolution) == (
        RequestState.EXPIRED,
        "Expired: nobody decided within 2 days.",
    )
    assert request.decided_at == request.expires_at
    adjustment = StockAdjustmentRequest.objects.get(pk=outcome.request.pk)
    assert (adjustment.state, adjustment.resolution) == ("expired", request.resolution)
    assert not StockMovement.objects.filter(sku=goods.sku, kind="adjustment").exists()
    with pytest.raises(approvals.ApprovalConflict):
        approvals.approve(request, actor=people.ops)


def test_expiry_wins_over_escalation_in_the_same_sweep(goods, people, ops_only):
    request = adjust(goods, -100, people.warehouse).approval

    done = approvals.sweep(now=request.created_at + timedelta(days=3))

    request.refresh_from_db()
    assert (done["expired"], done["escalated"], request.escalated_at) == (1, 0, None)


def test_digest_goes_out_once_a_day_after_eight_local(
    brand_a, goods, people, mailoutbox, django_capture_on_commit_callbacks, eager_celery
):
    approvals.set_email_mode(user=people.ops, mode=EmailMode.DIGEST)
    approvals.set_email_mode(user=people.admin, mode=EmailMode.OFF)
    with django_capture_on_commit_callbacks(execute=True):
        first = adjust(goods, -100, people.warehouse).approval
        second = adjust(goods, -200, people.warehouse).approval
    # On opening, only people who want each request as it arrives were emailed.
    assert sorted(m.to[0] for m in mailoutbox) == sorted([people.owner.email, OWNER_A] * 2)
    mailoutbox.clear()
    tz = ZoneInfo(brand_a.timezone)
    day = timezone.now().astimezone(tz).date() + timedelta(days=1)

    def at(hour: int, minute: int = 0) -> datetime:
        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)

    with django_capture_on_commit_callbacks(execute=True):
        assert approvals.send_due_digests(at(7, 59)) == 0
        assert approvals.send_due_digests(at(8, 5)) == 1
        assert approvals.send_due_digests(at(17, 0)) == 0

    assert len(mailoutbox) == 1
    digest = mailoutbox[0]
    assert (digest.to, digest.subject) == (
        [people.ops.email],
        "[Alpha] 2 approvals waiting for you",
    )
    assert first.title in digest.body and second.title in digest.body
    assert f"/approvals/{first.pk}/" in digest.body


def test_sweep_task_runs_per_brand(goods, people, ops_only, eager_celery):
    request = adjust(goods, -100, people.warehouse).approval
    ApprovalRequest.objects.filter(pk=request.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )

    result = tasks.sweep.apply(headers={"_schema_name": "brand_alpha"})

    assert result.get()["expired"] == 1
    request.refresh_from_db()
    assert request.state == RequestState.EXPIRED
