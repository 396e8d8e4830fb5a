"""Approvals acceptance with real purchase orders (purchasing's subject type).

Role matrix through the services and the API; two approvers at the same instant (threads
on the real database); a property test over random sequences of create / edit / submit /
approve / reject / cancel / receive.

Amounts: SKUs never segmented count as "tail", so forecasting's tail policy (before the
brand-wide PO policy) judges these POs: auto-approved up to 500.00, then Owner and Admin
any amount, Ops manager up to 25,000.00, Buyer up to 10,000.00 (copied from the default
PO policy in approvals' 0002), Warehouse and Viewer never.
"""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connections
from django.utils import timezone
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from accounts.roles import Role
from accounts.services import AccessError
from approvals import services as approvals
from approvals.models import ApprovalDecision, ApprovalRequest, RequestState, Verdict
from audit.models import ActivityEntry
from purchasing import services as purchasing
from purchasing.approval_subject import facts_of
from purchasing.models import POState, PurchaseOrder
from tests.conftest import brand_client
from tests.factories import SKUFactory, UserFactory, WarehouseFactory
from tests.purchasing.factories import SupplierFactory, SupplierSKUFactory, costly_po
from tests.purchasing.support import deliver_emails

JSON = "application/json"
CEILING = Decimal("500.00")
BUYER_LIMIT = Decimal("10000.00")


def pending_po(amount: Decimal, requester) -> tuple[PurchaseOrder, ApprovalRequest]:
    po = purchasing.submit(costly_po(amount, actor=requester), actor=requester)
    assert po.state == POState.PENDING_APPROVAL
    return po, purchasing.current_request(po)


def unchanged(po: PurchaseOrder, request: ApprovalRequest) -> None:
    po.refresh_from_db()
    request.refresh_from_db()
    assert po.state == POState.PENDING_APPROVAL and po.sent_at is None
    assert request.state == RequestState.PENDING
    assert request.decisions.count() == 0


# --- Role matrix: services ----------------------------------------------------------------


def test_the_policy_judging_these_pos_is_the_tail_one(alpha, people):
    po = costly_po(Decimal("600"), actor=people.ops)
    match = approvals.requirement("purchase_order", facts_of(str(po.pk)))
    assert match.rules.auto_approve_up_to == CEILING
    assert match.rules.limit_for(Role.BUYER, escalated=False) == (True, BUYER_LIMIT)


@pytest.mark.parametrize("role", [Role.VIEWER, Role.WAREHOUSE])
def test_viewers_and_warehouse_staff_cannot_approve_any_po(alpha, people, role):
    po, request = pending_po(Decimal("600"), people.ops)

    with pytest.raises(AccessError) as refused:
        approvals.approve(request, actor=people.of(role))

    assert refused.value.code == "not_an_approver"
    with pytest.raises(AccessError):
        approvals.reject(request, actor=people.of(role), comment="no")
    unchanged(po, request)
    assert approvals.decidable_requests(people.of(role)) == []


@pytest.mark.parametrize("amount", [Decimal("600"), BUYER_LIMIT])
def test_a_buyer_approves_up_to_the_buyer_limit(alpha, people, amount):
    po, request = pending_po(amount, people.ops)

    approvals.approve(request, actor=people.buyer)

    po.refresh_from_db()
    request.refresh_from_db()
    assert request.state == RequestState.APPROVED and request.decided_by == people.buyer
    assert po.state == POState.SENT and po.continuation_key == f"approval_request:{request.pk}"


def test_a_buyer_cannot_approve_above_the_limit_but_an_owner_can(alpha, people):
    po, request = pending_po(BUYER_LIMIT + Decimal("0.01"), people.ops)

    with pytest.raises(AccessError) as refused:
        approvals.approve(request, actor=people.buyer)
    assert refused.value.code == "over_limit"
    unchanged(po, request)
    assert request not in approvals.decidable_requests(people.buyer)

    big, big_request = pending_po(Decimal("250000"), people.ops)
    for request_, po_ in ((request, po), (big_request, big)):
        approvals.approve(request_, actor=people.owner)
        po_.refresh_from_db()
        assert po_.state == POState.SENT


