"""Property tests: whatever mix of valid and invalid operations, the ledger explains stock."""

from collections import defaultdict

import pytest
from django.db.models import Sum
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog.services import set_bundle_components
from inventory import services
from inventory.models import StockBalance, StockMovement
from inventory.services import Reference, ReserveLine, StockError
from tests.factories import SKUFactory, WarehouseFactory

OPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["receive", "adjust", "status", "reserve", "release", "consume", "transfer", "return"]
        ),
        st.integers(0, 2),  # sku index
        st.integers(0, 1),  # warehouse index
        st.integers(-6, 12),  # quantity (invalid ones included)
    ),
    min_size=1,
    max_size=25,
)


def snapshot() -> dict:
    return {
        (b.sku_id, b.warehouse_id, b.status): (b.quantity, b.reserved)
        for b in StockBalance.objects.all()
    }


@pytest.mark.django_db
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=OPS)
def test_balances_always_equal_the_fold_of_the_ledger(brand_a, ops):
    with schema_context(brand_a.schema_name):
        skus = [SKUFactory() for _ in range(3)]
        whs = [WarehouseFactory() for _ in range(2)]
        refs = 0
        for name, s, w, q in ops:
            sku, wh, other = skus[s], whs[w], whs[1 - w]
            before = snapshot()
            movements = StockMovement.objects.count()
            try:
                if name == "receive":
                    services.receive(sku=sku, warehouse=wh, quantity=q)
                elif name == "adjust":
                    services.adjust(sku=sku, warehouse=wh, delta=q, reason_code="correction")
                elif name == "status":
                    services.change_status(
                        sku=sku,
                        warehouse=wh,
                        quantity=q,
                        from_status="sellable",
                        to_status="damaged",
                    )
                elif name == "reserve":
                    refs += 1
                    services.reserve(
                        lines=[ReserveLine(sku, wh, q)],
                        kind="order_line",
                        reference=Reference("order_line", str(refs)),
                    )
                elif name == "release":
                    services.release(reference=Reference("order_line", str(refs)))
                elif name == "consume":
                    services.consume(reference=Reference("order_line", str(refs)))
                elif name == "transfer":
                    t = services.ship_transfer(source=wh, destination=other, lines=[(sku, q)])
                    services.receive_transfer(transfer=t)
                else:
                    services.record_return(sku=sku, warehouse=wh, quantity=q)
            except StockError:
                # A rejected operation writes nothing at all.
                assert snapshot() == before
                assert StockMovement.objects.count() == movements

        fold: dict = defaultdict(int)
        for sku_id, wh_id, status, total in (
            StockMovement.objects.values_list("sku_id", "warehouse_id", "status")
            .annotate(t=Sum("quantity"))
            .values_list("sku_id", "warehouse_id", "status", "t")
        ):
            fold[(sku_id, wh_id, status)] = total
        for key, (quantity, reserved) in snapshot().items():
            assert quantity == fold[key]
            assert quantity >= 0 and reserved >= 0
            if key[2] == "sellable":
                assert reserved <= quantity
        active = defaultdict(int)
        from inventory.models import Reservation

        for r in Reservation.objects.filter(status="active"):
            active[(r.sku_id, r.warehouse_id, "sellable")] += r.quantity
        for key, (_, reserved) in snapshot().items():
            assert reserved == active[key]


@pytest.mark.django_db
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    recipe=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    stock=st.lists(st.integers(0, 40), min_size=4, max_size=4),
    reserved=st.lists(st.integers(0, 10), min_size=4, max_size=4),
    buffer=st.integers(0, 3),
)
def test_bundle_availability_is_min_of_component_floors(brand_a, recipe, stock, reserved, buffer):
    with schema_context(brand_a.schema_name):
        wh = WarehouseFactory(safety_buffer=buffer)
        components = [SKUFactory() for _ in recipe]
        bundle = SKUFactory()
        set_bundle_components(bundle, list(zip(components, recipe, strict=True)))
        bundle.refresh_from_db()
        expected = []
        for i, (component, per) in enumerate(zip(components, recipe, strict=True)):
            if stock[i]:
                services.receive(sku=component, warehouse=wh, quantity=stock[i])
            held = min(reserved[i], stock[i])
            if held:
                services.reserve(
                    lines=[ReserveLine(component, wh, held)],
                    kind="manual_hold",
                    reference=Reference("hold", f"h{i}"),
                )
            expected.append(max(stock[i] - held - buffer, 0) // per)

        assert services.bundle_availability(bundle, warehouse_ids=[wh.pk]) == {wh.pk: min(expected)}
