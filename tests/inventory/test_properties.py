"""Property tests: whatever mix of valid and invalid operations, the ledger explains stock."""

import uuid
from collections import defaultdict

import pytest
from django.core.exceptions import ValidationError
from django.db.models import Sum
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.models import ActivityEntry
from catalog.services import set_bundle_components
from inventory import services
from inventory.models import (
    CountLine,
    CycleCount,
    Reservation,
    StockBalance,
    StockEvent,
    StockMovement,
    Transfer,
    TransferStatus,
    Warehouse,
)
from inventory.services import Reference, ReserveLine
from tests.factories import SKUFactory, WarehouseFactory

OPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "receive",
                "adjust",
                "damage",
                "quarantine",
                "release_quarantine",
                "reserve",
                "release",
                "consume",
                "transfer",
                "ship",
                "arrive",
                "return",
                "count",
                "buffer",
            ]
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


def written() -> tuple:
    """Row counts of everything a stock operation may write."""
    return (
        StockMovement.objects.count(),
        StockEvent.objects.count(),
        Reservation.objects.count(),
        Reservation.objects.filter(status="active").count(),
        Transfer.objects.count(),
        Transfer.objects.filter(status=TransferStatus.RECEIVED).count(),
        CountLine.objects.count(),
        CycleCount.objects.filter(status="posted").count(),
        ActivityEntry.objects.count(),
        tuple(Warehouse.objects.order_by("pk").values_list("safety_buffer", flat=True)),
    )


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
        run = uuid.uuid4().hex[:8]  # references of this example only
        refs = 0
        for name, s, w, q in ops:
            sku, wh, other = skus[s], whs[w], whs[1 - w]
            count = None
            if name == "count":
                # Opening the sheet (and entering a valid count) are steps of their own;
                # the operation under test is entering an invalid count, or posting.
                count = services.start_count(warehouse=wh)
                if q >= 0:
                    services.enter_count(count=count, sku=sku, counted=q)
            before, rows = snapshot(), written()
            try:
                if name == "receive":
                    services.receive(sku=sku, warehouse=wh, quantity=q)
                elif name == "adjust":
                    services.adjust(sku=sku, warehouse=wh, delta=q, reason_code="correction")
                elif name in ("damage", "quarantine", "release_quarantine"):
                    from_status, to_status = {
                        "damage": ("sellable", "damaged"),
                        "quarantine": ("sellable", "quarantined"),
                        "release_quarantine": ("quarantined", "sellable"),
                    }[name]
                    services.change_status(
                        sku=sku,
                        warehouse=wh,
                        quantity=q,
                        from_status=from_status,
                        to_status=to_status,
                    )
                elif name == "reserve":
                    refs += 1
                    services.reserve(
                        lines=[ReserveLine(sku, wh, q)],
                        kind=("order_line", "manual_hold", "channel_buffer")[refs % 3],
                        reference=Reference("prop", f"{run}-{refs}"),
                    )
                elif name == "release":
                    services.release(reference=Reference("prop", f"{run}-{refs}"))
                elif name == "consume":
                    services.consume(reference=Reference("prop", f"{run}-{refs}"))
                elif name == "transfer":
                    t = services.ship_transfer(source=wh, destination=other, lines=[(sku, q)])
                    services.receive_transfer(transfer=t)
                elif name == "ship":
                    services.ship_transfer(source=wh, destination=other, lines=[(sku, q)])
                elif name == "arrive":
                    # Part of the oldest open transfer into `wh` (q may exceed what is left).
                    t = Transfer.objects.filter(destination=wh, status="in_transit").last()
                    if t is not None:
                        services.receive_transfer(transfer=t, quantities={sku.pk: q})
                elif name == "count" and q < 0:
                    services.enter_count(count=count, sku=sku, counted=q)
                elif name == "count":
                    services.post_count(count=count, gated=False)
                elif name == "buffer":
                    services.update_warehouse(wh, safety_buffer=q)
                else:
                    services.record_return(sku=sku, warehouse=wh, quantity=q)
            except ValidationError:
                # A rejected operation writes nothing at all: no balance, movement, event,
                # reservation, transfer, count line or activity entry.
                assert snapshot() == before
                assert written() == rows

        # Every balance is the sum of its movements, and nothing is negative.
        fold: dict = defaultdict(int)
        for sku_id, wh_id, status, total in (
            StockMovement.objects.values_list("sku_id", "warehouse_id", "status")
            .annotate(t=Sum("quantity"))
            .values_list("sku_id", "warehouse_id", "status", "t")
        ):
            fold[(sku_id, wh_id, status)] = total
        balances = snapshot()
        for key, (quantity, reserved) in balances.items():
            assert quantity == fold[key]
            assert quantity >= 0 and reserved >= 0
            if key[2] == "sellable":
                assert reserved <= quantity
        # Reserved is exactly what active reservations hold.
        active: dict = defaultdict(int)
        for r in Reservation.objects.filter(status="active"):
            active[(r.sku_id, r.warehouse_id, "sellable")] += r.quantity
        for key, (_, reserved) in balances.items():
            assert reserved == active[key]
        # In transit at a destination is what its open transfers still carry.
        carried: dict = defaultdict(int)
        for t in Transfer.objects.filter(status="in_transit").prefetch_related("lines"):
            for line in t.lines.all():
                carried[(line.sku_id, t.destination_id, "in_transit")] += (
                    line.quantity - line.received_quantity
                )
        for key, (quantity, _) in balances.items():
            if key[2] == "in_transit":
                assert quantity == carried[key]
        # No change of available-to-promise went unannounced: per SKU × warehouse the
        # events chain (each starts where the last ended) and end at today's value.
        chains: dict = defaultdict(list)
        for sku_id, wh_id, was, now in StockEvent.objects.order_by("id").values_list(
            "sku_id", "warehouse_id", "available_before", "available_after"
        ):
            chains[(sku_id, wh_id)].append((was, now))
        for chain in chains.values():
            assert chain[0][0] == 0
            assert all(chain[i][1] == chain[i + 1][0] for i in range(len(chain) - 1))
        buffers = dict(Warehouse.objects.values_list("pk", "safety_buffer"))
        for (sku_id, wh_id, status), (quantity, reserved) in balances.items():
            if status == "sellable":
                expected = services.atp(quantity, reserved, buffers[wh_id])
                chain = chains.get((sku_id, wh_id))
                assert (chain[-1][1] if chain else 0) == expected


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
