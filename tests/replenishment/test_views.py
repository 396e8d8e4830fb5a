"""Replenishment pages and API: the board groups by state, one click drafts a PO (HTMX
swaps the row), settings, the dashboard panel, and who may do what."""

from __future__ import annotations

import json

import pytest

from accounts.roles import Role
from accounts.services import create_api_key
from purchasing.models import PurchaseOrder
from replenishment import services
from replenishment.models import Recommendation, ReplenishmentSettings
from tests.conftest import brand_client, make_user
from tests.replenishment.helpers import forecast, history, stocked

pytestmark = pytest.mark.usefixtures("alpha")


@pytest.fixture
def as_role(brand_a):
    def client_for(role: str):
        return brand_client(brand_a, make_user(brand_a, role=role))

    return client_for


@pytest.fixture
def planned(today):
    """Three SKUs: one accelerating, one healthy, one without supplier (escalate)."""
    fast = stocked(on_hand=400, code="FAST-1", cost="0.10")
    history(fast.sku, today, [10] * 21 + [20] * 7)
    forecast(fast.sku, today, mean=10)
    calm = stocked(on_hand=150, code="CALM-1", cost="0.10")
    history(calm.sku, today, [10] * 56)
    forecast(calm.sku, today, mean=10, spread=2)
    orphan = stocked(on_hand=500, code="ORPH-1", with_supplier=False)
    history(orphan.sku, today, [10] * 28)
    forecast(orphan.sku, today, mean=10)
    services.plan(today=today)
    return {
        "fast": Recommendation.objects.get(sku=fast.sku),
        "calm": Recommendation.objects.get(sku=calm.sku),
        "orphan": Recommendation.objects.get(sku=orphan.sku),
    }


def test_board_groups_rows_by_state_with_their_reasons(planned, as_role):
    response = as_role(Role.VIEWER).get("/replenishment/")

    assert response.status_code == 200
    sections = {s["state"]: s for s in response.context["sections"]}
    assert [s["state"] for s in response.context["sections"]] == [
        "accelerate",
        "brake",
        "escalate",
        "healthy",
    ]
    codes = {
        state: [row.sku.code for g in section["groups"] for row in g["rows"]]
        for state, section in sections.items()
    }
    assert codes == {
        "accelerate": ["FAST-1"],
        "brake": [],
        "escalate": ["ORPH-1"],
        "healthy": ["CALM-1"],
    }
    body = response.content.decode()
    assert planned["fast"].reason in body
    # a viewer sees no buttons
    assert "Create draft PO" not in body


def test_counts_cover_every_row_of_a_state_and_of_a_supplier_group(today, as_role):
    first = stocked(on_hand=150, code="CALM-1", cost="0.10")
    rows = [first] + [
        stocked(on_hand=150, code=f"CALM-{i}", cost="0.10", supplier=first.supplier) for i in (2, 3)
    ]
    for row in rows:
        history(row.sku, today, [10] * 56)
        forecast(row.sku, today, mean=10, spread=2)
    services.plan(today=today)
    assert Recommendation.objects.filter(state="healthy", suggested_quantity__gt=0).count() == 3

    response = as_role(Role.BUYER).get("/replenishment/")

    healthy = {s["state"]: s for s in response.context["sections"]}["healthy"]
    assert healthy["count"] == 3
    assert ("healthy", "Healthy", 3) in response.context["tiles"]
    (group,) = healthy["groups"]
    assert (len(group["rows"]), group["orderable"]) == (3, 3)
    assert f"Create draft POs for {first.supplier.code} (3)" in response.content.decode()


