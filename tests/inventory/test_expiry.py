"""Reservation expiry (RELIABILITY 5): expired holds go back to available stock in one run."""

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory import services
from inventory.models import Reservation, StockBalance
from inventory.services import Reference, ReserveLine
from tests.factories import SKUFactory, WarehouseFactory

pytestmark = pytest.mark.usefixtures("in_alpha")


def test_expired_reservations_are_released_and_converted_ones_untouched():
    sku, wh = SKUFactory(), WarehouseFactory()
    services.receive(sku=sku, warehouse=wh, quantity=20)
    start = timezone.now()
    for i in range(10):
        services.reserve(
            lines=[ReserveLine(sku, wh, 1)],
            kind="order_line",
            reference=Reference("cart", f"c{i}"),
            expires_at=start + timedelta(seconds=2),
        )
    # Two carts became orders before expiry: consumed reservations must not be touched.
    services.consume(reference=Reference("cart", "c0"))
    services.consume(reference=Reference("cart", "c1"))
    assert services.available_to_promise(sku_ids=[sku.pk]) == {(sku.pk, wh.pk): 10}

    assert services.expire_reservations(now=start + timedelta(seconds=1)) == 0
    released = services.expire_reservations(now=start + timedelta(seconds=3))

    assert released == 8
    assert Reservation.objects.filter(status="released").count() == 8
    assert Reservation.objects.filter(status="consumed").count() == 2
    row = StockBalance.objects.get(sku=sku, warehouse=wh, status="sellable")
    assert (row.quantity, row.reserved) == (18, 0)
    assert services.available_to_promise(sku_ids=[sku.pk]) == {(sku.pk, wh.pk): 18}
    assert services.expire_reservations(now=start + timedelta(seconds=4)) == 0


def test_expiry_task_runs_inside_the_brand(brand_a):
    from inventory.tasks import expire_reservations_task

    sku, wh = SKUFactory(), WarehouseFactory()
    services.receive(sku=sku, warehouse=wh, quantity=3)
    services.reserve(
        lines=[ReserveLine(sku, wh, 2)],
        kind="manual_hold",
        reference=Reference("hold", "h"),
        expires_at=timezone.now() - timedelta(seconds=1),
    )

    result = expire_reservations_task.apply(headers={"_schema_name": brand_a.schema_name})

    assert result.get() == 1
    assert Reservation.objects.get().status == "released"
