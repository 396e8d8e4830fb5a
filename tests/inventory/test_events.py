"""Every flow that changes available-to-promise emits its StockEvent, in the same
transaction, with the value before and after: the contract channel pushes and partner
webhooks rely on (they read nothing else)."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from inventory import services
from inventory.models import StockEvent, StockMovement
from inventory.services import Reference, ReserveLine
from tests.factories import SKUFactory, WarehouseFactory

pytestmark = pytest.mark.usefixtures("in_alpha")


class Tape:
    """What each step wrote: the new events and the new movements, in order."""

    def __init__(self) -> None:
        self.events = StockEvent.objects.count()
        self.movements = StockMovement.objects.count()

    def take(self) -> tuple[list, list]:
        events = list(
            StockEvent.objects.order_by("id")[self.events :].values_list(
                "warehouse__code", "available_before", "available_after", "cause"
            )
        )
        movements = list(
            StockMovement.objects.order_by("id")[self.movements :].values_list(
                "warehouse__code", "kind", "status", "quantity"
            )
        )
        self.events += len(events)
        self.movements += len(movements)
        return events, movements


def test_each_kind_of_stock_change_announces_the_available_it_moved():
    sku = SKUFactory(unit_cost=Decimal("1.00"), cost_currency="USD")
    east = WarehouseFactory(code="EAST", safety_buffer=1)
    west = WarehouseFactory(code="WEST")
    tape = Tape()

    services.receive(sku=sku, warehouse=east, quantity=10)
    assert tape.take() == (
        [("EAST", 0, 9, "received")],  # 10 − buffer 1
        [("EAST", "receipt", "sellable", 10)],
    )

    services.adjust(sku=sku, warehouse=east, delta=-2, reason_code="damaged")
    assert tape.take() == (
        [("EAST", 9, 7, "adjusted")],
        [("EAST", "adjustment", "sellable", -2)],
    )

    services.change_status(
        sku=sku, warehouse=east, quantity=1, from_status="sellable", to_status="quarantined"
    )
    assert tape.take() == (
        [("EAST", 7, 6, "status_changed")],
        [
            ("EAST", "status_change", "sellable", -1),
            ("EAST", "status_change", "quarantined", 1),
        ],
    )

    # Quarantined to damaged: the ledger records it, available does not move, so there
    # is nothing for a channel to hear.
    services.change_status(
        sku=sku, warehouse=east, quantity=1, from_status="quarantined", to_status="damaged"
    )
    assert tape.take() == (
        [],
        [
            ("EAST", "status_change", "quarantined", -1),
            ("EAST", "status_change", "damaged", 1),
        ],
    )

    # The three reservation kinds each take from available; none writes a movement.
    for kind, ref in (
        ("manual_hold", Reference("hold", "wholesale-7")),
        ("channel_buffer", Reference("channel", "amazon")),
        ("order_line", Reference("order_line", "OL-1")),
    ):
        services.reserve(lines=[ReserveLine(sku, east, 1)], kind=kind, reference=ref)
    assert tape.take() == (
        [("EAST", 6, 5, "reserved"), ("EAST", 5, 4, "reserved"), ("EAST", 4, 3, "reserved")],
        [],
    )

    services.release(reference=Reference("hold", "wholesale-7"))
    assert tape.take() == ([("EAST", 3, 4, "released")], [])

    # Shipping reserved stock: on hand and reserved both drop by one, available stays.
    services.consume(reference=Reference("order_line", "OL-1"))
    assert tape.take() == ([], [("EAST", "ship", "sellable", -1)])

    transfer = services.ship_transfer(source=east, destination=west, lines=[(sku, 2)])
    assert tape.take() == (
        [("EAST", 4, 2, "transfer_shipped")],
        [
            ("EAST", "transfer_out", "sellable", -2),
            ("WEST", "transfer_in_transit", "in_transit", 2),
        ],
    )

    services.receive_transfer(transfer=transfer)
    assert tape.take() == (
        [("WEST", 0, 2, "transfer_received")],
        [("WEST", "transfer_in", "in_transit", -2), ("WEST", "transfer_in", "sellable", 2)],
    )

    services.record_return(sku=sku, warehouse=west, quantity=1)
    assert tape.take() == (
        [("WEST", 2, 3, "returned")],
        [("WEST", "return", "sellable", 1)],
    )

    count = services.start_count(warehouse=west)
    services.enter_count(count=count, sku=sku, counted=5)
    services.post_count(count=count)
    assert tape.take() == (
        [("WEST", 3, 5, "count_posted")],
        [("WEST", "count_correction", "sellable", 2)],
    )

    # A bigger safety buffer moves available without any movement.
    services.update_warehouse(east, safety_buffer=3)
    assert tape.take() == ([("EAST", 2, 0, "buffer_changed")], [])
    services.update_warehouse(east, name="East DC (renamed)")
    assert tape.take() == ([], [])

    assert services.available_to_promise(sku_ids=[sku.pk]) == {
        (sku.pk, east.pk): 0,
        (sku.pk, west.pk): 5,
    }


def test_a_buffer_change_announces_only_the_skus_whose_available_moved():
    east, west = WarehouseFactory(safety_buffer=2), WarehouseFactory(safety_buffer=2)
    plenty, scarce, none_sellable = SKUFactory(), SKUFactory(), SKUFactory()
    services.receive(sku=plenty, warehouse=east, quantity=20)
    services.receive(sku=scarce, warehouse=east, quantity=1)  # 1 − 2 → 0 either way
    services.receive(sku=none_sellable, warehouse=east, quantity=4, status="damaged")
    services.receive(sku=plenty, warehouse=west, quantity=20)
    mark = StockEvent.objects.order_by("-id").values_list("id", flat=True).first()

    services.update_warehouse(east, safety_buffer=5)

    events = list(
        StockEvent.objects.filter(id__gt=mark).values_list(
            "sku_id", "warehouse_id", "available_before", "available_after", "cause"
        )
    )
    assert events == [(plenty.pk, east.pk, 18, 15, "buffer_changed")]
    assert services.available_to_promise(sku_ids=[plenty.pk]) == {
        (plenty.pk, east.pk): 15,
        (plenty.pk, west.pk): 18,
    }


def test_a_refused_buffer_change_announces_nothing():
    east = WarehouseFactory(safety_buffer=2)
    sku = SKUFactory()
    services.receive(sku=sku, warehouse=east, quantity=20)
    events = StockEvent.objects.count()

    with pytest.raises(ValidationError):
        services.update_warehouse(east, safety_buffer=-1)

    assert StockEvent.objects.count() == events
    east.refresh_from_db()
    assert east.safety_buffer == 2
