"""Stock services on the real database: movements, reservations, transfers, counts."""

import uuid
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Sum

from catalog.services import set_bundle_components
from inventory import services
from inventory.models import (
    MovementKind,
    Reservation,
    StockBalance,
    StockEvent,
    StockMovement,
    StockStatus,
    TransferStatus,
)
from inventory.services import InsufficientStock, Reference, ReserveLine, StockError
from tests.factories import SKUFactory, WarehouseFactory

pytestmark = pytest.mark.usefixtures("in_alpha")


def balance(sku, warehouse, status=StockStatus.SELLABLE) -> tuple[int, int]:
    row = StockBalance.objects.filter(sku=sku, warehouse=warehouse, status=status).first()
    return (row.quantity, row.reserved) if row else (0, 0)


def ledger_sum(sku, warehouse, status=StockStatus.SELLABLE) -> int:
    total = StockMovement.objects.filter(sku=sku, warehouse=warehouse, status=status).aggregate(
        t=Sum("quantity")
    )["t"]
    return total or 0


def test_receive_writes_balance_movement_event_and_activity():
    sku, wh = SKUFactory(), WarehouseFactory()

    op = services.receive(sku=sku, warehouse=wh, quantity=12, reference=Reference("po", "7"))

    assert balance(sku, wh) == (12, 0)
    movement = StockMovement.objects.get()
    assert (movement.kind, movement.quantity, movement.balance_after) == ("receipt", 12, 12)
    assert (movement.reference_type, movement.reference_id) == ("po", "7")
    event = StockEvent.objects.get()
    assert (event.available_before, event.available_after, event.cause) == (0, 12, "received")
    assert event.operation_id == op.operation_id


def test_adjust_down_below_zero_is_refused_and_writes_nothing():
    sku, wh = SKUFactory(), WarehouseFactory()
    services.receive(sku=sku, warehouse=wh, quantity=3)
    movements, events = StockMovement.objects.count(), StockEvent.objects.count()

    with pytest.raises(InsufficientStock) as excinfo:
        services.adjust(sku=sku, warehouse=wh, delta=-4, reason_code="lost")

    assert excinfo.value.details == {
        "sku": sku.code,
        "warehouse": wh.code,
        "status": "sellable",
        "available": 3,
        "requested": 4,
    }
    assert balance(sku, wh) == (3, 0)
    assert (StockMovement.objects.count(), StockEvent.objects.count()) == (movements, events)


def test_adjustment_needs_a_reason():
    sku, wh = SKUFactory(), WarehouseFactory()
    with pytest.raises(StockError) as excinfo:
        services.adjust(sku=sku, warehouse=wh, delta=5, reason_code="")
    assert excinfo.value.code == "reason_required"
    assert StockMovement.objects.count() == 0


def test_database_refuses_negative_stock_even_without_the_service():
    sku, wh = SKUFactory(), WarehouseFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        StockBalance.objects.create(sku=sku, warehouse=wh, status="sellable", quantity=-1)
    with pytest.raises(IntegrityError), transaction.atomic():
        StockBalance.objects.create(
            sku=sku, warehouse=wh, status="sellable", quantity=1, reserved=2
        )