def test_one_click_creates_a_draft_po_and_swaps_the_row(planned, as_role):
    buyer = as_role(Role.BUYER)
    rec = planned["calm"]

    response = buyer.post(
        f"/replenishment/recommendations/{rec.pk}/create-po/", HTTP_HX_REQUEST="true"
    )

    body = response.content.decode()
    assert body.lstrip().startswith(f'<tr id="rec-{rec.pk}">')
    po = PurchaseOrder.objects.get()
    assert f"{po.number} created" in body
    # the supplier group's header comes along out of band: nothing left to order there
    assert f'id="group-head-healthy-{rec.supplier_id}" hx-swap-oob="true"' in body
    assert "Create draft POs for" not in body
    assert po.source == "replenishment"
    rec.refresh_from_db()
    assert (rec.status, rec.purchase_order_id) == ("acted", po.pk)
    # clicking again explains instead of drafting twice
    again = buyer.post(
        f"/replenishment/recommendations/{rec.pk}/create-po/", HTTP_HX_REQUEST="true"
    )
    assert "already acted on" in again.content.decode()
    assert PurchaseOrder.objects.count() == 1


def test_supplier_group_button_drafts_for_the_whole_group(planned, as_role):
    fast = planned["fast"]
    response = as_role(Role.BUYER).post(
        f"/replenishment/suppliers/{fast.supplier_id}/create-pos/",
        {"day": str(fast.day), "state": "accelerate"},
    )
    assert response.status_code == 302
    fast.refresh_from_db()
    assert fast.status == "acted"
    assert PurchaseOrder.objects.get().lines.get().quantity == fast.suggested_quantity


def test_viewers_may_not_act_and_nothing_changes(planned, as_role):
    viewer = as_role(Role.VIEWER)
    rec = planned["calm"]
    assert viewer.post(f"/replenishment/recommendations/{rec.pk}/create-po/").status_code == 403
    assert viewer.post(f"/replenishment/recommendations/{rec.pk}/dismiss/").status_code == 403
    assert viewer.post("/replenishment/plan/").status_code == 403
    rec.refresh_from_db()
    assert rec.status == "open"
    assert not PurchaseOrder.objects.exists()


def test_settings_page_saves_percentages(as_role):
    buyer = as_role(Role.BUYER)
    assert buyer.get("/replenishment/settings/").status_code == 200
    response = buyer.post(
        "/replenishment/settings/",
        {
            "accelerate_threshold": "20",
            "brake_threshold": "25",
            "default_review_period_days": "14",
            "transfers_enabled": "on",
            "transfer_min_quantity": "5",
            "transfer_warehouse_kinds": ["in_house"],
        },
    )
    assert response.status_code == 302
    row = ReplenishmentSettings.current()
    assert (str(row.accelerate_threshold), str(row.brake_threshold)) == ("0.200", "0.250")
    assert (row.default_review_period_days, row.transfer_warehouse_kinds) == (14, ["in_house"])
    bad = buyer.post("/replenishment/settings/", {"accelerate_threshold": "0"})
    assert bad.status_code == 422
    assert as_role(Role.VIEWER).post("/replenishment/settings/", {}).status_code == 403


def test_dashboard_panel_lists_the_plans_exceptions(today, as_role):
    short = stocked(on_hand=30, code="SHORT-1")
    history(short.sku, today, [10] * 28)
    forecast(short.sku, today, mean=10)
    services.plan(today=today)

    body = as_role(Role.BUYER).get("/").content.decode()

    assert "Replenishment exceptions" in body
    assert "SHORT-1 at" in body and "runs out around" in body


def test_the_panel_is_hidden_without_exceptions(as_role):
    assert "Replenishment exceptions" not in as_role(Role.BUYER).get("/").content.decode()


# --- API -----------------------------------------------------------------------------------


