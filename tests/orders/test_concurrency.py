"""200 orders for a scarce SKU from 16 threads: no oversell, the rest held, ledger exact."""

import threading
from decimal import Decimal

from django.db import connections
from django.db.models import Sum
from django_tenants.utils import schema_context

from catalog.services import map_listing
from inventory import services as stock
from inventory.models import Reservation, StockBalance, StockMovement
from orders.models import Order
from orders.services import ingest_order
from tests.factories import SKUFactory, WarehouseFactory
from tests.orders.conftest import order_input


def test_scarce_sku_never_oversells(committed_alpha):
    sku = SKUFactory(code="SCARCE", weight=Decimal("100"))
    map_listing(channel="shop", external_sku="ext-SCARCE", sku=sku)
    west = WarehouseFactory(
        code="W1", state="CA", latitude=Decimal("34"), longitude=Decimal("-118")
    )
    east = WarehouseFactory(
        code="E1", state="NJ", latitude=Decimal("40.7"), longitude=Decimal("-74")
    )
    stock.receive(sku=sku, warehouse=west, quantity=30)
    stock.receive(sku=sku, warehouse=east, quantity=20)
    orders = [
        order_input(external_id=f"S-{i}", state="CA" if i % 2 else "NJ", lines=[("SCARCE", 1)])
        for i in range(200)
    ]
    barrier = threading.Barrier(16)
    errors: list[BaseException] = []

    def worker(chunk):
        try:
            with schema_context("brand_alpha"):
                barrier.wait()
                for data in chunk:
                    ingest_order(data)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(orders[i::16],)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)

    assert errors == []
    assert Order.objects.count() == 200
    assert Order.objects.filter(status="routed").count() == 50
    held = Order.objects.filter(status="held")
    assert held.count() == 150
    assert set(held.values_list("hold_reason", flat=True)) == {"insufficient_stock"}
    for wh, qty in ((west, 30), (east, 20)):
        row = StockBalance.objects.get(sku=sku, warehouse=wh, status="sellable")
        assert (row.quantity, row.reserved) == (qty, qty)
        ledger = StockMovement.objects.filter(sku=sku, warehouse=wh).aggregate(t=Sum("quantity"))
        assert ledger["t"] == qty
    assert Reservation.objects.filter(status="active").aggregate(t=Sum("quantity"))["t"] == 50
