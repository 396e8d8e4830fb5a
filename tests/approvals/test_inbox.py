"""The inbox and request pages: grouping, decision context, filters, navigation count,
htmx decisions, bulk approve, comments, cancellation, email preference."""

from __future__ import annotations

from decimal import Decimal

import pytest

from approvals import services as approvals
from approvals.models import ApprovalComment, ApprovalRequest, ApproverPreference, RequestState
from audit.models import ActivityEntry
from inventory.models import StockMovement
from tests.approvals.conftest import adjust
from tests.conftest import brand_client

pytestmark = pytest.mark.usefixtures("alpha")


def nav(response) -> dict[str, int | None]:
    return {s["label"]: s["badge"] for s in response.context["nav_sections"]}


def test_inbox_groups_what_the_person_may_decide_with_the_context_to_decide(
    brand_a, goods, people, purchase_orders
):
    adjustment = adjust(goods, -60, people.warehouse, note="Forklift")
    po_request = purchase_orders.submit(purchase_orders.create(Decimal("8000")), people.buyer)

    response = brand_client(brand_a, people.ops).get("/approvals/")

    assert response.status_code == 200
    groups = response.context["groups"]
    assert [(g["label"], g["count"]) for g in groups] == [
        ("Purchase order", 1),
        ("Stock adjustment", 1),
    ]
    body = response.content.decode()
    # The stock adjustment's own context: SKU, warehouse, stock now, change, value, reason,
    # requester.
    sku, wh = goods.sku, goods.warehouse
    for text in (
        f"<dt>SKU</dt><dd>{sku.code}</dd>",
        f"<dt>Warehouse</dt><dd>{wh.code} · {wh.name}</dd>",
        "<dt>On hand now</dt><dd>1000</dd>",
        "<dt>Change</dt><dd>-60</dd>",
        "<dt>After posting</dt><dd>940</dd>",
        "<dt>Value</dt><dd>600.00 USD</dd>",
        "<dt>Reason</dt><dd>Damaged</dd>",
        "<dt>Note</dt><dd>Forklift</dd>",
        f"<dt>Requested by</dt><dd>{people.warehouse.email}</dd>",
        # The purchase order's table of lines, from its own subject type.
        "<caption>Lines</caption>",
        "<td>TEE-1</td>",
    ):
        assert text in body, text
    assert nav(response)["Approvals"] == 2
    assert f'name="ids" value="{adjustment.approval.pk}"' in body
    assert f'name="ids" value="{po_request.request.pk}"' in body


def test_viewer_and_warehouse_see_nothing_to_decide(brand_a, goods, people):
    adjust(goods, -60, people.buyer)
    for person in (people.viewer, people.warehouse):
        response = brand_client(brand_a, person).get("/approvals/")
        assert response.context["groups"] == []
        assert nav(response)["Approvals"] == 0
        assert "Nothing is waiting for your decision" in response.content.decode()


def test_filters_and_tabs(brand_a, goods, people, purchase_orders):
    adjust(goods, -60, people.warehouse)
    purchase_orders.submit(purchase_orders.create(Decimal("8000")), people.buyer)
    client = brand_client(brand_a, people.owner)

    by_type = client.get("/approvals/", {"type": "purchase_order"}, HTTP_HX_REQUEST="true")
    searched = client.get("/approvals/", {"q": goods.sku.code})
    mine = brand_client(brand_a, people.warehouse).get("/approvals/", {"tab": "mine"})
    everything = client.get("/approvals/", {"tab": "all", "state": "pending"})
    bad = client.get("/approvals/", {"tab": "nonsense", "type": "<script>"})

    assert by_type.content.decode().lstrip().startswith('<div id="results">')
    assert [g["key"] for g in by_type.context["groups"]] == ["purchase_order"]
    assert [g["key"] for g in searched.context["groups"]] == ["stock_adjustment"]
    assert [r.subject_type for r in mine.context["page"]] == ["stock_adjustment"]
    assert len(everything.context["page"]) == 2
    assert (bad.status_code, bad.context["tab"]) == (200, "decide")


def test_htmx_approve_swaps_the_card_and_the_navigation_count(brand_a, goods, people):
    first = adjust(goods, -60, people.warehouse).approval
    adjust(goods, -70, people.warehouse)

    response = brand_client(brand_a, people.ops).post(
        f"/approvals/{first.pk}/decide/",
        {"verdict": "approve", "comment": "ok"},
        HTTP_HX_REQUEST="true",
    )

    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith(f'<article class="card held approval" id="request-{first.pk}">')
    assert f"Approved: {first.title}." in body
    assert '<span id="nav-count-approvals-inbox" class="nav-count" hx-swap-oob="true">' in body
    assert '<span class="badge warn">1</span>' in body
    assert StockMovement.objects.filter(reference_id=str(first.pk)).count() == 1