def test_api_lists_filters_and_creates_a_po(planned, brand_a, as_role, owner_a):
    buyer = as_role(Role.BUYER)
    listed = buyer.get("/api/v1/replenishment/recommendations/", {"state": "accelerate"}).json()
    assert [r["sku_code"] for r in listed["results"]] == ["FAST-1"]
    row = listed["results"][0]
    assert row["reorder_point"] == planned["fast"].reorder_point
    assert row["lead_time_source"] == "quoted"

    created = buyer.post(
        f"/api/v1/replenishment/recommendations/{row['id']}/create-po/",
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k-1",
    )
    assert created.status_code == 201
    po = PurchaseOrder.objects.get()
    assert created.json()["number"] == po.number
    replay = buyer.post(
        f"/api/v1/replenishment/recommendations/{row['id']}/create-po/",
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k-1",
    )
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true"
    refused = buyer.post(
        f"/api/v1/replenishment/recommendations/{row['id']}/create-po/",
        content_type="application/json",
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "nothing_to_order"
    assert PurchaseOrder.objects.count() == 1

    read_key = create_api_key(actor=owner_a, name="bi", scope="read").secret
    denied = brand_client(brand_a).post(
        f"/api/v1/replenishment/recommendations/{planned['calm'].pk}/create-po/",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Api-Key {read_key}",
    )
    assert denied.status_code == 403


def test_api_settings_and_bad_filters(as_role):
    buyer = as_role(Role.BUYER)
    assert buyer.get("/api/v1/replenishment/settings/current/").json()["brake_threshold"] == (
        "0.300"
    )
    changed = buyer.patch(
        "/api/v1/replenishment/settings/current/",
        json.dumps({"brake_threshold": "0.4"}),
        content_type="application/json",
    )
    assert changed.status_code == 200 and changed.json()["brake_threshold"] == "0.400"
    bad = buyer.get("/api/v1/replenishment/recommendations/", {"state": "sideways"})
    assert bad.status_code == 400
    assert bad.json()["error"]["fields"]["state"][0]["code"] == "invalid_choice"
    viewer = as_role(Role.VIEWER)
    denied = viewer.patch(
        "/api/v1/replenishment/settings/current/",
        json.dumps({"brake_threshold": "0.1"}),
        content_type="application/json",
    )
    assert denied.status_code == 403
    assert str(ReplenishmentSettings.current().brake_threshold) == "0.400"


def test_api_accepts_a_transfer_suggestion(today, as_role):
    from inventory import services as stock
    from tests.factories import WarehouseFactory

    east, west = WarehouseFactory(code="E1", priority=1), WarehouseFactory(code="W1", priority=2)
    item = stocked(on_hand=3000, warehouse=east)
    stock.receive(sku=item.sku, warehouse=west, quantity=5)
    history(item.sku, today, [5] * 56, warehouse=east)
    history(item.sku, today, [5] * 56, warehouse=west)
    forecast(item.sku, today, mean=10)
    services.plan(today=today)
    ops = as_role(Role.OPS_MANAGER)
    [suggestion] = ops.get("/api/v1/replenishment/transfer-suggestions/").json()["results"]

    accepted = ops.post(
        f"/api/v1/replenishment/transfer-suggestions/{suggestion['id']}/accept/",
        content_type="application/json",
    )

    assert accepted.status_code == 200
    assert accepted.json()["status"] == "accepted" and accepted.json()["transfer"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/replenishment/recommendations/987654/",
        "/api/v1/replenishment/recommendations/987654/create-po/",
        "/api/v1/replenishment/recommendations/987654/pull-forward/",
        "/api/v1/replenishment/recommendations/987654/slow-down/",
        "/api/v1/replenishment/recommendations/987654/dismiss/",
        "/api/v1/replenishment/transfer-suggestions/987654/accept/",
        "/api/v1/replenishment/transfer-suggestions/987654/dismiss/",
        "/api/v1/replenishment/settings/987654/",
        "/replenishment/recommendations/987654/create-po/",
        "/replenishment/transfers/987654/accept/",
    ],
)
def test_unknown_ids_answer_404(path, brand_a, owner_a):
    client = brand_client(brand_a, owner_a)
    method = client.get if path.endswith("/987654/") and "api" in path else client.post
    assert method(path, {}, content_type="application/json").status_code == 404
