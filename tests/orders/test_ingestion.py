"""The ingestion entry point: idempotent, ordered by the channel's update time."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from catalog.models import UnmappedListing
from catalog.services import map_listing, resolve_unmapped, set_bundle_components
from inventory import services as stock
from inventory.models import Reservation, StockBalance
from orders.models import Order, RoutingDecision
from orders.services import cancel_order, ingest_order, mark_shipped
from tests.factories import SKUFactory
from tests.orders.conftest import order_input

pytestmark = pytest.mark.usefixtures("typical_rules")


def reserved(network, code, wh) -> int:
    return StockBalance.objects.get(
        sku=network["skus"][code], warehouse=network["warehouses"][wh], status="sellable"
    ).reserved


def test_replaying_an_order_three_times_then_an_older_update_keeps_one_latest_order(network):
    latest = order_input(external_id="A-1", state="CA", lines=[("TEE", 2)], updated=10)
    for _ in range(3):
        ingest_order(latest)
    stale = order_input(external_id="A-1", state="NY", lines=[("TEE", 9)], updated=5)

    result = ingest_order(stale)

    assert result.applied is False
    order = Order.objects.get(external_id="A-1")
    assert Order.objects.filter(external_id="A-1").count() == 1
    assert (order.ship_state, order.lines.get().quantity) == ("CA", 2)
    assert reserved(network, "TEE", "WEST") == 2
    assert Reservation.objects.filter(status="active").count() == 1


def test_newer_update_changes_lines_and_re_routes(network):
    ingest_order(order_input(external_id="B-1", state="CA", lines=[("TEE", 2)], updated=1))

    ingest_order(order_input(external_id="B-1", state="NY", lines=[("HAT", 3)], updated=2))

    order = Order.objects.get(external_id="B-1")
    assert order.status == "routed"
    assert [(fo.warehouse.code, fo.status) for fo in order.fulfillments.order_by("id")] == [
        ("WEST", "cancelled"),
        ("PA", "open"),
    ]
    assert (reserved(network, "TEE", "WEST"), reserved(network, "HAT", "PA")) == (0, 3)


def test_cancellation_from_the_channel_releases_stock(network):
    ingest_order(order_input(external_id="C-1", lines=[("MUG", 4)], updated=1))
    ingest_order(order_input(external_id="C-1", lines=[("MUG", 4)], updated=2, status="cancelled"))
    order = Order.objects.get(external_id="C-1")
    assert order.status == "cancelled"
    assert reserved(network, "MUG", "WEST") == 0
    # A late "open" update for a cancelled order does not revive it.
    ingest_order(order_input(external_id="C-1", lines=[("MUG", 4)], updated=3))
    assert Order.objects.get(external_id="C-1").status == "cancelled"


def test_unmapped_sku_holds_the_order_until_a_person_maps_it(
    network, django_capture_on_commit_callbacks
):
    data = order_input(external_id="D-1")
    data = data.__class__(
        **{
            **data.__dict__,
            "lines": [data.lines[0].__class__("D-1-0", "mystery-sku", 1, Decimal("9.00"))],
        }
    )

    order = ingest_order(data).order

    assert (order.status, order.hold_reason) == ("held", "unmapped_sku")
    item = UnmappedListing.objects.get(external_sku="mystery-sku")
    assert item.waiting == [{"kind": "order", "id": order.pk}]
    with django_capture_on_commit_callbacks(execute=True):
        resolve_unmapped(item, sku=network["skus"]["HAT"])
    order.refresh_from_db()
    assert order.status == "routed"
    assert order.lines.get().sku == network["skus"]["HAT"]


def test_invalid_address_and_fraud_are_held_with_reasons(network):
    bad = ingest_order(order_input(state="ZZ")).order
    fraud = ingest_order(order_input(fraud_flag=True)).order
    assert (bad.status, bad.hold_reason) == ("held", "invalid_address")
    assert "“ZZ” is not a US state code." in bad.hold_detail
    assert (fraud.status, fraud.hold_reason) == ("held", "fraud")
    assert Reservation.objects.count() == 0


def test_insufficient_stock_everywhere_holds(network):
    order = ingest_order(order_input(lines=[("TEE", 101)])).order
    assert (order.status, order.hold_reason) == ("held", "insufficient_stock")
    assert RoutingDecision.objects.get(order=order).layer == "hold"


def test_malformed_input_is_rejected_before_anything_is_written(network):
    with pytest.raises(ValidationError) as excinfo:
        ingest_order(order_input(lines=[], external_id="E-1"))
    assert "lines" in excinfo.value.message_dict
    assert not Order.objects.filter(external_id="E-1").exists()


def test_shipping_consumes_reservations_and_completes_the_order(network):
    order = ingest_order(order_input(state="TX", lines=[("TEE", 2), ("HAT", 1)])).order
    fo = order.fulfillments.get()

    mark_shipped(fo, tracking_number="1Z999", carrier="UPS")

    order.refresh_from_db()
    assert order.status == "fulfilled"
    tee = StockBalance.objects.get(
        sku=network["skus"]["TEE"], warehouse=network["warehouses"]["TX"], status="sellable"
    )
    assert (tee.quantity, tee.reserved) == (98, 0)
    with pytest.raises(ValidationError):
        cancel_order(order)


def test_a_bundle_reserves_its_components_where_they_all_are_and_cancel_releases(network):
    """Routing checks a bundle's stock on its components and reserves those; a warehouse
    short of one component cannot take the bundle."""
    skus, whs = network["skus"], network["warehouses"]
    kit = SKUFactory(code="KIT")
    set_bundle_components(kit, [(skus["TEE"], 1), (skus["MUG"], 2)])
    kit.refresh_from_db()
    map_listing(channel="shop", external_sku="ext-KIT", sku=kit)
    # WEST (the rule's choice for CA) keeps TEEs but has only 1 MUG: not enough for a kit.
    stock.adjust(sku=skus["MUG"], warehouse=whs["WEST"], delta=-99, reason_code="lost")

    order = ingest_order(order_input(state="CA", lines=[("KIT", 3)])).order

    assert order.status == "routed"
    fo = order.fulfillments.get()
    assert fo.warehouse.code != "WEST"
    assert (
        reserved(network, "TEE", fo.warehouse.code),
        reserved(network, "MUG", fo.warehouse.code),
    ) == (3, 6)
    assert {r.bundle_sku_id for r in Reservation.objects.filter(status="active")} == {kit.pk}
    assert "wanted WEST, which is short of stock" in order.decisions.get().explanation

    cancel_order(order)

    assert (
        reserved(network, "TEE", fo.warehouse.code),
        reserved(network, "MUG", fo.warehouse.code),
    ) == (0, 0)
    assert not Reservation.objects.filter(status="active").exists()