def test_database_refuses_what_the_services_would_never_write():
    sku, wh = SKUFactory(), WarehouseFactory()
    services.receive(sku=sku, warehouse=wh, quantity=5)
    services.reserve(
        lines=[ReserveLine(sku, wh, 2)], kind="order_line", reference=Reference("order", "c")
    )
    rows = StockBalance.objects.filter(sku=sku, warehouse=wh, status="sellable")

    # A bulk UPDATE skips every Python check: the CHECK constraints still hold.
    for change in (
        {"quantity": F("quantity") - 6},  # sellable below zero
        {"reserved": F("reserved") - 3},  # reserved below zero
        {"quantity": 1},  # below the 2 reserved
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            rows.update(**change)
    with pytest.raises(IntegrityError), transaction.atomic():
        StockBalance.objects.create(sku=sku, warehouse=wh, status="damaged", quantity=3, reserved=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        StockMovement.objects.create(
            operation_id=uuid.uuid4(),
            kind="adjustment",
            sku=sku,
            warehouse=wh,
            status="sellable",
            quantity=0,
            balance_after=5,
        )

    assert balance(sku, wh) == (5, 2)


def test_reservation_reduces_atp_and_release_restores_it():
    sku, wh = SKUFactory(), WarehouseFactory(safety_buffer=2)
    services.receive(sku=sku, warehouse=wh, quantity=10)

    services.reserve(
        lines=[ReserveLine(sku, wh, 5)],
        kind="manual_hold",
        reference=Reference("hold", "wholesale-42"),
    )

    assert services.available_to_promise(sku_ids=[sku.pk]) == {(sku.pk, wh.pk): 3}
    assert balance(sku, wh) == (10, 5)
    released = services.release(reference=Reference("hold", "wholesale-42"))
    assert [r.status for r in released] == ["released"]
    assert services.available_to_promise(sku_ids=[sku.pk]) == {(sku.pk, wh.pk): 8}
    assert [(e.available_before, e.available_after) for e in StockEvent.objects.all()] == [
        (0, 8),
        (8, 3),
        (3, 8),
    ]


def test_the_three_reservation_kinds_are_typed_rows_tied_to_their_reference():
    sku, wh = SKUFactory(), WarehouseFactory(safety_buffer=1)
    services.receive(sku=sku, warehouse=wh, quantity=20)

    services.reserve(
        lines=[ReserveLine(sku, wh, 3)],
        kind="order_line",
        reference=Reference("order_line", "OL-9"),
    )
    services.reserve(
        lines=[ReserveLine(sku, wh, 5)],
        kind="manual_hold",
        reference=Reference("customer", "wholesale-acme"),
        note="Acme picks up Friday",
    )
    [buffer] = services.reserve(
        lines=[ReserveLine(sku, wh, 4)],
        kind="channel_buffer",
        reference=Reference("channel", "amazon"),
    )

    assert sorted(
        Reservation.objects.values_list("kind", "reference_type", "reference_id", "quantity")
    ) == [
        ("channel_buffer", "channel", "amazon", 4),
        ("manual_hold", "customer", "wholesale-acme", 5),
        ("order_line", "order_line", "OL-9", 3),
    ]
    # Available to promise = 20 sellable − 12 reserved − 1 safety buffer.
    assert balance(sku, wh) == (20, 12)
    assert services.available_to_promise(sku_ids=[sku.pk]) == {(sku.pk, wh.pk): 7}

    services.release(ids=[buffer.pk])
    assert services.available_to_promise(sku_ids=[sku.pk]) == {(sku.pk, wh.pk): 11}
    with pytest.raises(StockError) as excinfo:
        services.reserve(
            lines=[ReserveLine(sku, wh, 1)], kind="wishlist", reference=Reference("x", "1")
        )
    assert excinfo.value.code == "invalid_kind"
    with pytest.raises(StockError) as excinfo:
        services.reserve(lines=[ReserveLine(sku, wh, 1)], kind="manual_hold", reference=Reference())
    assert excinfo.value.code == "reference_required"
    assert Reservation.objects.filter(status="active").count() == 2
    assert balance(sku, wh) == (20, 8)


def test_reserving_more_than_available_is_all_or_nothing():
    a, b, wh = SKUFactory(), SKUFactory(), WarehouseFactory()
    services.receive(sku=a, warehouse=wh, quantity=5)
    services.receive(sku=b, warehouse=wh, quantity=1)

    with pytest.raises(InsufficientStock) as excinfo:
        services.reserve(
            lines=[ReserveLine(a, wh, 2), ReserveLine(b, wh, 2)],
            kind="order_line",
            reference=Reference("order", "1"),
        )

    assert excinfo.value.details["sku"] == b.code
    assert Reservation.objects.count() == 0
    assert (balance(a, wh), balance(b, wh)) == ((5, 0), (1, 0))


def test_consume_ships_reserved_stock():
    sku, wh = SKUFactory(), WarehouseFactory()
    services.receive(sku=sku, warehouse=wh, quantity=4)
    services.reserve(
        lines=[ReserveLine(sku, wh, 3)], kind="order_line", reference=Reference("order_line", "9")
    )

    services.consume(reference=Reference("order_line", "9"))

    assert balance(sku, wh) == (1, 0)
    ship = StockMovement.objects.get(kind=MovementKind.SHIP)
    assert (ship.quantity, ship.balance_after) == (-3, 1)
    assert Reservation.objects.get().status == "consumed"


def test_bundle_reserves_and_consumes_its_components():
    wh = WarehouseFactory()
    shirt, cap, kit = SKUFactory(), SKUFactory(), SKUFactory(code="KIT-1")
    set_bundle_components(kit, [(shirt, 1), (cap, 2)])
    kit.refresh_from_db()
    services.receive(sku=shirt, warehouse=wh, quantity=10)
    services.receive(sku=cap, warehouse=wh, quantity=7)
    assert services.bundle_availability(kit, warehouse_ids=[wh.pk]) == {wh.pk: 3}

    services.reserve(
        lines=[ReserveLine(kit, wh, 2)], kind="order_line", reference=Reference("order_line", "k1")
    )
    services.consume(reference=Reference("order_line", "k1"))

    assert (balance(shirt, wh), balance(cap, wh)) == ((8, 0), (3, 0))
    assert services.bundle_availability(kit, warehouse_ids=[wh.pk]) == {wh.pk: 1}
    assert {r.bundle_sku_id for r in Reservation.objects.all()} == {kit.pk}
    with pytest.raises(StockError) as excinfo:
        services.receive(sku=kit, warehouse=wh, quantity=1)
    assert excinfo.value.code == "bundle_has_no_stock"


def test_transfer_goes_through_in_transit():
    sku, west, east = SKUFactory(), WarehouseFactory(), WarehouseFactory()
    services.receive(sku=sku, warehouse=west, quantity=10)

    transfer = services.ship_transfer(source=west, destination=east, lines=[(sku, 6)])

    assert balance(sku, west) == (4, 0)
    assert balance(sku, east, StockStatus.IN_TRANSIT) == (6, 0)
    assert balance(sku, east) == (0, 0)
    services.receive_transfer(transfer=transfer, quantities={sku.pk: 2})
    transfer.refresh_from_db()
    assert transfer.status == TransferStatus.IN_TRANSIT
    services.receive_transfer(transfer=transfer)
    transfer.refresh_from_db()
    assert transfer.status == TransferStatus.RECEIVED
    assert balance(sku, east, StockStatus.IN_TRANSIT) == (0, 0)
    assert balance(sku, east) == (6, 0)
    with pytest.raises(StockError):
        services.receive_transfer(transfer=transfer)


def test_status_change_moves_stock_between_statuses():
    sku, wh = SKUFactory(), WarehouseFactory()
    services.receive(sku=sku, warehouse=wh, quantity=5)
    services.change_status(
        sku=sku, warehouse=wh, quantity=2, from_status="sellable", to_status="damaged"
    )
    assert balance(sku, wh) == (3, 0)
    assert balance(sku, wh, StockStatus.DAMAGED) == (2, 0)


def test_cycle_count_posts_variance_as_corrections():
    # Costed, and worth less than the approval ceiling: it posts at once.
    costed = {"unit_cost": Decimal("1.00"), "cost_currency": "USD"}
    a, b, wh = SKUFactory(**costed), SKUFactory(**costed), WarehouseFactory()
    services.receive(sku=a, warehouse=wh, quantity=10)
    services.receive(sku=b, warehouse=wh, quantity=4)
    count = services.start_count(warehouse=wh)
    line_a = services.enter_count(count=count, sku=a, counted=8)
    line_b = services.enter_count(count=count, sku=b, counted=4)
    assert (line_a.variance, line_b.variance) == (-2, 0)

    services.post_count(count=count)

    assert (balance(a, wh), balance(b, wh)) == ((8, 0), (4, 0))
    correction = StockMovement.objects.get(kind=MovementKind.COUNT_CORRECTION)
    assert (correction.sku_id, correction.quantity) == (a.pk, -2)


def test_every_write_takes_ordered_row_locks_before_touching_stock():
    sku_a, sku_b, wh = SKUFactory(), SKUFactory(), WarehouseFactory()
    services.receive(sku=sku_a, warehouse=wh, quantity=5)
    services.receive(sku=sku_b, warehouse=wh, quantity=5)
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        services.reserve(
            lines=[ReserveLine(sku_b, wh, 1), ReserveLine(sku_a, wh, 1)],
            kind="order_line",
            reference=Reference("order", "lock"),
        )

    sql = [q["sql"] for q in ctx.captured_queries]
    lock = next(i for i, s in enumerate(sql) if "FOR UPDATE" in s and "stockbalance" in s)
    assert 'ORDER BY "inventory_stockbalance"."sku_id" ASC' in sql[lock]
    writes = [
        i
        for i, s in enumerate(sql)
        if s.startswith(("UPDATE", "INSERT"))
        and ("stockbalance" in s or "reservation" in s)
        and "ON CONFLICT DO NOTHING" not in s
    ]
    assert writes and min(writes) > lock


def test_ledger_sums_equal_balances():
    sku, wh = SKUFactory(), WarehouseFactory()
    services.receive(sku=sku, warehouse=wh, quantity=9)
    services.adjust(sku=sku, warehouse=wh, delta=-2, reason_code="damaged")
    services.record_return(sku=sku, warehouse=wh, quantity=1)
    assert ledger_sum(sku, wh) == balance(sku, wh)[0] == 8