def test_reject_without_a_reason_shows_the_error_on_the_card(brand_a, goods, people):
    request = adjust(goods, -60, people.warehouse).approval
    client = brand_client(brand_a, people.ops)

    htmx = client.post(
        f"/approvals/{request.pk}/decide/", {"verdict": "reject"}, HTTP_HX_REQUEST="true"
    )
    plain = client.post(f"/approvals/{request.pk}/decide/", {"verdict": "reject"})

    assert htmx.status_code == 200
    assert f'id="comment-{request.pk}-errors"' in htmx.content.decode()
    assert "Say why, for the requester." in htmx.content.decode()
    assert plain.status_code == 422
    assert "Say why, for the requester." in plain.content.decode()
    request.refresh_from_db()
    assert request.state == RequestState.PENDING


def test_htmx_refusal_comes_back_on_the_card(brand_a, goods, people):
    request = adjust(goods, -60, people.ops).approval

    response = brand_client(brand_a, people.ops).post(
        f"/approvals/{request.pk}/decide/", {"verdict": "approve"}, HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 200
    assert "You cannot decide a request you made yourself." in response.content.decode()
    request.refresh_from_db()
    assert request.state == RequestState.PENDING


def test_bulk_approve_approves_what_it_may_and_reports_the_rest(brand_a, goods, people):
    mine = adjust(goods, -55, people.owner).approval
    others = [adjust(goods, -60 - i, people.warehouse).approval for i in range(3)]
    client = brand_client(brand_a, people.owner)

    response = client.post(
        "/approvals/bulk-approve/",
        {"ids": [r.pk for r in others] + [mine.pk, 987654], "comment": "Month-end write-offs"},
        follow=True,
    )

    assert response.status_code == 200
    body = response.content.decode()
    assert "Approved 3 requests." in body
    assert f"Request #{mine.pk} not approved: You cannot decide a request you made yourself." in (
        body
    )
    assert "Request #987654 not approved: This request does not exist." in body
    states = dict(ApprovalRequest.objects.values_list("pk", "state"))
    assert [states[r.pk] for r in others] == ["approved"] * 3
    assert states[mine.pk] == "pending"
    assert StockMovement.objects.filter(sku=goods.sku, kind="adjustment").count() == 3
    assert set(
        ActivityEntry.objects.filter(action="approval.approved").values_list(
            "changes__comment", flat=True
        )
    ) == {"Month-end write-offs"}


def test_detail_page_comments_and_cancel(brand_a, goods, people):
    outcome = adjust(goods, -60, people.warehouse)
    request = outcome.approval
    requester = brand_client(brand_a, people.warehouse)

    page = requester.get(f"/approvals/{request.pk}/")
    requester.post(f"/approvals/{request.pk}/comment/", {"body": "Pallet photo in Drive"})
    viewer = brand_client(brand_a, people.viewer)
    refused = viewer.post(f"/approvals/{request.pk}/cancel/")
    cancelled = requester.post(f"/approvals/{request.pk}/cancel/", follow=True)

    assert page.status_code == 200
    assert "Cancel request" in page.content.decode()
    assert "The Warehouse role cannot decide stock adjustment requests" in page.content.decode()
    assert list(ApprovalComment.objects.values_list("author", "body")) == [
        (people.warehouse.pk, "Pallet photo in Drive")
    ]
    assert refused.status_code == 403
    assert "Request cancelled." in cancelled.content.decode()
    request.refresh_from_db()
    assert request.state == RequestState.CANCELLED
    assert outcome.request.__class__.objects.get(pk=outcome.request.pk).state == "cancelled"


def test_email_preference_is_per_person(brand_a, people):
    client = brand_client(brand_a, people.ops)

    client.post("/approvals/preferences/", {"email": "digest"})
    page = client.get("/approvals/")

    assert ApproverPreference.objects.get(user=people.ops).email == "digest"
    assert page.context["preference"].initial == {"email": "digest"}
    assert ActivityEntry.objects.filter(action="approval_preference.changed").count() == 1


def test_settings_page_is_for_policy_managers_and_shows_the_secret(brand_a, people):
    owner = brand_client(brand_a, people.owner)

    page = owner.get("/approvals/settings/")
    rotated = owner.post("/approvals/settings/", {"action": "rotate"})
    saved = owner.post("/approvals/settings/", {"action": "save", "webhook_url": "not a url"})

    assert page.status_code == 200
    assert page["Cache-Control"] == "no-store"
    secret = page.context["secret"]
    assert secret in page.content.decode()
    assert rotated.status_code == 302
    assert approvals.webhook_signing_secret() != secret
    assert saved.status_code == 422
    assert brand_client(brand_a, people.ops).get("/approvals/settings/").status_code == 403
