"""Purchasing pages: suppliers, PO create/detail/receive, PDF, permissions."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django_tenants.utils import schema_context

from audit.models import ActivityEntry
from inventory.models import StockBalance
from purchasing import services
from purchasing.models import POState, PurchaseOrder, Supplier, SupplierSKU
from tests.conftest import brand_client
from tests.factories import SKUFactory, WarehouseFactory
from tests.purchasing.factories import SupplierFactory, SupplierSKUFactory, make_po
from tests.purchasing.support import deliver_emails


@pytest.fixture
def goods(brand_a):
    with schema_context(brand_a.schema_name):
        supplier = SupplierFactory(code="ACME", name="Acme Mills")
        sku = SKUFactory(code="TEE-1")
        SupplierSKUFactory(supplier=supplier, sku=sku, unit_cost=Decimal("4.00"), moq=50)
        warehouse = WarehouseFactory(code="MAIN")
        return supplier, sku, warehouse


def test_a_buyer_adds_a_supplier_and_its_sku(brand_a, people):
    client = brand_client(brand_a, people.buyer)
    response = client.post(
        "/purchasing/suppliers/new/",
        {
            "code": "KNIT",
            "name": "Knit Co",
            "currency": "usd",
            "quoted_lead_time_days": 21,
            "is_active": "on",
            "email": "po@knit.example",
        },
    )
    assert response.status_code == 302
    with schema_context(brand_a.schema_name):
        supplier = Supplier.objects.get(code="KNIT")
        assert supplier.currency == "USD"
        SKUFactory(code="CAP-9")

    response = client.post(
        f"/purchasing/suppliers/{supplier.pk}/",
        {"sku": "cap-9", "unit_cost": "2.50", "moq": 12, "case_pack": 6, "is_preferred": "on"},
    )
    assert response.status_code == 302
    with schema_context(brand_a.schema_name):
        row = SupplierSKU.objects.get(supplier=supplier)
        assert (row.sku.code, row.unit_cost, row.case_pack, row.is_preferred) == (
            "CAP-9",
            Decimal("2.5000"),
            6,
            True,
        )
    page = client.get(f"/purchasing/suppliers/{supplier.pk}/")
    assert b"CAP-9" in page.content and b"Scorecard" in page.content


def test_editing_a_supplier_keeps_its_code_and_logs_the_change(brand_a, people, goods):
    supplier, _, _ = goods
    client = brand_client(brand_a, people.buyer)

    response = client.post(
        f"/purchasing/suppliers/{supplier.pk}/edit/",
        {
            "code": "ACME",
            "name": "Acme Mills Ltd",
            "currency": "USD",
            "quoted_lead_time_days": 30,
            "is_active": "on",
        },
    )

    assert response.status_code == 302
    with schema_context(brand_a.schema_name):
        supplier.refresh_from_db()
        assert (supplier.name, supplier.quoted_lead_time_days) == ("Acme Mills Ltd", 30)
        entry = ActivityEntry.objects.get(action="supplier.updated")
        assert entry.changes["quoted_lead_time_days"] == ["14", "30"]


def test_duplicate_supplier_codes_are_shown_on_the_field(brand_a, people, goods):
    client = brand_client(brand_a, people.buyer)
    response = client.post(
        "/purchasing/suppliers/new/",
        {"code": "acme", "name": "Again", "currency": "USD", "quoted_lead_time_days": 5},
    )
    assert response.status_code == 422
    assert "Another supplier has this code." in response.content.decode()


def test_a_buyer_drafts_and_submits_a_po_from_the_pages(brand_a, people, goods):
    supplier, sku, warehouse = goods
    client = brand_client(brand_a, people.buyer)

    response = client.post(
        "/purchasing/new/",
        {
            "supplier": supplier.pk,
            "warehouse": warehouse.pk,
            "line_sku": ["TEE-1"],
            "line_qty": ["40"],
            "note": "Spring restock",
        },
    )

    assert response.status_code == 302
    with schema_context(brand_a.schema_name):
        po = PurchaseOrder.objects.get()
    detail = client.get(f"/purchasing/{po.pk}/").content.decode()
    assert po.number in detail and "below the supplier&#x27;s minimum order of 50" in detail

    response = client.post(f"/purchasing/{po.pk}/submit/")
    assert response.status_code == 302
    with schema_context(brand_a.schema_name):
        po.refresh_from_db()
    assert po.state == POState.SENT  # 160.00: under the auto-approve ceiling
    detail = client.get(f"/purchasing/{po.pk}/").content.decode()
    assert "Auto-approved" in detail and "sent it to the supplier" in detail


def test_a_po_form_with_an_unknown_sku_shows_the_error(brand_a, people, goods):
    supplier, _, warehouse = goods
    client = brand_client(brand_a, people.buyer)
    response = client.post(
        "/purchasing/new/",
        {
            "supplier": supplier.pk,
            "warehouse": warehouse.pk,
            "line_sku": ["NOPE"],
            "line_qty": ["1"],
        },
    )
    assert response.status_code == 422
    assert "No SKU has the code NOPE." in response.content.decode()


def test_warehouse_staff_receive_but_cannot_draft(brand_a, people, goods):
    supplier, sku, warehouse = goods
    with schema_context(brand_a.schema_name):
        po = services.submit(
            make_po((sku, 10), supplier=supplier, warehouse=warehouse, actor=people.buyer),
            actor=people.buyer,
        )
        line = po.lines.get()
    client = brand_client(brand_a, people.warehouse)

    assert client.get("/purchasing/new/").status_code == 403
    assert client.post(f"/purchasing/{po.pk}/cancel/", {"reason": "x"}).status_code == 403
    form = client.get(f"/purchasing/{po.pk}/receive/")
    assert form.status_code == 200 and f"qty_{line.pk}" in form.content.decode()

    short = client.post(f"/purchasing/{po.pk}/receive/", {f"qty_{line.pk}": "6"})
    assert short.status_code == 422 and "say why" in short.content.decode()
    done = client.post(
        f"/purchasing/{po.pk}/receive/",
        {f"qty_{line.pk}": "6", f"reason_{line.pk}": "backordered", "operation_key": "k1"},
    )
    again = client.post(
        f"/purchasing/{po.pk}/receive/",
        {f"qty_{line.pk}": "6", f"reason_{line.pk}": "backordered", "operation_key": "k1"},
    )
    assert (done.status_code, again.status_code) == (302, 302)
    with schema_context(brand_a.schema_name):
        balance = StockBalance.objects.get(sku=sku, warehouse=warehouse, status="sellable")
        assert balance.quantity == 6
        po.refresh_from_db()
        assert po.state == POState.PARTIALLY_RECEIVED


def test_viewers_see_but_cannot_change(brand_a, people, goods):
    supplier, sku, warehouse = goods
    with schema_context(brand_a.schema_name):
        po = make_po((sku, 10), supplier=supplier, warehouse=warehouse, actor=people.buyer)
    client = brand_client(brand_a, people.viewer)

    assert client.get("/purchasing/").status_code == 200
    assert client.get("/purchasing/suppliers/").status_code == 200
    assert client.get("/purchasing/scorecards/").status_code == 200
    page = client.get(f"/purchasing/{po.pk}/").content.decode()
    assert "Submit</button>" not in page
    assert client.post(f"/purchasing/{po.pk}/submit/").status_code == 403
    assert client.get(f"/purchasing/{po.pk}/receive/").status_code == 403
    with schema_context(brand_a.schema_name):
        po.refresh_from_db()
        assert po.state == POState.DRAFT


def test_an_unknown_action_is_a_404_like_an_unknown_order(brand_a, people, goods):
    supplier, sku, warehouse = goods
    with schema_context(brand_a.schema_name):
        po = make_po((sku, 10), supplier=supplier, warehouse=warehouse, actor=people.buyer)
    client = brand_client(brand_a, people.buyer)

    assert client.post(f"/purchasing/{po.pk}/explode/").status_code == 404
    assert client.post(f"/purchasing/{po.pk + 1000}/explode/").status_code == 404
    with schema_context(brand_a.schema_name):
        po.refresh_from_db()
        assert po.state == POState.DRAFT


def test_editing_lines_and_rescheduling_from_the_pages(brand_a, people, goods):
    supplier, sku, warehouse = goods
    with schema_context(brand_a.schema_name):
        po = make_po((sku, 10), supplier=supplier, warehouse=warehouse, actor=people.buyer)
    client = brand_client(brand_a, people.buyer)

    response = client.post(
        f"/purchasing/{po.pk}/edit/", {"line_sku": ["TEE-1"], "line_qty": ["60"]}
    )
    assert response.status_code == 302
    response = client.post(
        f"/purchasing/{po.pk}/reschedule/", {"expected_on": "2027-01-15", "reason": "Holidays"}
    )
    assert response.status_code == 302
    with schema_context(brand_a.schema_name):
        po.refresh_from_db()
        assert (po.version, str(po.expected_on)) == (2, "2027-01-15")
        assert po.lines.get().quantity == 60


def test_the_pdf_names_brand_supplier_ship_to_and_lines(brand_a, people, goods):
    from io import BytesIO

    from pypdf import PdfReader

    supplier, sku, warehouse = goods
    with schema_context(brand_a.schema_name):
        warehouse.address_line1 = "12 Dock Street"
        warehouse.city = "Oakland"
        warehouse.save()
        po = make_po(
            (sku, 75), supplier=supplier, warehouse=warehouse, actor=people.buyer, note="Rush"
        )
    response = brand_client(brand_a, people.viewer).get(f"/purchasing/{po.pk}/pdf/")

    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(BytesIO(response.content)).pages)
    for expected in (
        "Alpha",
        po.number,
        "Acme Mills (ACME)",
        "12 Dock Street",
        "Oakland",
        "TEE-1",
        "300.00 USD",
        "Net 30",
        po.expected_on.strftime("%d %b %Y"),
        "Note: Rush",
    ):
        assert expected in text, expected


def test_other_brands_cannot_see_alpha_purchase_orders(brand_a, brand_b, people, owner_b, goods):
    supplier, sku, warehouse = goods
    with schema_context(brand_a.schema_name):
        po = make_po((sku, 10), supplier=supplier, warehouse=warehouse, actor=people.buyer)
    client = brand_client(brand_b, owner_b)
    assert client.get(f"/purchasing/{po.pk}/").status_code == 404


def test_a_sent_po_can_be_emailed_again(brand_a, people, goods, mails):
    supplier, sku, warehouse = goods
    with schema_context(brand_a.schema_name):
        po = services.submit(
            make_po((sku, 10), supplier=supplier, warehouse=warehouse, actor=people.buyer),
            actor=people.buyer,
        )
        assert deliver_emails() == ["done"]
    client = brand_client(brand_a, people.buyer)
    assert "Email again" in client.get(f"/purchasing/{po.pk}/").content.decode()

    response = client.post(f"/purchasing/{po.pk}/resend/")
    with schema_context(brand_a.schema_name):
        assert deliver_emails() == ["done"]

    assert response.status_code == 302
    assert [m.to for m in mails] == [[supplier.email], [supplier.email]]
    page = client.get(f"/purchasing/{po.pk}/").content.decode()
    assert "asked to email it to the supplier again" in page
    assert page.count('data-email-state="sent"') == 2
    assert (
        brand_client(brand_a, people.warehouse).post(f"/purchasing/{po.pk}/resend/").status_code
        == 403
    )


def test_the_dashboard_panel_counts_what_needs_a_look(brand_a, people, goods):
    supplier, sku, warehouse = goods
    client = brand_client(brand_a, people.viewer)
    assert 'id="panel-purchase_orders"' not in client.get("/").content.decode()
    with schema_context(brand_a.schema_name):
        late = services.submit(
            make_po((sku, 1), supplier=supplier, warehouse=warehouse, actor=people.buyer),
            actor=people.buyer,
        )
        PurchaseOrder.objects.filter(pk=late.pk).update(expected_on="2020-01-01")
        make_po((sku, 2), supplier=supplier, warehouse=warehouse, actor=people.buyer)

    page = client.get("/").content.decode()

    assert 'id="panel-purchase_orders"' in page
    assert "1 sent order past the expected date" in page
    assert "1 draft not submitted" in page and "waiting for approval" not in page


def test_every_page_renders_for_an_owner_in_every_state(brand_a, owner_a, people, goods):
    supplier, sku, warehouse = goods
    with schema_context(brand_a.schema_name):
        draft = make_po((sku, 10), supplier=supplier, warehouse=warehouse, actor=people.buyer)
        pending = services.submit(
            make_po((sku, 500), supplier=supplier, warehouse=warehouse, actor=people.buyer),
            actor=people.buyer,
        )
        partial = services.submit(
            make_po((sku, 10), supplier=supplier, warehouse=warehouse, actor=people.buyer),
            actor=people.buyer,
        )
        line = partial.lines.get()
        services.receive(
            partial, quantities={line.pk: 3}, reasons={line.pk: "damaged"}, actor=people.buyer
        )
        waiting = services.current_request(pending)
    client = brand_client(brand_a, owner_a)

    pages = {
        "/purchasing/": ["PO-000001", "PO-000003"],
        "/purchasing/new/": ["Save draft"],
        f"/purchasing/{draft.pk}/": ["Submit</button>", "Edit lines", "Cancel order"],
        f"/purchasing/{draft.pk}/edit/": ['value="TEE-1"', 'value="10"'],
        f"/purchasing/{pending.pk}/": ["Pending approval", f"Request #{waiting.pk}"],
        f"/purchasing/{partial.pk}/": ["Partially received", "Close short", "Damaged"],
        f"/purchasing/{partial.pk}/receive/": [f'name="qty_{line.pk}"'],
        "/purchasing/suppliers/": ["Acme Mills"],
        f"/purchasing/suppliers/{supplier.pk}/": ["TEE-1", "Last 90 days"],
        f"/purchasing/suppliers/{supplier.pk}/edit/": ['value="ACME"'],
        "/purchasing/scorecards/?window=90": ["Acme Mills"],
    }
    for url, expected in pages.items():
        response = client.get(url)
        assert response.status_code == 200, url
        for text in expected:
            assert text in response.content.decode(), (url, text)
