"""3PL connections: fulfillment orders out, shipments and stock levels in.

Uses the example third-party package (keel-shipbay, pip-installed by the harness) and its
own fake server, connected through the UI form like a brand would.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from keel_shipbay.fake import FakeShipBay

from catalog.models import UnmappedListing
from inventory import services as stock
from inventory.models import MovementKind, StockBalance, StockMovement
from orders.models import FulfillmentStatus, Order
from orders.services import LineInput, OrderInput, ingest_order
from sync import plugins, services
from sync.models import Connection, FulfillmentPush, SyncRun
from sync.sealed import unseal
from tests.conftest import brand_client
from tests.factories import WarehouseFactory
from tests.sync.conftest import stock_network

API_KEY = "sbk_live_0123456789abcdef"


@pytest.fixture
def shipbay(clock) -> Iterator[FakeShipBay]:
    with FakeShipBay(clock=clock, api_key=API_KEY, per_second=50) as fake:
        yield fake


@pytest.fixture
def network(in_alpha) -> dict:
    """EAST holds every SKU the ShipBay fake stocks, mapped on the `shop` channel."""
    codes = [f"KEEL-{p:03d}-{s}" for p in range(10) for s in "SML"]
    return stock_network("shop", codes, quantity=100)


def connect_via_form(brand, owner, fake: FakeShipBay) -> Connection:
    client = brand_client(brand, owner)
    response = client.post(
        "/connections/add/shipbay/",
        {
            "display_name": "ShipBay East",
            "channel_key": "shipbay",
            "poll_interval": 300,
            "warehouse_map": "SB-EAST = east",
            "cfg_api_key": API_KEY,
            "cfg_api_base_url": fake.url,
            "cfg_requests_per_second": 50,
            "cfg_page_size": 100,
            "cfg_backfill_days": 7,
        },
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    conn = Connection.objects.get(channel_key="shipbay")
    assert response["Location"] == f"/connections/{conn.pk}/"
    return conn


def place_order(external_id: str, lines: list[tuple[str, int]], *, state: str = "NY") -> Order:
    now = datetime.now(UTC)
    ingest_order(
        OrderInput(
            channel="shop",
            external_id=external_id,
            placed_at=now,
            updated_at=now,
            currency="USD",
            lines=[
                LineInput(f"{external_id}-{i}", sku, qty, Decimal("20.00"))
                for i, (sku, qty) in enumerate(lines)
            ],
            ship_name="Grace Hopper",
            ship_line1="1 Main St",
            ship_city="Brooklyn",
            ship_state=state,
            ship_postal_code="11201",
            ship_country="US",
        )
    )
    return Order.objects.get(channel="shop", external_id=external_id)


def test_the_example_package_connected_in_the_ui_sends_fulfillment_orders_to_its_fake(
    brand_a, owner_a, network, shipbay, tasks, clock
):
    # given: ShipBay connected through the form generated from its settings schema
    conn = connect_via_form(brand_a, owner_a, shipbay)
    assert conn.warehouse_map == {"SB-EAST": "EAST"}
    assert unseal(conn.credentials) == {"api_key": API_KEY}
    assert conn.settings == {
        "api_base_url": shipbay.url,
        "requests_per_second": 50,
        "page_size": 100,
        "backfill_days": 7,
    }
    order = place_order("1001", [("KEEL-001-M", 2), ("KEEL-002-S", 1)])
    fo = order.fulfillments.get()
    assert (fo.warehouse.code, fo.status) == ("EAST", FulfillmentStatus.OPEN)

    # when: the 3PL's sync runs (twice: a second run must not send it again)
    for _ in range(2):
        services.request_sync(conn, trigger="manual")
        tasks.drain(clock=clock)

    # then: ShipBay holds exactly one fulfillment, our fulfillment order is with it
    assert list(shipbay.fulfillments) == [f"FO-{fo.pk}"]
    sent = shipbay.fulfillments[f"FO-{fo.pk}"]
    assert (sent["order_number"], sent["items"]) == (
        "1001",
        [{"sku": "KEEL-001-M", "qty": 2}, {"sku": "KEEL-002-S", "qty": 1}],
    )
    assert len(shipbay.journal.entries("POST", "/v2/fulfillments")) == 1
    fo.refresh_from_db()
    assert fo.status == FulfillmentStatus.SENT
    push = FulfillmentPush.objects.get()
    assert (push.request_id, push.external_id, push.status) == (
        f"FO-{fo.pk}",
        sent["id"],
        "sent",
    )


def test_shipments_close_fulfillment_orders_and_stock_levels_post_count_corrections(
    brand_a, owner_a, network, shipbay, tasks, clock
):
    # given: a sent fulfillment order that ShipBay then ships
    conn = connect_via_form(brand_a, owner_a, shipbay)
    order = place_order("2001", [("KEEL-001-M", 2)])
    services.request_sync(conn, trigger="manual")
    tasks.drain(clock=clock)
    fo = order.fulfillments.get()
    clock.advance(60)
    shipment = shipbay.ship(f"FO-{fo.pk}")
    shipbay.stock[("KEEL-001-M", "SB-EAST")] = [78, 78]

    # when
    clock.advance(60)
    services.request_sync(conn, trigger="manual")
    tasks.drain(clock=clock)

    # then: shipped with the 3PL's tracking; reservations consumed
    fo.refresh_from_db()
    order.refresh_from_db()
    assert (fo.status, fo.tracking_number, fo.carrier) == (
        "shipped",
        shipment["tracking_number"],
        "UPS",
    )
    assert order.status == "fulfilled"
    # and stock follows the 3PL through count corrections, never an overwritten balance
    east = network["warehouse"]
    tee = network["skus"]["KEEL-001-M"]
    balance = StockBalance.objects.get(sku=tee, warehouse=east, status="sellable")
    assert (balance.quantity, balance.reserved) == (78, 0)
    moves = list(
        StockMovement.objects.filter(sku=tee, warehouse=east)
        .order_by("id")
        .values_list("kind", "quantity", "balance_after", "reference_type")
    )
    assert moves == [
        (MovementKind.RECEIPT, 100, 100, ""),
        # first run: ShipBay reported 80 on hand
        (MovementKind.COUNT_CORRECTION, -20, 80, "cycle_count"),
        # second run: the shipment, then 78 on hand matches, so no correction
        (MovementKind.SHIP, -2, 78, "fulfillment_order"),
    ]
    run = SyncRun.objects.order_by("-id").first()
    assert (run.counts["shipped"], run.counts.get("stock_corrected", 0)) == (1, 0)
    # SB-WEST is not mapped: reported once per run, its stock not applied anywhere
    assert [(e["code"], e["ref"]) for e in run.errors] == [("unmapped_location", "SB-WEST")]


def connect_shipbay(fake: FakeShipBay) -> Connection:
    return services.create_connection(
        connector="shipbay",
        display_name="ShipBay",
        channel_key="shipbay",
        settings={"api_base_url": fake.url, "requests_per_second": 50},
        credentials={"api_key": API_KEY},
        warehouse_map={"SB-EAST": "EAST"},
    )


def test_a_level_below_open_reservations_re_routes_the_newest_orders_then_corrects(
    in_alpha, network, shipbay, tasks, clock
):
    # given: WEST also stocks the tee; three orders of 2 reserve 6 at EAST (closest to NY)
    conn = connect_shipbay(shipbay)
    tee = network["skus"]["KEEL-000-S"]
    west = WarehouseFactory(code="WEST", state="CA", postal_code="90001")
    stock.receive(sku=tee, warehouse=west, quantity=50)
    orders = [place_order(f"300{i}", [("KEEL-000-S", 2)]) for i in range(3)]
    assert {o.fulfillments.get().warehouse.code for o in orders} == {"EAST"}
    # and: the 3PL counts only 3 on hand
    shipbay.stock[("KEEL-000-S", "SB-EAST")] = [3, 3]

    # when
    services.request_sync(conn, trigger="manual", streams=["stock"])
    tasks.drain(clock=clock)

    # then: the two newest orders moved to WEST (6 − 2 − 2 = 2 fits in 3), each with a
    # decision saying what ran short; the oldest keeps its stock at EAST
    first, second, third = (Order.objects.get(pk=o.pk) for o in orders)
    assert [fo.warehouse.code for fo in first.fulfillments.all()] == ["EAST"]
    for order in (second, third):
        assert order.status == "routed"
        assert order.fulfillments.get(status="open").warehouse == west
        assert order.fulfillments.get(status="rejected").warehouse.code == "EAST"
        reroute = order.decisions.get(layer="reroute")
        assert reroute.explanation.startswith(
            "EAST ran short of KEEL-000-S (stock reported by ShipBay: 3 on hand, 6 reserved)"
        )
        assert reroute.inputs["source"] == "stock reported by ShipBay"
    # and: the count correction landed after them; nothing went negative
    east = StockBalance.objects.get(sku=tee, warehouse=network["warehouse"], status="sellable")
    assert (east.quantity, east.reserved) == (3, 2)
    assert east.quantity - east.reserved >= 0
    correction = StockMovement.objects.get(
        sku=tee, warehouse=network["warehouse"], kind=MovementKind.COUNT_CORRECTION
    )
    assert (correction.quantity, correction.balance_after) == (-97, 3)
    run = SyncRun.objects.get()
    assert run.counts["rerouted_short"] == 2
    # (SB-WEST is the fake's unmapped location, reported on every run)
    assert [e["code"] for e in run.errors] == ["unmapped_location"]
    levels = dict(
        StockBalance.objects.filter(warehouse=network["warehouse"]).values_list(
            "sku__code", "quantity"
        )
    )
    assert levels["KEEL-001-S"] == 80  # the other levels posted as usual


def test_an_order_that_fits_nowhere_else_is_held_and_the_count_still_lands(
    in_alpha, network, shipbay, tasks, clock
):
    conn = connect_shipbay(shipbay)
    order = place_order("3101", [("KEEL-000-S", 5)])  # 5 reserved at EAST, the only stock
    shipbay.stock[("KEEL-000-S", "SB-EAST")] = [3, 3]

    services.request_sync(conn, trigger="manual", streams=["stock"])
    tasks.drain(clock=clock)

    order.refresh_from_db()
    assert (order.status, order.hold_reason) == ("held", "insufficient_stock")
    assert [d.layer for d in order.decisions.all()] == ["scoring", "reroute", "hold"]
    east = StockBalance.objects.get(
        sku=network["skus"]["KEEL-000-S"], warehouse=network["warehouse"], status="sellable"
    )
    assert (east.quantity, east.reserved) == (3, 0)
    assert [e["code"] for e in SyncRun.objects.get().errors] == ["unmapped_location"]


def test_a_level_the_ledger_still_refuses_is_reported_and_the_others_post(
    in_alpha, network, shipbay, tasks, clock
):
    # given: stock reserved by something that is not a fulfillment order (nothing to
    # re-route), more than the 3PL reports
    conn = connect_shipbay(shipbay)
    tee = network["skus"]["KEEL-000-S"]
    stock.reserve(
        lines=[stock.ReserveLine(tee, network["warehouse"], 5)],
        kind="manual_hold",
        reference=stock.Reference("manual_hold", "H-1"),
    )
    shipbay.stock[("KEEL-000-S", "SB-EAST")] = [3, 3]

    services.request_sync(conn, trigger="manual", streams=["stock"])
    tasks.drain(clock=clock)

    run = SyncRun.objects.get()
    assert run.status == "partial"
    refused = [(e["code"], e["ref"]) for e in run.errors if e["code"] == "refused"]
    assert refused == [("refused", "KEEL-000-S")]
    levels = dict(
        StockBalance.objects.filter(warehouse=network["warehouse"]).values_list(
            "sku__code", "quantity"
        )
    )
    assert levels["KEEL-000-S"] == 100  # untouched
    assert levels["KEEL-001-S"] == 80  # corrected


def test_unknown_3pl_skus_are_parked_for_mapping_and_unmapped_locations_reported(
    in_alpha, network, shipbay, tasks, clock
):
    shipbay.stock[("MYSTERY-1", "SB-EAST")] = [4, 4]
    conn = services.create_connection(
        connector="shipbay",
        display_name="ShipBay",
        channel_key="shipbay",
        settings={"api_base_url": shipbay.url, "requests_per_second": 50},
        credentials={"api_key": API_KEY},
        warehouse_map={"SB-EAST": "EAST"},
    )

    services.request_sync(conn, trigger="manual", streams=["stock"])
    tasks.drain(clock=clock)

    run = SyncRun.objects.get()
    codes = sorted({(e["code"], e["ref"]) for e in run.errors})
    assert codes == [("unmapped_location", "SB-WEST"), ("unmapped_sku", "MYSTERY-1")]
    assert UnmappedListing.objects.filter(channel="shipbay", external_sku="MYSTERY-1").exists()


def test_the_state_a_connector_keeps_is_stored_encrypted_per_connection(in_alpha, tasks):
    # given: the sandbox 3PL remembers accepted orders in its ConnectionState
    conn = services.create_connection(
        connector="sandbox_3pl",
        display_name="Sandbox 3PL",
        channel_key="sandbox-3pl",
        settings={"skus": ["TEE-S"]},
        warehouse_map={},
    )
    from connectors.types import Address, FulfillmentLine, FulfillmentRequest

    request = FulfillmentRequest(
        request_id="FO-99",
        order_ref="X-1",
        ship_to=Address(name="Ada", line1="1 St", city="Austin", postal_code="73301", country="US"),
        lines=(FulfillmentLine("TEE-S", 1),),
    )

    # when: two instances (two tasks) push the same request
    for _ in range(2):
        with plugins.connector_for(conn) as connector:
            connector.push_fulfillment_order(request=request, idempotency_key="k1")

    # then: one accepted order in the state, and the stored value is not plaintext
    from sync.models import StateEntry
    from sync.state import DatabaseState

    assert list(DatabaseState(conn.pk).snapshot()["fulfillment_orders"]) == ["FO-99"]
    row = StateEntry.objects.get(connection=conn, key="fulfillment_orders")
    assert "FO-99" not in row.value and "X-1" not in row.value