def test_nobody_approves_their_own_po(alpha, people):
    po, request = pending_po(Decimal("600"), people.buyer)
    with pytest.raises(AccessError) as refused:
        approvals.approve(request, actor=people.buyer)
    assert refused.value.code == "self_approval"
    unchanged(po, request)


def test_purchasing_refuses_a_person_of_another_brand(alpha, people, owner_b):
    po = costly_po(Decimal("600"), actor=people.ops)
    for act in (
        lambda: purchasing.submit(po, actor=owner_b),
        lambda: purchasing.cancel(po, actor=owner_b, reason="x"),
        lambda: purchasing.update_lines(po, lines=[], actor=owner_b),
    ):
        with pytest.raises(AccessError) as refused:
            act()
        assert refused.value.code == "not_a_member"
    po.refresh_from_db()
    assert (po.state, po.version) == (POState.DRAFT, 1)


def test_approvals_refuses_a_person_of_another_brand(alpha, people, owner_b):
    po, request = pending_po(Decimal("600"), people.ops)
    with pytest.raises((AccessError, ValidationError)):
        approvals.approve(request, actor=owner_b)
    unchanged(po, request)


# --- Role matrix: API --------------------------------------------------------------------------


@pytest.fixture
def _generous_rate_limit(settings):
    settings.API_RATE_LIMIT = "100000/min"


@pytest.mark.usefixtures("_generous_rate_limit")
@pytest.mark.parametrize(
    "role, amount, status, code",
    [
        (Role.VIEWER, Decimal("600"), 403, "not_an_approver"),
        (Role.WAREHOUSE, Decimal("600"), 403, "not_an_approver"),
        (Role.BUYER, BUYER_LIMIT + Decimal("0.01"), 403, "over_limit"),
        (Role.BUYER, BUYER_LIMIT, 200, None),
        (Role.OWNER, Decimal("250000"), 200, None),
    ],
)
def test_the_role_matrix_through_the_api(brand_a, people, role, amount, status, code):
    with schema_context(brand_a.schema_name):
        po, request = pending_po(amount, people.ops)
    client = brand_client(brand_a, people.of(role))

    response = client.post(
        f"/api/v1/approval-requests/{request.pk}/approve/", {}, content_type=JSON
    )

    assert response.status_code == status, response.json()
    detail = client.get(f"/api/v1/purchase-orders/{po.pk}/").json()
    if code:
        assert response.json()["error"]["code"] == code
        assert detail["state"] == POState.PENDING_APPROVAL
    else:
        assert response.json()["state"] == "approved"
        assert detail["state"] == POState.SENT and detail["approval_request"] == request.pk


@pytest.mark.usefixtures("_generous_rate_limit")
def test_a_brand_b_user_gets_nothing_through_the_api(brand_a, brand_b, people, owner_b):
    with schema_context(brand_a.schema_name):
        po, request = pending_po(Decimal("600"), people.ops)
    with schema_context(brand_b.schema_name):
        assert not ApprovalRequest.objects.filter(pk=request.pk).exists()
    client = brand_client(brand_b, owner_b)

    approve = client.post(f"/api/v1/approval-requests/{request.pk}/approve/", {}, content_type=JSON)
    detail = client.get(f"/api/v1/purchase-orders/{po.pk}/")
    # Signed in to beta, talking to alpha's host: the session does not exist there.
    foreign = brand_client(brand_a)
    foreign.cookies = client.cookies
    on_alpha = foreign.post(
        f"/api/v1/approval-requests/{request.pk}/approve/", {}, content_type=JSON
    )

    assert (approve.status_code, detail.status_code) == (404, 404)
    assert on_alpha.status_code in (401, 403)
    with schema_context(brand_a.schema_name):
        unchanged(po, request)


# --- Two approvers at the same instant ---------------------------------------------------------


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


