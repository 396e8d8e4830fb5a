"""The request state machine through a stand-in purchase-order subject: who may decide
(role matrix, limits, separation of duties, N distinct people), what each outcome does to
the subject, and that every step is in the activity log."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from django_tenants.utils import schema_context

from accounts.roles import Role
from accounts.services import AccessError, create_api_key
from approvals import registry
from approvals import services as approvals
from approvals.models import ApprovalDecision, ApprovalPolicy, ApprovalRequest, RequestState
from audit.models import ActivityEntry
from tests.approvals.conftest import adjust, make_people
from tests.conftest import brand_client

JSON = "application/json"

pytestmark = pytest.mark.usefixtures("alpha")


def po_policy() -> ApprovalPolicy:
    # The brand-wide PO policy; segment policies (forecasting) are tried before it.
    return ApprovalPolicy.objects.get(subject_type="purchase_order", position=100)


def state_of(request: ApprovalRequest) -> tuple:
    request.refresh_from_db()
    return (request.state, request.decisions.count(), request.continued_at is not None)


# --- Opening ----------------------------------------------------------------------------


def test_default_purchase_order_policy_auto_approves_up_to_its_ceiling(people, purchase_orders):
    small = purchase_orders.create(Decimal("999.99"))

    outcome = purchase_orders.submit(small, people.buyer)

    assert outcome.state == RequestState.APPROVED
    request = outcome.request
    assert (request.auto_approved, request.decided_by_label) == (True, "Keel (auto-approval)")
    assert request.explanation == (
        "Auto-approved under “Purchase orders above the brand's ceiling” (v1): "
        "999.99 USD is within the 1,000.00 USD ceiling."
    )
    assert purchase_orders.sent == [(small, f"approval_request:{request.pk}")]
    assert list(
        ActivityEntry.objects.filter(
            object_type="approvals.approvalrequest", object_id=str(request.pk)
        )
        .order_by("id")
        .values_list("action", flat=True)
    ) == ["approval.auto_approved", "approval.continued"]


def test_above_the_ceiling_waits_with_the_inputs_and_policy_version_it_saw(people, purchase_orders):
    po = purchase_orders.create(Decimal("5000"))

    outcome = purchase_orders.submit(po, people.buyer)

    assert outcome.pending
    request = outcome.request
    assert (request.policy_id, request.policy_version.version) == (po_policy().pk, 1)
    assert request.facts == {
        "title": f"Purchase order {po}",
        "amount": "5000",
        "variance_pct": None,
        "tags": [],
        "supplier": "Acme Mills",
        "version": 1,
    }
    assert request.explanation == (
        "Needs approval under “Purchase orders above the brand's ceiling” (v1) because the "
        "policy applies always. May approve: Owner, Admin, Ops manager up to 25,000.00 USD, "
        "Buyer up to 10,000.00 USD."
    )
    assert request.eligible_roles == ["owner", "admin", "ops_manager", "buyer"]
    assert purchase_orders.states[po] == "pending_approval"
    assert purchase_orders.sent == []
    # Submitting again is the same request, not a second one.
    assert purchase_orders.submit(po, people.buyer).request.pk == request.pk


def test_no_policy_means_no_request(people, purchase_orders):
    ApprovalPolicy.objects.filter(subject_type="purchase_order").update(is_enabled=False)
    po = purchase_orders.create(Decimal("50000"))

    outcome = purchase_orders.submit(po, people.buyer)

    assert (outcome.state, outcome.request) == (approvals.NOT_REQUIRED, None)
    assert purchase_orders.states[po] == "sent"
    assert not ApprovalRequest.objects.exists()


# --- Role matrix --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "role", "allowed"),
    [
        # Viewer and Warehouse can approve nothing.
        ("5000", Role.VIEWER, False),
        ("5000", Role.WAREHOUSE, False),
        ("1500", Role.WAREHOUSE, False),
        # Buyer up to the policy's 10,000 limit; Ops manager up to 25,000; Owner and Admin all.
        ("10000", Role.BUYER, True),
        ("10000.01", Role.BUYER, False),
        ("25000", Role.OPS_MANAGER, True),
        ("25000.01", Role.OPS_MANAGER, False),
        ("999999", Role.ADMIN, True),
        ("999999", Role.OWNER, True),
    ],
)
@pytest.mark.parametrize("via", ["ui", "api"])
def test_role_matrix(brand_a, people, purchase_orders, amount, role, allowed, via):
    requester = make_people(brand_a, tag="-req").buyer
    po = purchase_orders.create(Decimal(amount))
    request = purchase_orders.submit(po, requester).request
    client = brand_client(brand_a, people.of(role))

    if via == "ui":
        response = client.post(f"/approvals/{request.pk}/decide/", {"verdict": "approve"})
        assert response.status_code == (302 if allowed else 403)
    else:
        response = client.post(f"/api/v1/approval-requests/{request.pk}/approve/", {}, JSON)
        assert response.status_code == (200 if allowed else 403), response.content
        if not allowed:
            assert response.json()["error"]["code"] in {"not_an_approver", "over_limit"}

    if allowed:
        assert state_of(request) == (RequestState.APPROVED, 1, True)
        assert purchase_orders.states[po] == "sent"
    else:
        assert state_of(request) == (RequestState.PENDING, 0, False)
        assert purchase_orders.sent == []
    # The inbox lists exactly what the person may decide.
    assert (request.pk in {r.pk for r in approvals.decidable_requests(people.of(role))}) == (
        allowed and request.state == RequestState.PENDING
    )


def test_user_of_another_brand_gets_404_for_the_request(brand_a, brand_b, people, purchase_orders):
    request = purchase_orders.submit(purchase_orders.create(Decimal("5000")), people.buyer).request
    beta_owner = make_people(brand_b, tag="-b").owner
    on_beta = brand_client(brand_b, beta_owner)

    responses = [
        on_beta.get(f"/approvals/{request.pk}/"),
        on_beta.post(f"/approvals/{request.pk}/decide/", {"verdict": "approve"}),
        on_beta.get(f"/api/v1/approval-requests/{request.pk}/"),
        on_beta.post(f"/api/v1/approval-requests/{request.pk}/approve/", {}, JSON),
    ]

    assert [r.status_code for r in responses] == [404, 404, 404, 404]
    with schema_context(brand_b.schema_name):
        assert not ApprovalRequest.objects.exists()
    with schema_context(brand_a.schema_name):
        assert state_of(request) == (RequestState.PENDING, 0, False)


def test_api_keys_read_requests_but_never_decide(brand_a, owner_a, people, purchase_orders):
    request = purchase_orders.submit(purchase_orders.create(Decimal("5000")), people.buyer).request
    key = create_api_key(actor=owner_a, name="ERP", scope="write")
    client = brand_client(brand_a)
    auth = {"HTTP_AUTHORIZATION": f"Api-Key {key.secret}"}

    listed = client.get("/api/v1/approval-requests/", **auth)
    decided = client.post(f"/api/v1/approval-requests/{request.pk}/approve/", {}, JSON, **auth)

    assert [r["id"] for r in listed.json()["results"]] == [request.pk]
    assert (decided.status_code, decided.json()["error"]["code"]) == (403, "approver_required")
    assert state_of(request) == (RequestState.PENDING, 0, False)


# --- Separation of duties, N approvers -------------------------------------------------------


def test_requester_cannot_decide_their_own_request_unless_the_policy_allows(
    people, purchase_orders
):
    own = purchase_orders.submit(purchase_orders.create(Decimal("5000")), people.buyer).request

    with pytest.raises(AccessError) as refused:
        approvals.approve(own, actor=people.buyer)
    assert refused.value.code == "self_approval"
    with pytest.raises(AccessError):
        approvals.reject(own, actor=people.buyer, comment="never mind")
    assert state_of(own) == (RequestState.PENDING, 0, False)
    assert own.pk not in {r.pk for r in approvals.decidable_requests(people.buyer)}

    approvals.update_policy(po_policy(), actor=people.admin, allow_self_approval=True)
    # The waiting request keeps the version it was opened under…
    with pytest.raises(AccessError):
        approvals.approve(own, actor=people.buyer)
    # …a new one is judged by version 2.
    second = purchase_orders.submit(purchase_orders.create(Decimal("5000")), people.buyer)
    assert second.request.policy_version.version == 2
    approvals.approve(second.request, actor=people.buyer)
    assert state_of(second.request) == (RequestState.APPROVED, 1, True)


def test_two_required_approvals_need_two_different_people(people, purchase_orders):
    approvals.update_policy(po_policy(), actor=people.admin, required_approvals=2)
    po = purchase_orders.create(Decimal("5000"))
    request = purchase_orders.submit(po, people.buyer).request

    approvals.approve(request, actor=people.ops, comment="Looks right")
    assert state_of(request) == (RequestState.PENDING, 1, False)
    with pytest.raises(approvals.ApprovalConflict) as again:
        approvals.approve(request, actor=people.ops)
    assert again.value.code == "already_decided"
    assert purchase_orders.sent == []

    approvals.approve(request, actor=people.owner)

    assert state_of(request) == (RequestState.APPROVED, 2, True)
    assert list(request.decisions.values_list("approver__email", "role", "comment")) == [
        (people.ops.email, "ops_manager", "Looks right"),
        (people.owner.email, "owner", ""),
    ]
    assert purchase_orders.sent == [(po, f"approval_request:{request.pk}")]
    assert [
        e.action
        for e in ActivityEntry.objects.filter(object_id=str(request.pk)).order_by("id")
        if e.object_type == "approvals.approvalrequest"
    ] == [
        "approval.requested",
        "approval.approval_added",
        "approval.approved",
        "approval.continued",
    ]


# --- Rejection, cancellation, closed requests ----------------------------------------------


def test_rejection_needs_a_reason_and_returns_the_subject_with_it(people, purchase_orders):
    po = purchase_orders.create(Decimal("5000"))
    request = purchase_orders.submit(po, people.buyer).request

    with pytest.raises(approvals.ApprovalError) as no_reason:
        approvals.reject(request, actor=people.owner, comment="  ")
    assert no_reason.value.error_dict["comment"][0].code == "reason_required"

    approvals.reject(request, actor=people.owner, comment="Wrong supplier")

    request.refresh_from_db()
    assert (request.state, request.resolution, request.decided_by_id) == (
        RequestState.REJECTED,
        "Wrong supplier",
        people.owner.pk,
    )
    assert (purchase_orders.states[po], purchase_orders.reasons[po]) == ("draft", "Wrong supplier")
    assert purchase_orders.sent == []
    with pytest.raises(approvals.ApprovalConflict) as closed:
        approvals.approve(request, actor=people.admin)
    assert closed.value.code == "request_closed"


def test_decided_request_answers_409_in_the_api(brand_a, people, purchase_orders):
    request = purchase_orders.submit(purchase_orders.create(Decimal("5000")), people.buyer).request
    approvals.approve(request, actor=people.owner)

    response = brand_client(brand_a, people.admin).post(
        f"/api/v1/approval-requests/{request.pk}/reject/", {"comment": "late"}, JSON
    )

    assert (response.status_code, response.json()["error"]["code"]) == (409, "request_closed")
    assert ApprovalDecision.objects.filter(request=request).count() == 1


def test_only_the_requester_or_an_admin_may_cancel(people, purchase_orders):
    po = purchase_orders.create(Decimal("5000"))
    request = purchase_orders.submit(po, people.buyer).request

    with pytest.raises(AccessError):
        approvals.cancel(request, actor=people.ops)
    approvals.cancel(request, actor=people.buyer, reason="Ordered elsewhere")

    request.refresh_from_db()
    assert (request.state, request.resolution) == (RequestState.CANCELLED, "Ordered elsewhere")
    assert purchase_orders.states[po] == "draft"
    assert ActivityEntry.objects.filter(
        action="approval.cancelled", object_id=str(request.pk)
    ).exists()


def test_a_continuation_that_refuses_leaves_no_decision(people, purchase_orders):
    po = purchase_orders.create(Decimal("5000"))
    request = purchase_orders.submit(po, people.buyer).request

    def refuse(request, key):
        raise approvals.ApprovalError("Supplier is on hold.", code="supplier_on_hold")

    refusing = replace(purchase_orders.subject_type(), on_approved=refuse)
    with registry.temporarily(refusing), pytest.raises(approvals.ApprovalError) as refused:
        approvals.approve(request, actor=people.owner)

    assert refused.value.code == "supplier_on_hold"
    assert state_of(request) == (RequestState.PENDING, 0, False)
    assert not ActivityEntry.objects.filter(action="approval.approved").exists()


# --- Editing a subject -------------------------------------------------------------------


def test_editing_an_approved_subject_upward_reopens_approval(brand_a, people, purchase_orders):
    po = purchase_orders.create(Decimal("5000"))
    first = purchase_orders.submit(po, people.buyer).request
    approvals.approve(first, actor=people.owner)

    # Down (or equal): the approval still covers it.
    purchase_orders.amounts[po], purchase_orders.versions[po] = Decimal("4000"), 2
    kept = approvals.subject_changed("purchase_order", po, Decimal("4000"))
    assert (kept.state, kept.request.pk, kept.request.subject_version) == ("approved", first.pk, 2)

    # Up: superseded, and a new request waits under today's policy.
    purchase_orders.amounts[po], purchase_orders.versions[po] = Decimal("12000"), 3
    reopened = approvals.subject_changed("purchase_order", po, Decimal("12000"))

    first.refresh_from_db()
    assert first.state == RequestState.CANCELLED
    assert first.superseded_by_id == reopened.request.pk
    assert first.resolution == (
        "Superseded: the amount changed from 5,000.00 USD to 12,000.00 USD, so it needs "
        "approval again."
    )
    assert (reopened.state, reopened.request.subject_version) == (RequestState.PENDING, 3)
    assert reopened.request.requested_by_id == people.buyer.pk
    # Another Buyer's 10,000 limit no longer covers it; the Owner's does.
    other_buyer = make_people(brand_a, tag="-2").buyer
    with pytest.raises(AccessError) as over:
        approvals.approve(reopened.request, actor=other_buyer)
    assert over.value.code == "over_limit"
    approvals.approve(reopened.request, actor=people.owner)
    assert [key for _, key in purchase_orders.sent] == [
        f"approval_request:{first.pk}",
        f"approval_request:{reopened.request.pk}",
    ]


def test_policy_conditions_tags_suppliers_and_unknown_amounts(people, purchase_orders):
    policy = po_policy()
    approvals.update_policy(
        policy,
        actor=people.admin,
        auto_approve_up_to=None,
        amount_above=Decimal("100"),
        suppliers=["Acme Mills"],
    )
    cheap = purchase_orders.create(Decimal("50"))
    unknown = purchase_orders.create(None)
    big = purchase_orders.create(Decimal("150"))

    assert purchase_orders.submit(cheap, people.buyer).state == approvals.NOT_REQUIRED
    # An amount Keel cannot work out never counts as small.
    unknown_request = purchase_orders.submit(unknown, people.buyer).request
    assert "its value is unknown" in unknown_request.explanation
    # …and only roles without a limit may decide it.
    assert not approvals.can_decide(people.ops, unknown_request)
    assert approvals.can_decide(people.owner, unknown_request)
    assert purchase_orders.submit(big, people.buyer).pending

    approvals.update_policy(policy, actor=people.admin, suppliers=["Other Co"])
    other = purchase_orders.create(Decimal("150"))
    assert purchase_orders.submit(other, people.buyer).state == approvals.NOT_REQUIRED


def test_api_lists_with_filters_and_retrieves_the_decision_context(
    brand_a, people, purchase_orders
):
    small = purchase_orders.submit(purchase_orders.create(Decimal("5000")), people.buyer).request
    large = purchase_orders.submit(purchase_orders.create(Decimal("50000")), people.ops).request
    ops = brand_client(brand_a, people.ops)

    def ids(client, query: str) -> list[int]:
        response = client.get(f"/api/v1/approval-requests/?{query}")
        assert response.status_code == 200, response.content
        return [r["id"] for r in response.json()["results"]]

    assert ids(ops, "") == [large.pk, small.pk]
    # The Ops manager may decide the 5,000 one; the 50,000 one is theirs (and over 25,000).
    assert ids(ops, "decidable=true") == [small.pk]
    assert ids(ops, "mine=true") == [large.pk]
    assert ids(brand_client(brand_a, people.viewer), "decidable=true") == []
    assert ids(ops, "state=approved") == []
    bad = ops.get("/api/v1/approval-requests/?state=maybe")
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "validation_error")

    detail = ops.get(f"/api/v1/approval-requests/{small.pk}/").json()
    assert (detail["can_decide"], detail["policy"]["version"], detail["amount"]) == (
        True,
        1,
        "5000.00",
    )
    assert detail["context"] == {
        "facts": [{"label": "Supplier", "value": "Acme Mills"}],
        "tables": [
            {
                "caption": "Lines",
                "columns": ["SKU", "Quantity", "Cost"],
                "rows": [["TEE-1", "40", "12.50"]],
            }
        ],
        "warnings": [],
    }


def test_a_person_of_another_brand_decides_nothing(goods, people, owner_b):
    """Users live in their brand's schema: beta's owner, handed to a service while alpha's
    schema is active, must not pass for whoever holds the same id in alpha."""
    outcome = adjust(goods, -100, people.warehouse)

    with pytest.raises(AccessError) as refused:
        approvals.approve(outcome.approval, actor=owner_b)
    with pytest.raises(AccessError):
        approvals.cancel(outcome.approval, actor=owner_b)

    outcome.approval.refresh_from_db()
    assert refused.value.code == "not_a_member"
    assert outcome.approval.state == "pending"
    assert outcome.approval.decisions.count() == 0
    assert approvals.decidable_requests(owner_b) == []
