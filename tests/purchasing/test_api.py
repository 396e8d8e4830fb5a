"""Purchasing over the REST API: suppliers, supplier SKUs, PO lifecycle, errors, keys."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django_tenants.utils import schema_context

from accounts.services import create_api_key
from inventory.models import StockMovement
from purchasing import services
from purchasing.models import POState, PurchaseOrder, Receipt, Supplier
from tests.conftest import brand_client
from tests.factories import SKUFactory, WarehouseFactory
from tests.purchasing.factories import SupplierFactory, SupplierSKUFactory, make_po

JSON = "application/json"


@pytest.fixture(autouse=True)
def _generous_rate_limit(settings):
    settings.API_RATE_LIMIT = "100000/min"


@pytest.fixture
def setup(brand_a):
    with schema_context(brand_a.schema_name):
        supplier = SupplierFactory(code="ACME")
        sku = SKUFactory(code="TEE-1")
        SupplierSKUFactory(supplier=supplier, sku=sku, unit_cost=Decimal("10.00"))
        warehouse = WarehouseFactory()
    return supplier, sku, warehouse


def post(client, url, body=None, **headers):
    return client.post(url, body or {}, content_type=JSON, **headers)


def test_suppliers_crud_and_duplicate_code(brand_a, people):
    client = brand_client(brand_a, people.buyer)

    created = post(
        client,
        "/api/v1/suppliers/",
        {"code": "KNIT", "name": "Knit Co", "currency": "EUR", "quoted_lead_time_days": 30},
    )
    assert created.status_code == 201, created.json()
    pk = created.json()["id"]
    again = post(client, "/api/v1/suppliers/", {"code": "knit", "name": "Again"})
    assert again.status_code == 400
    assert again.json()["error"]["fields"]["code"][0]["code"] == "duplicate_code"

    patched = client.patch(f"/api/v1/suppliers/{pk}/", {"is_active": False}, content_type=JSON)
    assert patched.status_code == 200 and patched.json()["is_active"] is False
    listed = client.get("/api/v1/suppliers/?is_active=false").json()["results"]
    assert [s["code"] for s in listed] == ["KNIT"]
    with schema_context(brand_a.schema_name):
        used = SupplierFactory()
        make_po((SKUFactory(), 1, Decimal("1")), supplier=used)
    in_use = client.delete(f"/api/v1/suppliers/{used.pk}/")
    assert in_use.status_code == 409 and in_use.json()["error"]["code"] == "in_use"
    assert client.delete(f"/api/v1/suppliers/{pk}/").status_code == 204
    with schema_context(brand_a.schema_name):
        assert not Supplier.objects.filter(pk=pk).exists()


def test_supplier_skus_create_update_and_viewers_cannot(brand_a, people, setup):
    supplier, _, _ = setup
    with schema_context(brand_a.schema_name):
        cap = SKUFactory(code="CAP-1")
    buyer = brand_client(brand_a, people.buyer)

    created = post(
        buyer,
        "/api/v1/supplier-skus/",
        {"supplier": supplier.pk, "sku": cap.pk, "unit_cost": "2.50", "moq": 24, "case_pack": 12},
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["currency"], body["moq"], body["sku_code"]) == ("USD", 24, "CAP-1")
    patched = buyer.patch(f"/api/v1/supplier-skus/{body['id']}/", {"moq": 0}, content_type=JSON)
    assert patched.status_code == 400
    viewer = brand_client(brand_a, people.viewer)
    refused = post(
        viewer, "/api/v1/supplier-skus/", {"supplier": supplier.pk, "sku": cap.pk, "unit_cost": "1"}
    )
    assert refused.status_code == 403


def test_po_lifecycle_over_the_api(brand_a, people, setup):
    supplier, sku, warehouse = setup
    buyer = brand_client(brand_a, people.buyer)

    created = post(
        buyer,
        "/api/v1/purchase-orders/",
        {
            "supplier": supplier.pk,
            "warehouse": warehouse.pk,
            "lines": [{"sku": sku.pk, "quantity": 12}],
        },
        HTTP_IDEMPOTENCY_KEY="draft-1",
    )
    replay = post(
        buyer,
        "/api/v1/purchase-orders/",
        {
            "supplier": supplier.pk,
            "warehouse": warehouse.pk,
            "lines": [{"sku": sku.pk, "quantity": 12}],
        },
        HTTP_IDEMPOTENCY_KEY="draft-1",
    )
    assert created.status_code == 201, created.json()
    assert replay.json()["id"] == created.json()["id"]
    po = created.json()
    assert (po["state"], po["total"], po["number"]) == ("draft", "120.0000", "PO-000001")

    early = post(
        buyer,
        f"/api/v1/purchase-orders/{po['id']}/receive/",
        {"lines": [{"line": po["lines"][0]["id"], "quantity": 1}]},
    )
    assert early.status_code == 409 and early.json()["error"]["code"] == "not_receivable"

    submitted = post(buyer, f"/api/v1/purchase-orders/{po['id']}/submit/")
    assert submitted.status_code == 200 and submitted.json()["state"] == "sent"
    assert submitted.json()["approval_request"] is not None
    twice = post(buyer, f"/api/v1/purchase-orders/{po['id']}/submit/")
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "not_draft"

    line = po["lines"][0]["id"]
    warehouse_client = brand_client(brand_a, people.warehouse)
    missing_reason = post(
        warehouse_client,
        f"/api/v1/purchase-orders/{po['id']}/receive/",
        {"lines": [{"line": line, "quantity": 5}]},
    )
    assert missing_reason.status_code == 400
    assert missing_reason.json()["error"]["fields"][f"line_{line}"][0]["code"] == "reason_required"
    body = {"lines": [{"line": line, "quantity": 5, "reason": "backordered"}]}
    first = post(
        warehouse_client,
        f"/api/v1/purchase-orders/{po['id']}/receive/",
        body,
        HTTP_IDEMPOTENCY_KEY="r1",
    )
    second = post(
        warehouse_client,
        f"/api/v1/purchase-orders/{po['id']}/receive/",
        body,
        HTTP_IDEMPOTENCY_KEY="r1",
    )
    assert first.status_code == 201 and first.json()["purchase_order_state"] == "partially_received"
    assert second.json()["id"] == first.json()["id"]
    with schema_context(brand_a.schema_name):
        assert Receipt.objects.count() == 1
        assert StockMovement.objects.filter(sku=sku).count() == 1

    closed = post(
        warehouse_client, f"/api/v1/purchase-orders/{po['id']}/close/", {"reason": "rest cancelled"}
    )
    assert closed.status_code == 200 and closed.json()["state"] == "closed"
    pdf = buyer.get(f"/api/v1/purchase-orders/{po['id']}/pdf/")
    assert pdf.status_code == 200 and pdf.content[:5] == b"%PDF-"


def test_bad_draft_input_is_a_json_error(brand_a, people, setup):
    supplier, sku, warehouse = setup
    with schema_context(brand_a.schema_name):
        bundle = SKUFactory(is_bundle=True)
    buyer = brand_client(brand_a, people.buyer)

    empty = post(
        buyer,
        "/api/v1/purchase-orders/",
        {"supplier": supplier.pk, "warehouse": warehouse.pk, "lines": []},
    )
    assert empty.status_code == 400 and "lines" in empty.json()["error"]["fields"]
    refused = post(
        buyer,
        "/api/v1/purchase-orders/",
        {
            "supplier": supplier.pk,
            "warehouse": warehouse.pk,
            "lines": [{"sku": bundle.pk, "quantity": 1, "unit_cost": "1"}],
        },
    )
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "bundle"
    with schema_context(brand_a.schema_name):
        assert PurchaseOrder.objects.count() == 0


def test_editing_lines_upward_reopens_approval(brand_a, people, setup):
    supplier, sku, warehouse = setup
    buyer = brand_client(brand_a, people.buyer)
    po = post(
        buyer,
        "/api/v1/purchase-orders/",
        {
            "supplier": supplier.pk,
            "warehouse": warehouse.pk,
            "lines": [{"sku": sku.pk, "quantity": 10}],
        },
    ).json()
    post(buyer, f"/api/v1/purchase-orders/{po['id']}/submit/")

    edited = buyer.patch(
        f"/api/v1/purchase-orders/{po['id']}/",
        {"lines": [{"sku": sku.pk, "quantity": 300}]},
        content_type=JSON,
    )

    assert edited.status_code == 200
    assert (edited.json()["state"], edited.json()["version"]) == (POState.PENDING_APPROVAL, 2)


def test_api_keys_read_with_read_scope_and_draft_with_write(brand_a, owner_a, setup):
    supplier, sku, warehouse = setup
    with schema_context(brand_a.schema_name):
        read = create_api_key(actor=owner_a, name="BI", scope="read")
        write = create_api_key(actor=owner_a, name="ERP", scope="write")
    client = brand_client(brand_a)
    body = {
        "supplier": supplier.pk,
        "warehouse": warehouse.pk,
        "lines": [{"sku": sku.pk, "quantity": 1}],
    }

    assert (
        client.get(
            "/api/v1/purchase-orders/", HTTP_AUTHORIZATION=f"Api-Key {read.secret}"
        ).status_code
        == 200
    )
    refused = post(
        client, "/api/v1/purchase-orders/", body, HTTP_AUTHORIZATION=f"Api-Key {read.secret}"
    )
    made = post(
        client, "/api/v1/purchase-orders/", body, HTTP_AUTHORIZATION=f"Api-Key {write.secret}"
    )
    assert (refused.status_code, made.status_code) == (403, 201)
    assert made.json()["created_by_label"].startswith("API key")


def test_other_brands_get_404(brand_a, brand_b, owner_b, people, setup):
    supplier, sku, warehouse = setup
    with schema_context(brand_a.schema_name):
        po = make_po((sku, 1), supplier=supplier, warehouse=warehouse, actor=people.buyer)
    client = brand_client(brand_b, owner_b)
    assert client.get(f"/api/v1/purchase-orders/{po.pk}/").status_code == 404
    assert post(client, f"/api/v1/purchase-orders/{po.pk}/submit/").status_code == 404


def test_purchase_orders_filter_by_state_and_supplier(brand_a, people, setup):
    supplier, sku, warehouse = setup
    with schema_context(brand_a.schema_name):
        draft = make_po((sku, 1), supplier=supplier, warehouse=warehouse, actor=people.buyer)
        sent = services.submit(
            make_po((SKUFactory(), 1, Decimal("5")), supplier=supplier, actor=people.buyer),
            actor=people.buyer,
        )
        other = make_po((SKUFactory(), 1, Decimal("5")), actor=people.buyer)
    client = brand_client(brand_a, people.viewer)

    def ids(query: str) -> list[int]:
        return [
            po["id"] for po in client.get(f"/api/v1/purchase-orders/?{query}").json()["results"]
        ]

    assert ids("state=sent") == [sent.pk]
    assert ids(f"supplier={supplier.pk}") == [sent.pk, draft.pk]
    assert ids("state=draft") == [other.pk, draft.pk]
    bad = client.get("/api/v1/purchase-orders/?state=shipped")
    assert bad.status_code == 400