@pytest.mark.usefixtures("committed_approvals")
def test_two_approvers_at_the_same_instant_send_the_po_once():
    requester = UserFactory(role=Role.BUYER)
    approvers = [UserFactory(role=Role.OWNER), UserFactory(role=Role.OPS_MANAGER)]
    po, request = pending_po(Decimal("5000"), requester)
    mail.outbox = []
    started = timezone.now()

    results = run_together(lambda who: approvals.approve(request.pk, actor=who), approvers)

    won = [r for r in results if isinstance(r, ApprovalRequest)]
    lost = [r for r in results if isinstance(r, approvals.ApprovalConflict)]
    assert (len(won), len(lost)) == (1, 1), results
    assert lost[0].code == "request_closed"
    assert ApprovalDecision.objects.filter(request=request).count() == 1
    po.refresh_from_db()
    assert po.state == POState.SENT and po.times_sent == 1
    # The email leaves through the outbox: one message, sent once by a worker.
    assert deliver_emails() == ["done"]
    assert [m.to for m in mail.outbox if m.attachments] == [[po.supplier.email]]
    sent = ActivityEntry.objects.filter(
        action="purchase_order.sent",
        object_type="purchasing.purchaseorder",
        object_id=str(po.pk),
        created_at__gte=started,
    )
    assert sent.count() == 1


@pytest.mark.usefixtures("committed_approvals")
def test_an_edit_and_an_approval_at_the_same_instant_never_send_an_unapproved_amount():
    requester = UserFactory(role=Role.BUYER)
    owner = UserFactory(role=Role.OWNER)
    sku = SKUFactory()
    supplier = SupplierFactory()
    SupplierSKUFactory(supplier=supplier, sku=sku, unit_cost=Decimal("10"))
    po = purchasing.create_draft(
        supplier=supplier,
        warehouse=WarehouseFactory(),
        lines=[purchasing.DraftLine(sku, 100)],
        actor=requester,
    )
    po = purchasing.submit(po, actor=requester)
    request = purchasing.current_request(po)

    def work(who):
        if who is owner:
            return approvals.approve(request.pk, actor=owner)
        return purchasing.update_lines(po, lines=[purchasing.DraftLine(sku, 900)], actor=who)

    results = run_together(work, [owner, requester])

    po.refresh_from_db()
    assert po.version == 2  # the edit always lands
    covering = ApprovalRequest.objects.filter(
        subject_type="purchase_order",
        subject_id=str(po.pk),
        state=RequestState.APPROVED,
        subject_version=po.version,
    )
    if po.state == POState.SENT:
        assert covering.filter(amount__gte=Decimal("9000")).exists()
    else:
        # The approval lost the race (refused: superseded) or came first and the edit
        # re-opened approval: either way the 9,000 order waits.
        assert po.state == POState.PENDING_APPROVAL, results
        assert (
            ApprovalRequest.objects.filter(
                subject_id=str(po.pk), state=RequestState.PENDING, subject_version=2
            ).count()
            == 1
        )


# --- Property: nothing above the ceiling goes out without a current approval ------------------

UNIT = Decimal("10")
QUANTITIES = st.one_of(st.integers(51, 300), st.integers(1, 50))  # 510–3,000 or ≤ 500
# The flow a PO goes through, weighted so most sequences get it out of the door and back.
OPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["edit"] * 4
            + ["submit"] * 4
            + ["approve"] * 6
            + ["reject"] * 2
            + ["receive"] * 4
            + ["cancel", "create"]
        ),
        st.sampled_from([0, 0, 0, 1]),  # which PO (the first exists from the start)
        QUANTITIES,
        st.sampled_from([0, 1, 2, 3]),  # who decides: owner, ops, other buyer, viewer
    ),
    min_size=3,
    max_size=25,
)
ON_ORDER = {
    POState.APPROVED,
    POState.SENT,
    POState.PARTIALLY_RECEIVED,
    POState.RECEIVED,
    POState.CLOSED,
}


def requests_of(po: PurchaseOrder):
    return ApprovalRequest.objects.filter(subject_type="purchase_order", subject_id=str(po.pk))


