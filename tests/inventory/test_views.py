"""Stock pages: actions, transfers, holds, counts, warehouses, and who may do what."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.roles import Role
from audit.models import ActivityEntry
from catalog import services as catalog
from inventory import services
from inventory.models import (
    CountLine,
    CycleCount,
    Reservation,
    StockBalance,
    StockEvent,
    StockMovement,
    Transfer,
    TransferLine,
    Warehouse,
)
from tests.conftest import brand_client, make_user
from tests.factories import SKUFactory, WarehouseFactory

pytestmark = pytest.mark.usefixtures("in_alpha")


@pytest.fixture
def as_role(brand_a):
    def client_for(role: str):
        return brand_client(brand_a, make_user(brand_a, role=role))

    return client_for


@pytest.fixture
def stocked():
    """MUG-1 (unit cost 4.00 USD) with 10 sellable at EAST; WEST empty."""
    # A cost keeps small adjustments under the default approval threshold; an uncosted
    # SKU's adjustments wait for approval (tests/approvals covers that).
    sku = SKUFactory(code="MUG-1", title="Camp mug", unit_cost=Decimal("4.00"), cost_currency="USD")
    east, west = WarehouseFactory(code="EAST"), WarehouseFactory(code="WEST")
    services.receive(sku=sku, warehouse=east, quantity=10)
    return sku, east, west


def balance(sku, warehouse, status="sellable") -> tuple[int, int]:
    row = StockBalance.objects.filter(sku=sku, warehouse=warehouse, status=status).first()
    return (row.quantity, row.reserved) if row else (0, 0)


def snapshot() -> list:
    return [
        list(
            StockBalance.objects.order_by("pk").values_list(
                "pk", "sku_id", "warehouse_id", "status", "quantity", "reserved"
            )
        ),
        StockMovement.objects.count(),
        StockEvent.objects.count(),
        list(Reservation.objects.order_by("pk").values_list("pk", "status")),
        list(Transfer.objects.order_by("pk").values_list("pk", "status")),
        list(TransferLine.objects.order_by("pk").values_list("pk", "received_quantity")),
        list(CycleCount.objects.order_by("pk").values_list("pk", "status")),
        list(CountLine.objects.order_by("pk").values_list("pk", "counted", "posted_variance")),
        list(Warehouse.objects.order_by("pk").values_list("pk", "code", "name", "is_active")),
    ]


# --- Stock pages ----------------------------------------------------------------------------


def test_stock_page_lists_balances_and_filters_by_htmx(stocked, as_role):
    sku, east, west = stocked
    other = SKUFactory(code="TEE-1")
    services.receive(sku=other, warehouse=west, quantity=4, status="quarantined")
    viewer = as_role(Role.VIEWER)

    full = viewer.get("/inventory/")
    partial = viewer.get("/inventory/", {"status": "quarantined"}, HTTP_HX_REQUEST="true")

    assert [(r.sku.code, r.warehouse.code, r.status) for r in full.context["page"]] == [
        ("MUG-1", "EAST", "sellable"),
        ("TEE-1", "WEST", "quarantined"),
    ]
    assert full.context["totals"][0] == ("sellable", "Sellable", 10)
    body = partial.content.decode()
    assert body.lstrip().startswith('<div id="results">')
    assert "TEE-1" in body and "MUG-1" not in body


def test_stock_pages_load_in_place_and_keep_the_filters(as_role):
    east = WarehouseFactory(code="EAST")
    for i in range(55):
        services.receive(sku=SKUFactory(code=f"MUG-{i:02d}"), warehouse=east, quantity=1)
    viewer = as_role(Role.VIEWER)

    first = viewer.get("/inventory/", {"q": "mug"}).content.decode()
    second = viewer.get("/inventory/", {"q": "mug", "page": "2"}, HTTP_HX_REQUEST="true")

    assert '<div hx-boost="true" hx-target="#results" hx-swap="outerHTML">' in first
    assert 'href="?q=mug&page=2">Next' in first
    body = second.content.decode()
    assert body.lstrip().startswith('<div id="results">')
    assert "<html" not in body
    assert [row.sku.code for row in second.context["page"]] == [
        f"MUG-{i:02d}" for i in range(50, 55)
    ]
    assert "Page 2 of 2" in body


def test_warehouse_role_can_adjust_stock(stocked, as_role):
    sku, east, _ = stocked

    response = as_role(Role.WAREHOUSE).post(
        "/inventory/adjust/",
        {
            "sku": "mug-1",
            "warehouse": east.pk,
            "status": "sellable",
            "quantity": "-3",
            "reason_code": "damaged",
            "note": "Dropped pallet",
        },
    )

    assert response.status_code == 302
    assert response["Location"] == f"/catalog/skus/{sku.pk}/"
    assert balance(sku, east) == (7, 0)
    movement = StockMovement.objects.first()
    assert (movement.kind, movement.quantity, movement.reason_code, movement.note) == (
        "adjustment",
        -3,
        "damaged",
        "Dropped pallet",
    )


def test_adjustment_without_a_reason_shows_inline_error(stocked, as_role):
    sku, east, _ = stocked
    before = snapshot()

    response = as_role(Role.WAREHOUSE).post(
        "/inventory/adjust/",
        {"sku": "MUG-1", "warehouse": east.pk, "status": "sellable", "quantity": "2"},
    )

    assert response.status_code == 422
    assert response.context["form"].errors == {
        "reason_code": ["Choose a reason for the adjustment."]
    }
    assert b'id="id_reason_code-errors"' in response.content
    assert snapshot() == before


def test_adjusting_below_zero_shows_the_available_quantity_on_the_field(stocked, as_role):
    sku, east, _ = stocked
    before = snapshot()

    response = as_role(Role.WAREHOUSE).post(
        "/inventory/adjust/",
        {
            "sku": "MUG-1",
            "warehouse": east.pk,
            "status": "sellable",
            "quantity": "-12",
            "reason_code": "lost",
        },
        HTTP_HX_REQUEST="true",
    )

    # htmx swaps only 2xx responses, so the errors come back as a 200 fragment.
    assert response.status_code == 200
    assert response.context["form"].errors == {
        "quantity": ["Insufficient stock of MUG-1 at EAST (sellable): 10 available, 12 requested."]
    }
    assert response.content.decode().lstrip().startswith('<section class="card narrow"')
    assert snapshot() == before


def test_receive_and_change_status(stocked, as_role):
    sku, east, west = stocked
    client = as_role(Role.WAREHOUSE)

    received = client.post(
        "/inventory/receive/",
        {
            "sku": "MUG-1",
            "warehouse": west.pk,
            "quantity": "5",
            "status": "sellable",
            "reference": "PS-77",
        },
    )
    moved = client.post(
        "/inventory/status/",
        {
            "sku": "MUG-1",
            "warehouse": east.pk,
            "quantity": "2",
            "status": "sellable",
            "to_status": "quarantined",
        },
    )

    assert (received.status_code, moved.status_code) == (302, 302)
    assert balance(sku, west) == (5, 0)
    assert (balance(sku, east), balance(sku, east, "quarantined")) == ((8, 0), (2, 0))
    receipt = StockMovement.objects.filter(kind="receipt", warehouse=west).get()
    assert (receipt.reference_type, receipt.reference_id) == ("document", "PS-77")


def test_stock_forms_refuse_bundles_and_unknown_codes(stocked, as_role):
    cup = SKUFactory(code="CUP")
    kit = SKUFactory(code="KIT")
    catalog.set_bundle_components(kit, [(cup, 1)])
    _, east, _ = stocked
    before = snapshot()

    client = as_role(Role.WAREHOUSE)
    bundle = client.post(
        "/inventory/receive/",
        {"sku": "KIT", "warehouse": east.pk, "quantity": "1", "status": "sellable"},
    )
    unknown = client.post(
        "/inventory/receive/",
        {"sku": "NOPE", "warehouse": east.pk, "quantity": "1", "status": "sellable"},
    )

    assert bundle.status_code == unknown.status_code == 422
    assert bundle.context["form"].errors == {
        "sku": ["KIT is a bundle: its stock is its components'."]
    }
    assert unknown.context["form"].errors == {"sku": ["No SKU has the code NOPE."]}
    assert snapshot() == before


# --- Transfers ------------------------------------------------------------------------------


def test_warehouse_role_ships_and_receives_a_transfer(stocked, as_role):
    sku, east, west = stocked
    tee = SKUFactory(code="TEE-1")
    services.receive(sku=tee, warehouse=east, quantity=3)
    client = as_role(Role.WAREHOUSE)

    shipped = client.post(
        "/inventory/transfers/new/",
        {
            "source": east.pk,
            "destination": west.pk,
            "note": "Rebalance",
            "line_sku": ["MUG-1", "tee-1", ""],
            "line_qty": ["4", "3", ""],
        },
    )

    transfer = Transfer.objects.get()
    assert shipped.status_code == 302
    assert shipped["Location"] == f"/inventory/transfers/{transfer.pk}/"
    assert list(transfer.lines.order_by("sku__code").values_list("sku__code", "quantity")) == [
        ("MUG-1", 4),
        ("TEE-1", 3),
    ]
    assert balance(sku, east) == (6, 0)
    assert balance(sku, west, "in_transit") == (4, 0)
    page = client.get(f"/inventory/warehouses/{west.pk}/")
    assert [(r.sku.code, r.status, r.quantity) for r in page.context["page"]] == [
        ("MUG-1", "in_transit", 4),
        ("TEE-1", "in_transit", 3),
    ]
    assert b"In transit" in client.get("/inventory/transfers/").content

    # Receive part of one line, then the rest from the list's Receive button.
    partly = client.post(
        f"/inventory/transfers/{transfer.pk}/receive/",
        {f"receive_{sku.pk}": "1", f"receive_{tee.pk}": "0"},
    )
    assert partly.status_code == 302
    assert (balance(sku, west), balance(sku, west, "in_transit")) == ((1, 0), (3, 0))
    transfer.refresh_from_db()
    assert transfer.status == "in_transit"

    rest = client.post(f"/inventory/transfers/{transfer.pk}/receive/")
    assert rest.status_code == 302
    transfer.refresh_from_db()
    assert transfer.status == "received"
    assert (balance(sku, west), balance(sku, west, "in_transit")) == ((4, 0), (0, 0))
    assert balance(tee, west) == (3, 0)


def test_insufficient_stock_on_a_transfer_shows_available_on_the_line_and_writes_nothing(
    stocked, as_role
):
    sku, east, west = stocked
    tee = SKUFactory(code="TEE-1")
    services.receive(sku=tee, warehouse=east, quantity=3)
    before = snapshot()

    response = as_role(Role.WAREHOUSE).post(
        "/inventory/transfers/new/",
        {
            "source": east.pk,
            "destination": west.pk,
            "line_sku": ["TEE-1", "MUG-1"],
            "line_qty": ["2", "15"],
        },
    )

    assert response.status_code == 422
    lines = response.context["lines"].lines
    assert [line.errors for line in lines] == [
        [],
        ["Insufficient stock of MUG-1 at EAST (sellable): 10 available, 15 requested."],
    ]
    assert "10 available, 15 requested" in response.content.decode()
    # The lines come back as typed.
    assert 'value="15"' in response.content.decode()
    assert snapshot() == before


def test_transfer_form_checks_warehouses_and_lines_together(stocked, as_role):
    _, east, _ = stocked
    before = snapshot()

    response = as_role(Role.WAREHOUSE).post(
        "/inventory/transfers/new/",
        {
            "source": east.pk,
            "destination": east.pk,
            "line_sku": ["MUG-1", "NOPE"],
            "line_qty": ["", "2"],
        },
    )

    assert response.status_code == 422
    assert response.context["form"].errors == {
        "destination": ["Choose a warehouse other than the source."]
    }
    assert [line.errors for line in response.context["lines"].lines] == [
        ["Enter a whole number of 1 or more."],
        ["No SKU has the code NOPE."],
    ]
    assert snapshot() == before


def test_receiving_more_than_shipped_is_refused_inline(stocked, as_role):
    sku, east, west = stocked
    transfer = services.ship_transfer(source=east, destination=west, lines=[(sku, 2)])
    before = snapshot()

    response = as_role(Role.WAREHOUSE).post(
        f"/inventory/transfers/{transfer.pk}/receive/", {f"receive_{sku.pk}": "5"}
    )

    assert response.status_code == 422
    assert response.context["errors"] == ["More received than was shipped on this line."]
    assert snapshot() == before


# --- Holds ----------------------------------------------------------------------------------


def test_manual_hold_create_and_release(stocked, as_role):
    sku, east, _ = stocked
    client = as_role(Role.OPS_MANAGER)

    created = client.post(
        "/inventory/holds/",
        {"sku": "MUG-1", "warehouse": east.pk, "quantity": "4", "note": "Photoshoot"},
    )

    assert created.status_code == 302
    hold = Reservation.objects.get()
    assert (hold.kind, hold.quantity, hold.note, hold.reference_type) == (
        "manual_hold",
        4,
        "Photoshoot",
        "manual_hold",
    )
    assert balance(sku, east) == (10, 4)
    assert b"Photoshoot" in client.get("/inventory/holds/").content

    released = client.post(f"/inventory/holds/{hold.pk}/release/")

    assert released.status_code == 302
    hold.refresh_from_db()
    assert hold.status == "released"
    assert balance(sku, east) == (10, 0)


def test_hold_beyond_available_shows_inline_error(stocked, as_role):
    _, east, _ = stocked
    before = snapshot()

    response = as_role(Role.OPS_MANAGER).post(
        "/inventory/holds/",
        {"sku": "MUG-1", "warehouse": east.pk, "quantity": "11", "note": "QA"},
    )

    assert response.status_code == 422
    assert response.context["form"].errors == {
        "quantity": ["Insufficient stock of MUG-1 at EAST (sellable): 10 available, 11 requested."]
    }
    assert snapshot() == before


def test_order_reservations_cannot_be_released_from_the_holds_page(stocked, as_role):
    sku, east, _ = stocked
    services.reserve(
        lines=[services.ReserveLine(sku, east, 2)],
        kind="order_line",
        reference=services.Reference("order_line", "77"),
    )
    order_hold = Reservation.objects.get()

    response = as_role(Role.OWNER).post(f"/inventory/holds/{order_hold.pk}/release/")

    assert response.status_code == 404
    assert balance(sku, east) == (10, 2)


# --- Counts ---------------------------------------------------------------------------------


def test_cycle_count_start_enter_and_post(stocked, as_role):
    sku, east, _ = stocked
    tee = SKUFactory(code="TEE-1")
    services.receive(sku=tee, warehouse=east, quantity=5)
    client = as_role(Role.WAREHOUSE)

    started = client.post("/inventory/counts/", {"warehouse": east.pk, "note": "Aisle 4"})
    count = CycleCount.objects.get()
    assert started["Location"] == f"/inventory/counts/{count.pk}/"
    sheet = client.get(f"/inventory/counts/{count.pk}/").context["sheet"]
    assert [(line.code, line.hint) for line in sheet.lines if line.code] == [
        ("MUG-1", "10"),
        ("TEE-1", "5"),
    ]

    entered = client.post(
        f"/inventory/counts/{count.pk}/enter/",
        {"line_sku": ["MUG-1", "TEE-1", ""], "line_qty": ["8", "", ""]},
        HTTP_HX_REQUEST="true",
    )
    assert entered.status_code == 200
    assert entered["HX-Redirect"] == f"/inventory/counts/{count.pk}/"
    line = CountLine.objects.get()
    assert (line.sku, line.expected, line.counted, line.variance) == (sku, 10, 8, -2)
    page = client.get(f"/inventory/counts/{count.pk}/")
    assert 'class="num delta neg">-2<' in page.content.decode()
    # Stock that moves while people count is not undone by posting.
    services.receive(sku=sku, warehouse=east, quantity=1)

    posted = client.post(f"/inventory/counts/{count.pk}/post/")

    assert posted.status_code == 302
    count.refresh_from_db()
    line.refresh_from_db()
    assert (count.status, line.posted_variance) == ("posted", -3)
    assert balance(sku, east) == (8, 0)
    assert balance(tee, east) == (5, 0)
    correction = StockMovement.objects.filter(kind="count_correction").get()
    assert (correction.quantity, correction.reference_id) == (-3, str(count.pk))


def test_count_entry_errors_save_nothing(stocked, as_role):
    _, east, _ = stocked
    count = services.start_count(warehouse=east)
    before = snapshot()

    response = as_role(Role.WAREHOUSE).post(
        f"/inventory/counts/{count.pk}/enter/",
        {"line_sku": ["MUG-1", "NOPE"], "line_qty": ["4", "1"]},
    )

    assert response.status_code == 422
    assert [line.errors for line in response.context["sheet"].lines] == [
        [],
        ["No SKU has the code NOPE."],
    ]
    assert snapshot() == before


def test_posting_an_empty_count_is_refused_inline(stocked, as_role):
    _, east, _ = stocked
    count = services.start_count(warehouse=east)

    response = as_role(Role.WAREHOUSE).post(f"/inventory/counts/{count.pk}/post/")

    assert response.status_code == 422
    assert response.context["post_errors"] == ["Enter at least one counted SKU."]
    count.refresh_from_db()
    assert count.status == "open"


# --- Warehouses -----------------------------------------------------------------------------


def warehouse_form(**overrides) -> dict:
    data = {
        "code": "LAX",
        "name": "Los Angeles 3PL",
        "kind": "3pl",
        "is_active": "on",
        "address_line1": "1 Harbor Way",
        "city": "Los Angeles",
        "state": "CA",
        "postal_code": "90001",
        "country": "us",
        "latitude": "34.052235",
        "longitude": "-118.243683",
        "timezone": "America/Los_Angeles",
        "cutoff_time": "14:30",
        "capabilities": ["parcel", "ltl"],
        "priority": "10",
        "safety_buffer": "2",
    }
    data.update(overrides)
    return data


def test_ops_manager_creates_and_edits_a_warehouse(as_role):
    client = as_role(Role.OPS_MANAGER)

    created = client.post("/inventory/warehouses/new/", warehouse_form())

    warehouse = Warehouse.objects.get()
    assert created["Location"] == f"/inventory/warehouses/{warehouse.pk}/"
    assert (warehouse.country, warehouse.capabilities, str(warehouse.cutoff_time)) == (
        "US",
        ["parcel", "ltl"],
        "14:30:00",
    )
    edited = client.post(
        f"/inventory/warehouses/{warehouse.pk}/edit/",
        warehouse_form(name="LA 3PL", capabilities=["parcel"], safety_buffer="5"),
    )
    assert edited.status_code == 302
    warehouse.refresh_from_db()
    assert (warehouse.name, warehouse.capabilities, warehouse.safety_buffer) == (
        "LA 3PL",
        ["parcel"],
        5,
    )
    entry = ActivityEntry.objects.filter(object_type="inventory.warehouse").first()
    assert entry.action == "warehouse.updated"
    assert entry.changes == {
        "name": ["Los Angeles 3PL", "LA 3PL"],
        "capabilities": [["parcel", "ltl"], ["parcel"]],
        "safety_buffer": [2, 5],
    }
    assert b"LA 3PL" in client.get("/inventory/warehouses/").content


def test_warehouse_form_errors_are_inline(as_role):
    WarehouseFactory(code="LAX")
    before = snapshot()

    response = as_role(Role.OPS_MANAGER).post(
        "/inventory/warehouses/new/",
        warehouse_form(code="lax", timezone="Mars/Olympus", latitude="95", longitude=""),
    )

    assert response.status_code == 422
    assert response.context["form"].errors == {
        "code": ["Another warehouse already has the code lax."],
        "timezone": ["Unknown timezone; use an IANA name like America/Chicago."],
        "latitude": ["Latitude is between -90 and 90."],
    }
    assert snapshot() == before


def test_warehouse_page_shows_stock_and_transfers(stocked, as_role):
    sku, east, west = stocked
    services.ship_transfer(source=east, destination=west, lines=[(sku, 2)])

    response = as_role(Role.VIEWER).get(f"/inventory/warehouses/{east.pk}/")

    assert [(r.status, r.quantity) for r in response.context["page"]] == [("sellable", 8)]
    assert [t.destination.code for t in response.context["outbound"]] == ["WEST"]
    assert list(response.context["inbound"]) == []


# --- Permissions ----------------------------------------------------------------------------


def test_warehouse_role_cannot_edit_warehouses_or_hold_stock(stocked, as_role):
    _, east, _ = stocked
    client = as_role(Role.WAREHOUSE)
    before = snapshot()

    responses = [
        client.get("/inventory/warehouses/new/"),
        client.post("/inventory/warehouses/new/", warehouse_form()),
        client.post(f"/inventory/warehouses/{east.pk}/edit/", warehouse_form(code="EAST")),
        client.post(
            "/inventory/holds/",
            {"sku": "MUG-1", "warehouse": east.pk, "quantity": "1", "note": "x"},
        ),
    ]

    assert [r.status_code for r in responses] == [403] * 4
    assert snapshot() == before


def test_viewer_gets_403_on_every_stock_post_and_nothing_changes(stocked, as_role):
    sku, east, west = stocked
    transfer = services.ship_transfer(source=east, destination=west, lines=[(sku, 1)])
    hold = services.reserve(
        lines=[services.ReserveLine(sku, east, 1)],
        kind="manual_hold",
        reference=services.Reference("manual_hold", "h"),
    )[0]
    count = services.start_count(warehouse=east)
    services.enter_count(count=count, sku=sku, counted=3)
    viewer = as_role(Role.VIEWER)
    before = snapshot()
    move = {"sku": "MUG-1", "warehouse": east.pk, "quantity": "1", "status": "sellable"}

    responses = {
        path: viewer.post(path, data)
        for path, data in [
            ("/inventory/receive/", move),
            ("/inventory/adjust/", {**move, "reason_code": "found"}),
            ("/inventory/status/", {**move, "to_status": "damaged"}),
            (
                "/inventory/transfers/new/",
                {"source": east.pk, "destination": west.pk, "line_sku": "MUG-1", "line_qty": "1"},
            ),
            (f"/inventory/transfers/{transfer.pk}/receive/", {}),
            ("/inventory/holds/", {**move, "note": "x"}),
            (f"/inventory/holds/{hold.pk}/release/", {}),
            ("/inventory/counts/", {"warehouse": east.pk}),
            (f"/inventory/counts/{count.pk}/enter/", {"line_sku": "MUG-1", "line_qty": "1"}),
            (f"/inventory/counts/{count.pk}/post/", {}),
            ("/inventory/warehouses/new/", warehouse_form()),
            (f"/inventory/warehouses/{east.pk}/edit/", warehouse_form(code="EAST")),
        ]
    }

    assert {path: r.status_code for path, r in responses.items()} == {
        path: 403 for path in responses
    }
    assert snapshot() == before


def test_viewer_sees_stock_pages_without_action_buttons(stocked, as_role):
    sku, east, _ = stocked
    viewer = as_role(Role.VIEWER)

    pages = [
        viewer.get(path).content.decode()
        for path in (
            "/inventory/",
            f"/inventory/warehouses/{east.pk}/",
            "/inventory/transfers/",
            "/inventory/holds/",
            "/inventory/counts/",
        )
    ]

    for body in pages:
        for action in (
            "/inventory/receive/",
            "/inventory/transfers/new/",
            "Start count",
            "Hold stock",
            "New warehouse",
        ):
            assert action not in body


def test_posting_by_htmx_with_an_error_returns_the_count_sheet_fragment(stocked, as_role):
    _, east, _ = stocked
    count = services.start_count(warehouse=east)

    response = as_role(Role.WAREHOUSE).post(
        f"/inventory/counts/{count.pk}/post/", HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="count-sheet">')
    assert "Enter at least one counted SKU." in body


def test_dashboard_shows_catalog_and_stock_tiles(stocked, as_role):
    sku, east, west = stocked
    services.receive(sku=sku, warehouse=west, quantity=5, status="damaged")
    WarehouseFactory(is_active=False)
    catalog.resolve_listing(channel="shopify", external_sku="SH-1")

    response = as_role(Role.VIEWER).get("/")

    tiles = {t["label"]: (t["value"], t["url_name"]) for t in response.context["tiles"]}
    assert tiles["Active SKUs"] == (1, "catalog:sku_list")
    assert tiles["Unmapped listings"] == (1, "catalog:unmapped")
    assert tiles["Active warehouses"] == (2, "inventory:warehouse_list")
    assert tiles["Sellable units"] == (10, "inventory:stock")
