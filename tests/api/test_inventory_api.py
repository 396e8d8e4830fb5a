"""Warehouses and stock over the REST API: levels, movements, transfers, reservations."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_tenants.utils import schema_context
from drf_spectacular.generators import SchemaGenerator

from accounts.roles import Role
from accounts.services import create_api_key
from audit.models import ActivityEntry
from catalog import services as catalog_services
from catalog.models import SKU
from inventory import services as stock
from inventory.models import (
    Reservation,
    StockBalance,
    StockEvent,
    StockMovement,
    Transfer,
    Warehouse,
)
from inventory.services import Reference, ReserveLine
from tests.conftest import brand_client, make_user
from tests.factories import SKUFactory, WarehouseFactory

JSON = "application/json"


@pytest.fixture(autouse=True)
def _generous_rate_limit(settings):
    # Budgets live in the shared cache across tests; these tests count behaviour, not rate.
    settings.API_RATE_LIMIT = "100000/min"


def in_schema(brand):
    return schema_context(brand.schema_name)


def ledger_snapshot(brand) -> tuple:
    with in_schema(brand):
        return (
            list(StockBalance.objects.order_by("pk").values_list("pk", "quantity", "reserved")),
            StockMovement.objects.count(),
            StockEvent.objects.count(),
            list(Reservation.objects.order_by("pk").values_list("pk", "status")),
        )


# --- Warehouses ------------------------------------------------------------------------


def test_warehouse_create_update_deactivate(brand_a, owner_a):
    client = brand_client(brand_a, owner_a)

    created = client.post(
        "/api/v1/warehouses/",
        {
            "code": "CHI",
            "name": "Chicago DC",
            "kind": "3pl",
            "city": "Chicago",
            "state": "IL",
            "postal_code": "60601",
            "country": "US",
            "latitude": "41.878113",
            "longitude": "-87.629799",
            "timezone": "America/Chicago",
            "cutoff_time": "15:30:00",
            "capabilities": ["parcel", "ltl", "parcel"],
            "priority": 10,
            "safety_buffer": 2,
        },
        content_type=JSON,
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["capabilities"] == ["parcel", "ltl"]
    assert (body["latitude"], body["longitude"]) == ("41.878113", "-87.629799")
    assert body["cutoff_time"] == "15:30:00"
    assert body["is_active"] is True

    deactivated = client.patch(
        f"/api/v1/warehouses/{body['id']}/", {"is_active": False}, content_type=JSON
    )
    assert deactivated.status_code == 200
    assert deactivated.json()["is_active"] is False
    # No DELETE route (the schema test checks that); RolePermission answers before DRF's
    # method check, so the refusal may be 403 rather than 405.
    assert client.delete(f"/api/v1/warehouses/{body['id']}/").status_code in {403, 405}

    listed = client.get("/api/v1/warehouses/?is_active=false").json()["results"]
    assert [w["code"] for w in listed] == ["CHI"]
    assert client.get("/api/v1/warehouses/?is_active=true").json()["results"] == []
    with in_schema(brand_a):
        assert Warehouse.objects.get(pk=body["id"]).is_active is False
        entry = ActivityEntry.objects.get(action="warehouse.updated")
        assert entry.changes == {"is_active": [True, False]}
        assert ActivityEntry.objects.filter(action="warehouse.created").count() == 1


def test_warehouse_validation_errors_name_fields(brand_a, owner_a):
    with in_schema(brand_a):
        WarehouseFactory(code="NYC")
    client = brand_client(brand_a, owner_a)

    response = client.post(
        "/api/v1/warehouses/",
        {
            "code": "nyc",
            "name": "Second NYC",
            "country": "usa",
            "timezone": "Mars/Olympus",
            "latitude": "91",
            "capabilities": ["teleport"],
        },
        content_type=JSON,
    )

    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert {name: [e["code"] for e in errors] for name, errors in fields.items()} == {
        "code": ["unique"],
        "country": ["invalid"],
        "timezone": ["invalid_timezone"],
        "latitude": ["max_value"],
        "capabilities.0": ["invalid_choice"],
    }
    with in_schema(brand_a):
        assert Warehouse.objects.count() == 1


# --- Movements -------------------------------------------------------------------------


def test_receipt_then_adjustment_then_status_change(brand_a, owner_a):
    with in_schema(brand_a):
        # With a unit cost the 2-unit adjustment stays under the approval threshold.
        sku = SKUFactory(code="TEE", unit_cost=Decimal("3.00"), cost_currency="USD")
        wh = WarehouseFactory(code="MAIN")
    client = brand_client(brand_a, owner_a)

    receipt = client.post(
        "/api/v1/movements/",
        {
            "kind": "receipt",
            "sku": sku.pk,
            "warehouse": wh.pk,
            "quantity": 12,
            "reference_type": "purchase_order",
            "reference_id": "PO-7",
            "note": "first delivery",
        },
        content_type=JSON,
    )
    assert receipt.status_code == 201, receipt.json()
    body = receipt.json()
    assert len(body["movements"]) == 1
    movement = body["movements"][0]
    assert movement["operation_id"] == body["operation_id"]
    assert {
        k: movement[k]
        for k in (
            "kind",
            "sku",
            "sku_code",
            "warehouse",
            "warehouse_code",
            "status",
            "quantity",
            "balance_after",
            "reference_type",
            "reference_id",
            "note",
            "actor_label",
        )
    } == {
        "kind": "receipt",
        "sku": sku.pk,
        "sku_code": "TEE",
        "warehouse": wh.pk,
        "warehouse_code": "MAIN",
        "status": "sellable",
        "quantity": 12,
        "balance_after": 12,
        "reference_type": "purchase_order",
        "reference_id": "PO-7",
        "note": "first delivery",
        "actor_label": owner_a.email,
    }

    adjustment = client.post(
        "/api/v1/movements/",
        {
            "kind": "adjustment",
            "sku": sku.pk,
            "warehouse": wh.pk,
            "delta": -2,
            "reason_code": "lost",
        },
        content_type=JSON,
    )
    assert adjustment.status_code == 201
    assert [
        (m["quantity"], m["balance_after"], m["reason_code"])
        for m in adjustment.json()["movements"]
    ] == [(-2, 10, "lost")]

    status_change = client.post(
        "/api/v1/movements/",
        {
            "kind": "status_change",
            "sku": sku.pk,
            "warehouse": wh.pk,
            "quantity": 3,
            "from_status": "sellable",
            "to_status": "damaged",
        },
        content_type=JSON,
    )
    assert status_change.status_code == 201
    assert [
        (m["status"], m["quantity"], m["balance_after"]) for m in status_change.json()["movements"]
    ] == [("sellable", -3, 7), ("damaged", 3, 3)]

    returned = client.post(
        "/api/v1/movements/",
        {
            "kind": "return",
            "sku": sku.pk,
            "warehouse": wh.pk,
            "quantity": 1,
            "status": "quarantined",
        },
        content_type=JSON,
    )
    assert returned.status_code == 201
    with in_schema(brand_a):
        levels = dict(
            StockBalance.objects.filter(sku=sku, warehouse=wh).values_list("status", "quantity")
        )
        assert levels == {"sellable": 7, "damaged": 3, "quarantined": 1}


def test_movement_body_is_checked_per_kind(brand_a, owner_a):
    with in_schema(brand_a):
        sku, wh = SKUFactory(), WarehouseFactory()
    client = brand_client(brand_a, owner_a)

    def errors(body: dict) -> dict:
        response = client.post("/api/v1/movements/", body, content_type=JSON)
        assert response.status_code == 400
        error = response.json()["error"]
        return {k: [e["code"] for e in v] for k, v in error["fields"].items()}

    base = {"sku": sku.pk, "warehouse": wh.pk}
    assert errors({**base, "kind": "receipt"}) == {"quantity": ["required"]}
    assert errors({**base, "kind": "receipt", "quantity": 1, "delta": 5}) == {
        "delta": ["not_allowed"]
    }
    assert errors({**base, "kind": "adjustment", "delta": 1}) == {"reason_code": ["required"]}
    assert errors({**base, "kind": "status_change", "quantity": 1}) == {
        "from_status": ["required"],
        "to_status": ["required"],
    }
    assert errors({**base, "kind": "receipt", "quantity": 1, "reference_id": "PO-1"}) == {
        "reference_type": ["required"]
    }
    assert errors({**base, "kind": "ship", "quantity": 1}) == {"kind": ["invalid_choice"]}
    assert errors({"kind": "receipt", "quantity": 1, "sku": 999999, "warehouse": wh.pk}) == {
        "sku": ["does_not_exist"]
    }
    # Values the service refuses come back with the service's code.
    zero = client.post(
        "/api/v1/movements/", {**base, "kind": "receipt", "quantity": 0}, content_type=JSON
    )
    assert (zero.status_code, zero.json()["error"]["code"]) == (400, "invalid_quantity")
    with in_schema(brand_a):
        assert StockMovement.objects.count() == 0


def test_insufficient_stock_is_409_with_details_and_writes_nothing(brand_a, owner_a):
    with in_schema(brand_a):
        sku, wh = SKUFactory(code="MUG"), WarehouseFactory(code="EAST")
        stock.receive(sku=sku, warehouse=wh, quantity=5)
        stock.reserve(
            lines=[ReserveLine(sku, wh, 2)],
            kind="manual_hold",
            reference=Reference("customer", "c1"),
        )
    before = ledger_snapshot(brand_a)
    client = brand_client(brand_a, owner_a)

    response = client.post(
        "/api/v1/movements/",
        {
            "kind": "adjustment",
            "sku": sku.pk,
            "warehouse": wh.pk,
            "delta": -4,
            "reason_code": "damaged",
        },
        content_type=JSON,
    )

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "insufficient_stock"
    assert error["message"] == (
        "Insufficient stock of MUG at EAST (sellable): 3 available, 4 requested."
    )
    assert error["details"] == {
        "sku": "MUG",
        "warehouse": "EAST",
        "status": "sellable",
        "available": 3,
        "requested": 4,
    }
    assert ledger_snapshot(brand_a) == before
    with in_schema(brand_a):
        assert not ActivityEntry.objects.filter(action="stock.adjusted").exists()


def test_movement_list_filters(brand_a, owner_a):
    with in_schema(brand_a):
        tee, mug = SKUFactory(), SKUFactory()
        east, west = WarehouseFactory(), WarehouseFactory()
        stock.receive(sku=tee, warehouse=east, quantity=5)
        stock.receive(sku=mug, warehouse=west, quantity=5)
        stock.adjust(sku=tee, warehouse=east, delta=-1, reason_code="lost")
        StockMovement.objects.filter(sku=mug).update(created_at=timezone.now() - timedelta(days=3))
    client = brand_client(brand_a, owner_a)

    def kinds(query: str) -> list[tuple[str, int]]:
        response = client.get(f"/api/v1/movements/?{query}")
        assert response.status_code == 200, response.json()
        return [(m["kind"], m["quantity"]) for m in response.json()["results"]]

    # Newest first.
    assert kinds("") == [("adjustment", -1), ("receipt", 5), ("receipt", 5)]
    assert kinds(f"sku={tee.pk}") == [("adjustment", -1), ("receipt", 5)]
    assert kinds(f"warehouse={west.pk}") == [("receipt", 5)]
    assert kinds("kind=adjustment") == [("adjustment", -1)]
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert kinds(f"since={since.replace('+', '%2B')}") == [("adjustment", -1), ("receipt", 5)]
    bad = client.get("/api/v1/movements/?since=yesterday")
    assert bad.status_code == 400
    assert bad.json()["error"]["fields"]["since"][0]["code"] == "invalid"


# --- Stock levels ----------------------------------------------------------------------


def test_stock_levels_show_available_and_filter(brand_a, owner_a):
    with in_schema(brand_a):
        tee, mug = SKUFactory(code="TEE"), SKUFactory(code="MUG")
        main = WarehouseFactory(code="MAIN", safety_buffer=2)
        closed = WarehouseFactory(code="CLOSED")
        stock.receive(sku=tee, warehouse=main, quantity=10)
        stock.receive(sku=tee, warehouse=main, quantity=4, status="damaged")
        stock.receive(sku=mug, warehouse=main, quantity=3)
        stock.receive(sku=tee, warehouse=closed, quantity=6)
        stock.reserve(
            lines=[ReserveLine(tee, main, 5)], kind="order_line", reference=Reference("order", "1")
        )
        Warehouse.objects.filter(pk=closed.pk).update(is_active=False)
        atp = stock.available_to_promise()
    client = brand_client(brand_a, owner_a)

    def levels(query: str) -> list[tuple]:
        response = client.get(f"/api/v1/stock-levels/?{query}")
        assert response.status_code == 200, response.json()
        return sorted(
            (
                r["sku_code"],
                r["warehouse_code"],
                r["status"],
                r["quantity"],
                r["reserved"],
                r["available"],
            )
            for r in response.json()["results"]
        )

    everything = levels("")
    assert everything == [
        ("MUG", "MAIN", "sellable", 3, 0, 1),
        ("TEE", "CLOSED", "sellable", 6, 0, 0),
        ("TEE", "MAIN", "damaged", 4, 0, None),
        ("TEE", "MAIN", "sellable", 10, 5, 3),
    ]
    # The same numbers the service promises (inactive warehouses promise nothing).
    assert atp == {(tee.pk, main.pk): 3, (mug.pk, main.pk): 1}
    assert levels("sku_code=tee&status=sellable") == [
        ("TEE", "CLOSED", "sellable", 6, 0, 0),
        ("TEE", "MAIN", "sellable", 10, 5, 3),
    ]
    assert levels(f"sku={mug.pk}") == [("MUG", "MAIN", "sellable", 3, 0, 1)]
    assert levels(f"warehouse={closed.pk}") == [("TEE", "CLOSED", "sellable", 6, 0, 0)]
    assert levels("below=2") == [
        ("MUG", "MAIN", "sellable", 3, 0, 1),
        ("TEE", "CLOSED", "sellable", 6, 0, 0),
    ]
    assert client.post("/api/v1/stock-levels/", {}, content_type=JSON).status_code in {403, 405}


# --- Transfers -------------------------------------------------------------------------


def test_transfer_ship_then_receive_in_parts(brand_a, owner_a):
    with in_schema(brand_a):
        tee, mug = SKUFactory(code="TEE"), SKUFactory(code="MUG")
        east, west = WarehouseFactory(code="EAST"), WarehouseFactory(code="WEST")
        stock.receive(sku=tee, warehouse=east, quantity=10)
        stock.receive(sku=mug, warehouse=east, quantity=4)
    client = brand_client(brand_a, owner_a)

    shipped = client.post(
        "/api/v1/transfers/",
        {
            "source": east.pk,
            "destination": west.pk,
            "lines": [{"sku": tee.pk, "quantity": 6}, {"sku": mug.pk, "quantity": 4}],
            "note": "rebalance",
        },
        content_type=JSON,
    )
    assert shipped.status_code == 201, shipped.json()
    transfer = shipped.json()
    assert (transfer["status"], transfer["source_code"], transfer["destination_code"]) == (
        "in_transit",
        "EAST",
        "WEST",
    )
    assert sorted(
        (ln["sku_code"], ln["quantity"], ln["received_quantity"]) for ln in transfer["lines"]
    ) == [
        ("MUG", 4, 0),
        ("TEE", 6, 0),
    ]
    url = f"/api/v1/transfers/{transfer['id']}/receive/"

    partial = client.post(url, {"lines": [{"sku": tee.pk, "quantity": 2}]}, content_type=JSON)
    assert partial.status_code == 200
    assert partial.json()["status"] == "in_transit"
    too_many = client.post(url, {"lines": [{"sku": tee.pk, "quantity": 5}]}, content_type=JSON)
    assert too_many.status_code == 400
    assert too_many.json()["error"]["code"] == "over_receipt"
    assert too_many.json()["error"]["details"] == {"remaining": 4}

    rest = client.post(url, {}, content_type=JSON)
    assert rest.status_code == 200
    assert rest.json()["status"] == "received"
    assert rest.json()["received_at"] is not None
    again = client.post(url, {}, content_type=JSON)
    assert (again.status_code, again.json()["error"]["code"]) == (400, "transfer_not_in_transit")

    with in_schema(brand_a):
        levels = {
            (b.sku.code, b.warehouse.code, b.status): b.quantity
            for b in StockBalance.objects.select_related("sku", "warehouse")
        }
    assert levels == {
        ("TEE", "EAST", "sellable"): 4,
        ("MUG", "EAST", "sellable"): 0,
        ("TEE", "WEST", "in_transit"): 0,
        ("MUG", "WEST", "in_transit"): 0,
        ("TEE", "WEST", "sellable"): 6,
        ("MUG", "WEST", "sellable"): 4,
    }
    listed = client.get(f"/api/v1/transfers/?status=received&warehouse={west.pk}").json()
    assert [t["id"] for t in listed["results"]] == [transfer["id"]]


def test_transfer_short_of_stock_is_409_and_creates_no_transfer(brand_a, owner_a):
    with in_schema(brand_a):
        tee = SKUFactory()
        east, west = WarehouseFactory(), WarehouseFactory()
        stock.receive(sku=tee, warehouse=east, quantity=1)
    before = ledger_snapshot(brand_a)

    response = brand_client(brand_a, owner_a).post(
        "/api/v1/transfers/",
        {"source": east.pk, "destination": west.pk, "lines": [{"sku": tee.pk, "quantity": 2}]},
        content_type=JSON,
    )

    assert response.status_code == 409
    assert response.json()["error"]["details"]["requested"] == 2
    assert ledger_snapshot(brand_a) == before
    with in_schema(brand_a):
        assert Transfer.objects.count() == 0


# --- Reservations ----------------------------------------------------------------------


def test_reserve_list_and_release(brand_a, owner_a):
    with in_schema(brand_a):
        tee, mug, box = SKUFactory(code="TEE"), SKUFactory(code="MUG"), SKUFactory(code="BOX")
        catalog_services.set_bundle_components(box, [(tee, 1), (mug, 2)])
        wh = WarehouseFactory()
        stock.receive(sku=tee, warehouse=wh, quantity=10)
        stock.receive(sku=mug, warehouse=wh, quantity=10)
    client = brand_client(brand_a, owner_a)

    created = client.post(
        "/api/v1/reservations/",
        {
            "kind": "manual_hold",
            "reference_type": "customer",
            "reference_id": "ACME",
            "lines": [{"sku": box.pk, "warehouse": wh.pk, "quantity": 2}],
            "note": "wholesale hold",
        },
        content_type=JSON,
    )
    assert created.status_code == 201, created.json()
    rows = created.json()["reservations"]
    assert sorted((r["sku_code"], r["quantity"], r["bundle_sku"], r["status"]) for r in rows) == [
        ("MUG", 4, box.pk, "active"),
        ("TEE", 2, box.pk, "active"),
    ]
    with in_schema(brand_a):
        stock.reserve(
            lines=[ReserveLine(tee, wh, 1)],
            kind="channel_buffer",
            reference=Reference("channel", "amazon"),
        )

    listed = client.get("/api/v1/reservations/?reference=ACME&status=active&kind=manual_hold")
    assert sorted(r["id"] for r in listed.json()["results"]) == sorted(r["id"] for r in rows)
    buffers = client.get("/api/v1/reservations/?kind=channel_buffer").json()["results"]
    assert [(r["reference_type"], r["reference_id"], r["quantity"]) for r in buffers] == [
        ("channel", "amazon", 1)
    ]

    tee_hold = next(r for r in rows if r["sku_code"] == "TEE")
    url = f"/api/v1/reservations/{tee_hold['id']}/release/"
    released = client.post(url, content_type=JSON)
    assert released.status_code == 200
    assert released.json()["status"] == "released"
    assert released.json()["closed_at"] is not None
    again = client.post(url, content_type=JSON)
    assert again.status_code == 400
    assert again.json()["error"] == {
        "code": "reservation_not_active",
        "message": "This reservation is already released.",
        "request_id": again["X-Request-ID"],
    }
    with in_schema(brand_a):
        reserved = dict(
            StockBalance.objects.filter(warehouse=wh, status="sellable").values_list(
                "sku__code", "reserved"
            )
        )
    # TEE keeps only the channel buffer; the bundle hold's MUG units stay reserved.
    assert reserved == {"TEE": 1, "MUG": 4}


def test_reservation_beyond_stock_is_409_and_reserves_nothing(brand_a, owner_a):
    with in_schema(brand_a):
        tee, mug = SKUFactory(code="TEE"), SKUFactory(code="MUG")
        wh = WarehouseFactory(code="MAIN")
        stock.receive(sku=tee, warehouse=wh, quantity=5)
        stock.receive(sku=mug, warehouse=wh, quantity=1)
    before = ledger_snapshot(brand_a)

    response = brand_client(brand_a, owner_a).post(
        "/api/v1/reservations/",
        {
            "kind": "order_line",
            "reference_type": "order_line",
            "reference_id": "L-1",
            "lines": [
                {"sku": tee.pk, "warehouse": wh.pk, "quantity": 2},
                {"sku": mug.pk, "warehouse": wh.pk, "quantity": 2},
            ],
        },
        content_type=JSON,
    )

    assert response.status_code == 409
    assert response.json()["error"]["details"] == {
        "sku": "MUG",
        "warehouse": "MAIN",
        "status": "sellable",
        "available": 1,
        "requested": 2,
    }
    assert ledger_snapshot(brand_a) == before


def test_second_active_hold_for_the_same_reference_is_refused_not_a_500(brand_a, owner_a):
    with in_schema(brand_a):
        tee, wh = SKUFactory(), WarehouseFactory()
        stock.receive(sku=tee, warehouse=wh, quantity=10)
    client = brand_client(brand_a, owner_a)
    body = {
        "kind": "manual_hold",
        "reference_type": "customer",
        "reference_id": "ACME",
        "lines": [{"sku": tee.pk, "warehouse": wh.pk, "quantity": 1}],
    }

    first = client.post("/api/v1/reservations/", body, content_type=JSON)
    second = client.post("/api/v1/reservations/", body, content_type=JSON)

    assert first.status_code == 201
    assert (second.status_code, second.json()["error"]["code"]) == (400, "already_reserved")
    with in_schema(brand_a):
        assert Reservation.objects.count() == 1
        assert StockBalance.objects.get(sku=tee, warehouse=wh, status="sellable").reserved == 1


# --- Permissions and isolation ---------------------------------------------------------


def test_warehouse_role_moves_stock_but_cannot_edit_skus_or_reserve(brand_a):
    person = make_user(brand_a, role=Role.WAREHOUSE)
    with in_schema(brand_a):
        sku = SKUFactory(title="Before")
        east, west = WarehouseFactory(), WarehouseFactory()
    client = brand_client(brand_a, person)

    moved = client.post(
        "/api/v1/movements/",
        {"kind": "receipt", "sku": sku.pk, "warehouse": east.pk, "quantity": 3},
        content_type=JSON,
    )
    transferred = client.post(
        "/api/v1/transfers/",
        {"source": east.pk, "destination": west.pk, "lines": [{"sku": sku.pk, "quantity": 1}]},
        content_type=JSON,
    )
    edit_sku = client.patch(f"/api/v1/skus/{sku.pk}/", {"title": "After"}, content_type=JSON)
    reserve = client.post(
        "/api/v1/reservations/",
        {
            "kind": "manual_hold",
            "reference_type": "customer",
            "reference_id": "C",
            "lines": [{"sku": sku.pk, "warehouse": east.pk, "quantity": 1}],
        },
        content_type=JSON,
    )
    new_warehouse = client.post(
        "/api/v1/warehouses/", {"code": "NEW", "name": "New"}, content_type=JSON
    )

    assert (moved.status_code, transferred.status_code) == (201, 201)
    assert (edit_sku.status_code, reserve.status_code, new_warehouse.status_code) == (403, 403, 403)
    with in_schema(brand_a):
        assert SKU.objects.get(pk=sku.pk).title == "Before"
        assert Reservation.objects.count() == 0
        assert not Warehouse.objects.filter(code="NEW").exists()


def test_viewer_reads_stock_but_cannot_move_it(brand_a):
    viewer = make_user(brand_a, role=Role.VIEWER)
    with in_schema(brand_a):
        sku, wh = SKUFactory(), WarehouseFactory()
        stock.receive(sku=sku, warehouse=wh, quantity=2)
    before = ledger_snapshot(brand_a)
    client = brand_client(brand_a, viewer)

    for url in (
        "/api/v1/stock-levels/",
        "/api/v1/movements/",
        "/api/v1/transfers/",
        "/api/v1/reservations/",
        "/api/v1/warehouses/",
    ):
        assert client.get(url).status_code == 200, url
    refused = client.post(
        "/api/v1/movements/",
        {"kind": "receipt", "sku": sku.pk, "warehouse": wh.pk, "quantity": 1},
        content_type=JSON,
    )

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    assert ledger_snapshot(brand_a) == before


def test_read_key_cannot_post_movements_and_write_key_can(brand_a, owner_a):
    with in_schema(brand_a):
        sku, wh = SKUFactory(), WarehouseFactory()
        read_key = create_api_key(actor=owner_a, name="BI", scope="read")
        write_key = create_api_key(actor=owner_a, name="WMS", scope="write")
    client = brand_client(brand_a)
    body = {"kind": "receipt", "sku": sku.pk, "warehouse": wh.pk, "quantity": 4}

    read_list = client.get("/api/v1/stock-levels/", HTTP_AUTHORIZATION=f"Api-Key {read_key.secret}")
    refused = client.post(
        "/api/v1/movements/",
        body,
        content_type=JSON,
        HTTP_AUTHORIZATION=f"Api-Key {read_key.secret}",
    )
    with in_schema(brand_a):
        assert StockMovement.objects.count() == 0
    accepted = client.post(
        "/api/v1/movements/",
        body,
        content_type=JSON,
        HTTP_AUTHORIZATION=f"Api-Key {write_key.secret}",
    )

    assert read_list.status_code == 200
    assert refused.status_code == 403
    assert accepted.status_code == 201
    assert accepted.json()["movements"][0]["actor_label"] == f"API key {write_key.api_key.prefix}"


def test_another_brands_stock_ids_are_not_found(brand_a, brand_b, owner_a, owner_b):
    with in_schema(brand_b):
        sku, wh, other = SKUFactory(), WarehouseFactory(code="BETA"), WarehouseFactory()
        stock.receive(sku=sku, warehouse=wh, quantity=5)
        transfer = stock.ship_transfer(source=wh, destination=other, lines=[(sku, 1)])
        (held,) = stock.reserve(
            lines=[ReserveLine(sku, wh, 1)], kind="manual_hold", reference=Reference("c", "1")
        )
        movement_id = StockMovement.objects.first().pk
        balance_id = StockBalance.objects.first().pk
    before = ledger_snapshot(brand_b)
    client = brand_client(brand_a, owner_a)

    for url in (
        f"/api/v1/warehouses/{wh.pk}/",
        f"/api/v1/stock-levels/{balance_id}/",
        f"/api/v1/movements/{movement_id}/",
        f"/api/v1/transfers/{transfer.pk}/",
        f"/api/v1/reservations/{held.pk}/",
    ):
        assert client.get(url).status_code == 404, url
    writes = [
        client.patch(f"/api/v1/warehouses/{wh.pk}/", {"is_active": False}, content_type=JSON),
        client.post(f"/api/v1/transfers/{transfer.pk}/receive/", {}, content_type=JSON),
        client.post(f"/api/v1/reservations/{held.pk}/release/", content_type=JSON),
    ]
    assert [w.status_code for w in writes] == [404, 404, 404]
    for url in ("/api/v1/stock-levels/", "/api/v1/movements/", "/api/v1/warehouses/"):
        assert client.get(url).json()["results"] == [], url
    assert ledger_snapshot(brand_b) == before
    with in_schema(brand_b):
        assert Warehouse.objects.get(pk=wh.pk).is_active is True


# --- Schema ----------------------------------------------------------------------------

CATALOG_AND_STOCK_PATHS = {
    "/api/v1/products/",
    "/api/v1/products/{id}/",
    "/api/v1/skus/",
    "/api/v1/skus/{id}/",
    "/api/v1/skus/{id}/components/",
    "/api/v1/listing-mappings/",
    "/api/v1/listing-mappings/{id}/",
    "/api/v1/unmapped-listings/",
    "/api/v1/unmapped-listings/{id}/",
    "/api/v1/unmapped-listings/{id}/resolve/",
    "/api/v1/warehouses/",
    "/api/v1/warehouses/{id}/",
    "/api/v1/stock-levels/",
    "/api/v1/stock-levels/{id}/",
    "/api/v1/movements/",
    "/api/v1/movements/{id}/",
    "/api/v1/transfers/",
    "/api/v1/transfers/{id}/",
    "/api/v1/transfers/{id}/receive/",
    "/api/v1/reservations/",
    "/api/v1/reservations/{id}/",
    "/api/v1/reservations/{id}/release/",
}


def test_openapi_schema_describes_catalog_and_stock_endpoints():
    schema = SchemaGenerator(urlconf="config.urls_tenant").get_schema(request=None, public=True)
    paths = schema["paths"]

    assert set(paths) >= CATALOG_AND_STOCK_PATHS
    create = paths["/api/v1/movements/"]["post"]
    assert create["requestBody"]["content"][JSON]["schema"] == {
        "$ref": "#/components/schemas/MovementCreateRequest"
    }
    # 202: an adjustment held for approval (approvals).
    assert set(create["responses"]) == {"201", "202", "400", "409", "422"}
    assert {p["name"] for p in create["parameters"]} == {"Idempotency-Key"}
    assert {p["name"] for p in paths["/api/v1/stock-levels/"]["get"]["parameters"]} == {
        "cursor",
        "page_size",
        "sku",
        "sku_code",
        "warehouse",
        "status",
        "below",
    }
    assert set(paths["/api/v1/skus/{id}/components/"]) == {"get", "put"}
    assert set(paths["/api/v1/warehouses/{id}/"]) == {"get", "patch"}
    components = schema["components"]["schemas"]
    assert components["SKU"]["properties"]["unit_cost"]["type"] == "string"
    assert components["StockStatusEnum"]["enum"] == [
        "sellable",
        "in_transit",
        "damaged",
        "quarantined",
    ]


def test_schema_generation_has_no_warnings_and_validates(tmp_path):
    # Same as CI's `manage.py spectacular --validate --fail-on-warn`: raises on any warning.
    call_command(
        "spectacular",
        "--urlconf",
        "config.urls_tenant",
        "--validate",
        "--fail-on-warn",
        "--file",
        str(tmp_path / "schema.yaml"),
    )
    assert "/api/v1/movements/" in (tmp_path / "schema.yaml").read_text()