def check_invariants(pos: list[PurchaseOrder]) -> None:
    for po in pos:
        po.refresh_from_db()
        total = purchasing.po_total(po)
        pending = requests_of(po).filter(state=RequestState.PENDING)
        assert pending.count() <= 1
        if po.state == POState.PENDING_APPROVAL:
            assert pending.get().subject_version == po.version
        elif po.state in (POState.DRAFT, POState.CANCELLED):
            assert not pending.exists()
        if po.state not in ON_ORDER:
            continue
        # Out of the door: an approved request of its current version covers its amount,
        # auto-approved only within the ceiling, else decided by people allowed to.
        covering = requests_of(po).filter(
            state=RequestState.APPROVED, subject_version=po.version, superseded_by__isnull=True
        )
        assert covering.count() == 1, (po.state, po.version, list(requests_of(po).values()))
        request = covering.get()
        assert total <= request.amount
        assert po.continuation_key.startswith("approval_request:")
        if request.auto_approved:
            assert request.amount <= CEILING
        else:
            decisions = request.decisions.filter(verdict=Verdict.APPROVE)
            assert decisions.count() >= request.required_approvals
            for decision in decisions:
                assert decision.role in (Role.OWNER, Role.ADMIN, Role.OPS_MANAGER, Role.BUYER)
                assert decision.limit is None or request.amount <= decision.limit
                assert decision.approver_id != request.requested_by_id


@pytest.mark.django_db
@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first=QUANTITIES, ops=OPS)
def test_no_po_above_the_ceiling_goes_out_without_a_current_approval(brand_a, first, ops):
    with schema_context(brand_a.schema_name):
        sku = SKUFactory()
        supplier = SupplierFactory()
        SupplierSKUFactory(supplier=supplier, sku=sku, unit_cost=UNIT)
        warehouse = WarehouseFactory()
        requester = UserFactory(role=Role.BUYER)
        deciders = [
            UserFactory(role=Role.OWNER),
            UserFactory(role=Role.OPS_MANAGER),
            UserFactory(role=Role.BUYER),
            UserFactory(role=Role.VIEWER),
        ]
        receiver = UserFactory(role=Role.WAREHOUSE)
        pos: list[PurchaseOrder] = [
            purchasing.create_draft(
                supplier=supplier,
                warehouse=warehouse,
                lines=[purchasing.DraftLine(sku, first)],
                actor=requester,
            )
        ]

        for name, index, quantity, who in ops:
            target = pos[index] if index < len(pos) else None
            try:
                if name == "create":
                    pos.append(
                        purchasing.create_draft(
                            supplier=supplier,
                            warehouse=warehouse,
                            lines=[purchasing.DraftLine(sku, quantity)],
                            actor=requester,
                        )
                    )
                elif target is None:
                    continue
                elif name == "edit":
                    target.refresh_from_db()
                    was, before = target.state, purchasing.current_request(target)
                    purchasing.update_lines(
                        target, lines=[purchasing.DraftLine(sku, quantity)], actor=requester
                    )
                    target.refresh_from_db()
                    upward = before is not None and quantity * UNIT > before.amount
                    if was in (POState.APPROVED, POState.SENT) and upward:
                        before.refresh_from_db()
                        assert before.state == RequestState.CANCELLED
                        assert before.superseded_by_id is not None
                        if quantity * UNIT > CEILING:
                            assert target.state == POState.PENDING_APPROVAL
                            event("an upward edit of a sent PO re-opened approval")
                elif name == "submit":
                    purchasing.submit(target, actor=requester)
                elif name == "receive":
                    line = target.lines.get()
                    purchasing.receive(
                        target,
                        quantities={line.pk: max(line.outstanding, 1)},
                        reasons={} if line.outstanding else {line.pk: "over_shipped"},
                        actor=receiver,
                    )
                elif name == "cancel":
                    purchasing.cancel(target, actor=requester, reason="not needed")
                else:
                    request = requests_of(target).filter(state=RequestState.PENDING).first()
                    if request is None:
                        event(f"{name}: nothing pending")
                        continue
                    if name == "approve":
                        approvals.approve(request, actor=deciders[who])
                    else:
                        approvals.reject(request, actor=deciders[who], comment="no")
                event(f"{name} ok")
            except (ValidationError, PermissionDenied) as exc:
                event(f"{name} refused {getattr(exc, 'code', '')}")
            check_invariants(pos)
        for po in pos:
            event(f"a PO ended {po.state}")
