"""Orders from CSV go through the one ingestion service: checked whole first (every problem
by line, nothing written), then ingested and routed like a connector's, idempotently."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from accounts.roles import Role
from catalog.models import UnmappedListing
from catalog.services import map_listing
from inventory.models import Reservation, StockBalance
from orders.csv_import import OrderCsvError, import_orders_csv, parse_orders_csv
from orders.models import Order
from orders.services import ingest_order
from tests.conftest import brand_client, make_user
from tests.orders.conftest import order_input
from tests.orders.test_views import snapshot

pytestmark = [pytest.mark.usefixtures("in_alpha", "typical_rules")]

HEADER = (
    "external_id,placed_at,updated_at,status,order_type,service_level,customer_name,"
    "ship_name,ship_line1,ship_city,ship_state,ship_postal_code,ship_country,"
    "line_id,sku,quantity,unit_price\n"
)
GOOD = (
    HEADER
    # A two-line order to California: the West coast rule.
    + "CSV-1,2026-11-02T10:00:00-05:00,,,dtc,standard,Ada,Ada,1 Main St,LA,CA,90001,US,"
    "1,ext-TEE,2,19.50\n"
    "CSV-1,2026-11-02T10:00:00-05:00,,,dtc,standard,Ada,Ada,1 Main St,LA,CA,90001,US,"
    "2,ext-HAT,1,12\n"
    # Wholesale, placed in the brand's timezone (no offset): the PA 3PL, LTL.
     + "CSV-2,2026-11-02 09:30,,,Wholesale / B2B,standard,Corner Store,Corner Store,"
    "5 Market St,Philadelphia,pa,19103,us,,ext-MUG,40,8.00\n"
    # An SKU the channel has never mapped: held until a person maps it.
     + "CSV-3,2026-11-02T11:00:00Z,,,dtc,expedited,Bo,Bo,2 Elm St,Austin,TX,73301,US,"
    ",mystery,1,5\n"
)


@pytest.fixture
def csv_channel(network):
    for code, sku in network["skus"].items():
        map_listing(channel="csv", external_sku=f"ext-{code}", sku=sku)
    return network


def reserved(network, code: str, wh: str) -> int:
    return StockBalance.objects.get(
        sku=network["skus"][code], warehouse=network["warehouses"][wh], status="sellable"
    ).reserved


def test_a_file_becomes_routed_and_held_orders_like_any_channels(csv_channel, brand_a):
    result = import_orders_csv(GOOD.encode())

    assert (result.created, result.updated, result.unchanged) == (3, 0, 0)
    one, two, three = (Order.objects.get(external_id=f"CSV-{i}") for i in (1, 2, 3))
    assert one.channel == "csv" and one.currency == "USD"
    assert one.placed_at == datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
    assert [(ln.sku.code, ln.quantity, ln.unit_price) for ln in one.lines.order_by("pk")] == [
        ("TEE", 2, Decimal("19.50")),
        ("HAT", 1, Decimal("12.00")),
    ]
    assert one.total == Decimal("51.00")
    assert (one.status, [fo.warehouse.code for fo in one.fulfillments.all()]) == (
        "routed",
        ["WEST"],
    )
    assert one.decisions.get().rule_name == "West coast"
    # Naive times are the brand's local time; codes are read in any case.
    local = datetime(2026, 11, 2, 9, 30, tzinfo=ZoneInfo(brand_a.timezone))
    assert (two.placed_at, two.order_type, two.ship_state, two.ship_country) == (
        local,
        "wholesale",
        "PA",
        "US",
    )
    assert [(fo.warehouse.code, fo.ship_type) for fo in two.fulfillments.all()] == [("PA", "ltl")]
    assert (three.status, three.hold_reason, three.service_level) == (
        "held",
        "unmapped_sku",
        "expedited",
    )
    assert UnmappedListing.objects.get(external_sku="mystery").channel == "csv"
    assert (reserved(csv_channel, "TEE", "WEST"), reserved(csv_channel, "MUG", "PA")) == (2, 40)
    assert "3 orders in the file; 3 new, 0 updated, 0 unchanged" in result.summary


def test_uploading_the_same_file_again_changes_nothing(csv_channel):
    import_orders_csv(GOOD.encode())
    before = snapshot()

    again = import_orders_csv(GOOD.encode())

    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    assert snapshot() == before
    assert Reservation.objects.filter(status="active").count() == 3  # 2 WEST, 1 PA


def test_later_rows_update_and_cancel_and_older_rows_are_ignored(csv_channel):
    import_orders_csv(GOOD.encode())
    wholesale = (
        "CSV-2,2026-11-02 09:30,{at},,wholesale,standard,Corner Store,Corner Store,"
        "5 Market St,Philadelphia,PA,19103,US,,ext-MUG,{qty},8.00\n"
    )
    later = (
        HEADER + "CSV-1,2026-11-02T10:00:00-05:00,2026-11-03T08:00:00Z,cancelled,dtc,standard,Ada,"
        "Ada,1 Main St,LA,CA,90001,US,1,ext-TEE,2,19.50\n"
        + wholesale.format(at="2026-11-03T08:00:00Z", qty=30)
    )
    # Older than what Keel has by now: never applied backwards.
    older = HEADER + wholesale.format(at="2026-11-02T20:00:00Z", qty=1)

    result = import_orders_csv(later.encode())
    stale = import_orders_csv(older.encode())

    assert (result.created, result.updated, result.unchanged) == (0, 2, 0)
    assert (stale.created, stale.updated, stale.unchanged) == (0, 0, 1)
    one, two = Order.objects.get(external_id="CSV-1"), Order.objects.get(external_id="CSV-2")
    assert one.status == "cancelled"
    assert reserved(csv_channel, "TEE", "WEST") == 0
    assert (two.status, two.lines.get().quantity) == ("routed", 30)
    assert reserved(csv_channel, "MUG", "PA") == 30


def test_csv_api_and_connectors_share_one_order_per_channel_and_id(csv_channel, brand_a, owner_a):
    """The CSV page and the API are entry points to the same ingestion service: the same
    (channel, external id) is one order whichever way it arrives."""
    import_orders_csv(GOOD.encode())
    api = brand_client(brand_a, owner_a)
    body = {
        "channel": "csv",
        "external_id": "CSV-1",
        "placed_at": "2026-11-02T15:00:00Z",
        "updated_at": "2026-11-04T00:00:00Z",
        "currency": "USD",
        "ship_line1": "1 Main St",
        "ship_city": "New York",
        "ship_state": "NY",
        "ship_postal_code": "10001",
        "ship_country": "US",
        "lines": [
            {"external_line_id": "1", "external_sku": "ext-TEE", "quantity": 2, "unit_price": "1"}
        ],
    }

    response = api.post("/api/v1/orders/", body, content_type="application/json")
    # A connector's replay of the CSV's version is older than the API's update: ignored.
    stale = ingest_order(
        order_input(external_id="CSV-1", channel="csv", lines=[("TEE", 9)], state="CA")
    )

    assert response.status_code in (200, 201), response.content
    assert Order.objects.filter(channel="csv", external_id="CSV-1").count() == 1
    order = Order.objects.get(channel="csv", external_id="CSV-1")
    assert order.ship_state == "NY"
    assert [fo.warehouse.code for fo in order.fulfillments.filter(status="open")] == ["PA"]
    assert stale.applied is False


def test_every_problem_is_reported_by_line_and_nothing_is_written(csv_channel):
    before = snapshot()
    bad = (
        HEADER
        + "B-1,yesterday,,,dtc,standard,A,A,1 Main St,LA,CA,90001,US,1,ext-TEE,0,1.999\n"
        + "B-2,2026-11-02T10:00:00Z,,maybe,retail,overnight,A,A,1 Main St,LA,CA,90001,USA,"
        "1,,2,abc\n"
        + "B-3,2026-11-02T10:00:00Z,,,dtc,standard,A,A,1 Main St,LA,CA,90001,US,1,ext-TEE,1,1\n"
        + "B-3,2026-11-02T10:00:00Z,,,dtc,standard,A,A,9 Other Rd,LA,CA,90001,US,1,ext-HAT,1,1\n"
        + ",2026-11-02T10:00:00Z,,,dtc,standard,A,A,1 Main St,LA,CA,90001,US,1,ext-TEE,1,1\n"
        + "B-5,2026-11-02T10:00:00Z,2026-11-01T00:00:00Z,,dtc,standard,A,A,1 Main St,LA,CA,"
        "90001,US,1,ext-TEE,1,1\n"
        + "B-6,2026-11-02T10:00:00Z,,,dtc,standard,A,A,1 Main St,LA,CA\n"
        # A good row: still not imported, since the file as a whole is refused.
        + "B-7,2026-11-02T10:00:00Z,,,dtc,standard,A,A,1 Main St,LA,CA,90001,US,1,ext-TEE,1,1\n"
    )

    with pytest.raises(OrderCsvError) as excinfo:
        import_orders_csv(bad.encode())

    found = [(p.line, p.column) for p in excinfo.value.problems]
    assert found == [
        (2, "placed_at"),
        (2, "quantity"),
        (2, "unit_price"),
        (3, "status"),
        (3, "order_type"),
        (3, "service_level"),
        (3, "ship_country"),
        (3, "sku"),
        (3, "unit_price"),
        (5, "ship_line1"),
        (5, "line_id"),
        (6, "external_id"),
        (7, "updated_at"),
        (8, ""),
    ]
    messages = {(p.line, p.column): p.message for p in excinfo.value.problems}
    assert messages[(5, "ship_line1")].startswith("Order B-3 has a different ship_line1 on line 4")
    assert messages[(5, "line_id")] == "Line 1 of order B-3 is already on line 4."
    assert messages[(8, "")] == "This row has 11 fields but the header has 17."
    assert "Line 2, quantity: “0” is not a whole number" in excinfo.value.messages[1]
    assert snapshot() == before
    assert not Order.objects.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "The file is empty: it needs a header row and lines."),
        (HEADER.encode(), "The file has a header but no order lines."),
        (b"external_id,sku,colour\n1,a,red\n", "Unknown columns: colour."),
        (b"external_id,sku\n1,a\n", "Missing columns: placed_at, quantity, unit_price."),
        ("external_id;sku\n".encode("utf-16"), "save the file as CSV UTF-8"),
        (b'external_id,placed_at,sku,quantity,unit_price\n"1,x\n', "Not valid CSV"),
    ],
)
def test_unreadable_files_say_why(csv_channel, data, message):
    with pytest.raises(OrderCsvError) as excinfo:
        parse_orders_csv(data)
    assert message in excinfo.value.messages[0]
    assert not Order.objects.exists()


def test_a_channel_column_and_the_default_channel(csv_channel):
    for code, sku in csv_channel["skus"].items():
        map_listing(channel="faire", external_sku=f"ext-{code}", sku=sku)
    data = (
        "external_id,channel,placed_at,sku,quantity,unit_price,ship_line1,ship_city,"
        "ship_state,ship_postal_code,ship_country\n"
        "F-1,,2026-11-02T10:00:00Z,ext-TEE,1,5,1 Main St,Austin,TX,73301,US\n"
        "F-2,shop,2026-11-02T10:00:00Z,ext-TEE,1,5,1 Main St,Austin,TX,73301,US\n"
    )

    inputs = parse_orders_csv(data.encode(), channel="faire")

    assert [(i.channel, i.external_id, i.lines[0].external_line_id) for i in inputs] == [
        ("faire", "F-1", "1"),
        ("shop", "F-2", "1"),
    ]


# --- Page ---------------------------------------------------------------------------------


def upload(client, data: str, channel: str = "csv", name: str = "orders.csv"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(
        "/orders/import/",
        {"channel": channel, "file": SimpleUploadedFile(name, data.encode(), "text/csv")},
    )


def test_the_import_page_imports_and_says_what_happened(csv_channel, brand_a):
    ops = brand_client(brand_a, make_user(brand_a, role=Role.OPS_MANAGER))

    page = ops.get("/orders/import/")
    template = ops.get("/orders/import/", {"template": "1"})
    done = upload(ops, GOOD)
    listed = ops.get(done["Location"])

    assert page.status_code == 200 and "Import orders from CSV" in page.content.decode()
    header, example = template.content.decode().splitlines()
    assert header.startswith("external_id,channel,placed_at")
    assert template["Content-Disposition"] == 'attachment; filename="orders-template.csv"'
    parsed = parse_orders_csv(template.content)  # the template itself is a valid file
    assert [i.external_id for i in parsed] == ["1001"]
    assert done.status_code == 302 and done["Location"] == "/orders/?channel=csv"
    body = listed.content.decode()
    assert "Imported orders.csv: 3 orders in the file; 3 new" in body
    assert {o.external_id for o in listed.context["page"]} == {"CSV-1", "CSV-2", "CSV-3"}
    assert 'href="/orders/import/"' in ops.get("/orders/").content.decode()


def test_the_import_page_lists_problems_and_imports_nothing(csv_channel, brand_a):
    ops = brand_client(brand_a, make_user(brand_a, role=Role.OPS_MANAGER))
    before = snapshot()

    response = upload(
        ops,
        HEADER + "X-1,2026-11-02T10:00:00Z,,,dtc,standard,A,A,1 Main,LA,CA,"
        "90001,US,1,ext-TEE,lots,1\n",
    )
    missing = ops.post("/orders/import/", {"channel": "csv"})

    assert response.status_code == 422
    body = response.content.decode()
    assert "Nothing was imported" in body
    assert "“lots” is not a whole number" in body
    assert missing.status_code == 422
    assert "This field is required." in missing.content.decode()
    assert snapshot() == before


def test_a_viewer_cannot_import(csv_channel, brand_a):
    viewer = brand_client(brand_a, make_user(brand_a, role=Role.VIEWER))
    before = snapshot()

    assert viewer.get("/orders/import/").status_code == 403
    assert upload(viewer, GOOD).status_code == 403
    assert snapshot() == before
