"""Stock invariants under real concurrency: threads, each on its own database connection."""

import threading
import time

from django.db import connections
from django.db.models import Sum
from django_tenants.utils import schema_context

from inventory import services
from inventory.models import Reservation, StockBalance, StockMovement, Transfer
from inventory.services import InsufficientStock, Reference, ReserveLine
from tests.factories import SKUFactory, WarehouseFactory


def run_threads(n: int, work) -> list:
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def target(i: int) -> None:
        try:
            with schema_context("brand_alpha"):
                barrier.wait()
                results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - the test inspects every outcome
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_fifty_threads_reserving_one_of_twenty(committed_alpha):
    sku, wh = SKUFactory(), WarehouseFactory()
    services.receive(sku=sku, warehouse=wh, quantity=20)

    def reserve_one(i: int):
        return services.reserve(
            lines=[ReserveLine(sku, wh, 1)],
            kind="order_line",
            reference=Reference("order_line", f"storm-{i}"),
        )

    results = run_threads(50, reserve_one)

    ok = [r for r in results if isinstance(r, list)]
    short = [r for r in results if isinstance(r, InsufficientStock)]
    assert (len(ok), len(short)) == (20, 30), [
        r for r in results if not isinstance(r, (list, InsufficientStock))
    ]
    assert all(e.code == "insufficient_stock" for e in short)
    row = StockBalance.objects.get(sku=sku, warehouse=wh, status="sellable")
    assert (row.quantity, row.reserved) == (20, 20)
    assert Reservation.objects.filter(status="active").aggregate(t=Sum("quantity"))["t"] == 20
    assert services.available_to_promise(sku_ids=[sku.pk]) == {(sku.pk, wh.pk): 0}
    ledger = StockMovement.objects.filter(sku=sku).aggregate(t=Sum("quantity"))["t"]
    assert ledger == row.quantity


def test_opposite_lock_orders_never_deadlock(committed_alpha):
    a, b, wh = SKUFactory(), SKUFactory(), WarehouseFactory()
    services.receive(sku=a, warehouse=wh, quantity=100)
    services.receive(sku=b, warehouse=wh, quantity=100)
    latencies: list[float] = []

    def reserve_pair(i: int):
        pair = [a, b] if i % 2 else [b, a]
        results = []
        for round_ in range(5):
            start = time.perf_counter()
            results.append(
                services.reserve(
                    lines=[ReserveLine(pair[0], wh, 1), ReserveLine(pair[1], wh, 1)],
                    kind="order_line",
                    reference=Reference("order", f"pair-{i}-{round_}"),
                )
            )
            latencies.append(time.perf_counter() - start)
        return results

    results = run_threads(20, reserve_pair)

    errors = [r for r in results if isinstance(r, Exception)]
    assert errors == []
    for sku in (a, b):
        row = StockBalance.objects.get(sku=sku, warehouse=wh, status="sellable")
        assert (row.quantity, row.reserved) == (100, 100)
    assert len(latencies) == 100


def test_transfers_in_opposite_directions_never_deadlock(committed_alpha):
    # EAST→WEST ships lines (a, b) while WEST→EAST ships (b, a), and each receives at its
    # destination while the other ships from there: without one lock order, a receive
    # holding a's rows and a shipment holding b's would wait on each other.
    a, b = SKUFactory(), SKUFactory()
    east, west = WarehouseFactory(code="EAST"), WarehouseFactory(code="WEST")
    for sku in (a, b):
        for wh in (east, west):
            services.receive(sku=sku, warehouse=wh, quantity=100)

    def shuttle(i: int) -> int:
        source, destination, lines = (
            (east, west, [(a, 1), (b, 2)]) if i % 2 else (west, east, [(b, 2), (a, 1)])
        )
        for _ in range(4):
            transfer = services.ship_transfer(source=source, destination=destination, lines=lines)
            services.receive_transfer(transfer=transfer)
        return i

    results = run_threads(12, shuttle)

    assert [r for r in results if isinstance(r, Exception)] == []
    # Six threads each way, 4 round trips of 1 a and 2 b: the warehouses end where they began.
    for sku in (a, b):
        for wh in (east, west):
            row = StockBalance.objects.get(sku=sku, warehouse=wh, status="sellable")
            transit = StockBalance.objects.get(sku=sku, warehouse=wh, status="in_transit")
            assert (row.quantity, transit.quantity) == (100, 0)
            moved = StockMovement.objects.filter(sku=sku, warehouse=wh, status="sellable")
            assert moved.aggregate(t=Sum("quantity"))["t"] == row.quantity
    assert Transfer.objects.filter(status="received").count() == 48
