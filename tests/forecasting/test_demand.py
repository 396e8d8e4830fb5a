"""Demand history rebuilt from real orders (ingested through orders.services) and stock-out
days reconstructed from the stock event history."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import F

from catalog.models import BundleComponent
from catalog.services import map_listing
from forecasting import services
from forecasting.models import DemandDay, RunKind, StockoutDay
from inventory import services as stock
from inventory.models import StockEvent, StockMovement
from orders.models import Order, OrderStatus
from orders.services import LineInput, cancel_order, ingest_order
from replenishment import services as replenishment
from tenants.models import Brand
from tests.factories import SKUFactory
from tests.orders.conftest import build_network, order_input, publish_typical_rules

pytestmark = pytest.mark.django_db


def at(day: int, hour: int = 15) -> datetime:
    return datetime(2026, 3, day, hour, 0, tzinfo=UTC)


def rows() -> set[tuple]:
    return set(
        DemandDay.objects.values_list(
            "sku__code", "channel", "warehouse__code", "day", "units", "returned"
        )
    )


@pytest.fixture
def net(in_alpha):
    network = build_network()
    publish_typical_rules()
    return network


def test_orders_become_daily_units_per_sku_channel_and_routed_warehouse(net):
    ingest_order(order_input(state="CA", lines=(("TEE", 2), ("HAT", 1)), placed_at=at(2)))
    ingest_order(order_input(state="CA", lines=(("TEE", 3),), placed_at=at(2, 18)))
    ingest_order(order_input(state="TX", lines=(("TEE", 1),), placed_at=at(3)))
    map_listing(channel="amazon", external_sku="amz-TEE", sku=net["skus"]["TEE"])
    ingest_order(_amazon_order("a1", at(3), 4))

    written = services.rebuild_demand()

    got = {(sku, ch, day, units) for sku, ch, _wh, day, units, _r in rows()}
    assert got == {
        ("TEE", "shop", date(2026, 3, 2), 5),
        ("HAT", "shop", date(2026, 3, 2), 1),
        ("TEE", "shop", date(2026, 3, 3), 1),
        ("TEE", "amazon", date(2026, 3, 3), 4),
    }
    assert written == 4
    # Every unit was routed, so every row names the warehouse its fulfillment ships from.
    print(
        rows(),
        [(o.external_id, o.status, o.hold_reason, o.hold_detail) for o in Order.objects.all()],
    )
    assert all(wh is not None for _s, _c, wh, _d, _u, _r in rows())
    tee_tx = DemandDay.objects.get(sku__code="TEE", day=date(2026, 3, 3), channel="shop")
    assert tee_tx.warehouse.code == "TX"


def _amazon_order(external_id: str, placed_at: datetime, quantity: int):
    base = order_input(state="CA", placed_at=placed_at, external_id=external_id)
    line = LineInput(f"{external_id}-0", "amz-TEE", quantity, Decimal("20.00"))
    return replace(base, channel="amazon", lines=[line])


def test_cancelled_orders_are_left_out(net):
    kept = ingest_order(order_input(lines=(("TEE", 2),), placed_at=at(5))).order
    dropped = ingest_order(order_input(lines=(("TEE", 7),), placed_at=at(5))).order
    ingest_order(order_input(lines=(("MUG", 1),), placed_at=at(5), status="cancelled"))
    cancel_order(dropped)

    services.rebuild_demand()

    assert Order.objects.get(pk=dropped.pk).status == OrderStatus.CANCELLED
    assert kept.status != OrderStatus.CANCELLED
    assert {(s, u) for s, _c, _w, _d, u, _r in rows()} == {("TEE", 2)}


def test_returns_are_counted_apart_and_never_net_sales_down(net):
    ingest_order(order_input(lines=(("TEE", 3),), placed_at=at(7)))
    tee, west = net["skus"]["TEE"], net["warehouses"]["WEST"]
    stock.record_return(sku=tee, warehouse=west, quantity=2)
    returned_on = services.brand_today()

    services.rebuild_demand()

    sold = DemandDay.objects.get(sku=tee, day=date(2026, 3, 7))
    assert (sold.units, sold.returned) == (3, 0)
    back = DemandDay.objects.get(sku=tee, day=returned_on, returned__gt=0)
    assert (back.units, back.returned, back.warehouse, back.channel) == (0, 2, west, "")


def test_units_not_routed_have_no_warehouse(in_alpha):
    build_network(levels=[0] * 12)  # nothing in stock: the order is held

    order = ingest_order(order_input(lines=(("TEE", 2),), placed_at=at(9))).order
    services.rebuild_demand()

    assert order.status == OrderStatus.HELD
    assert rows() == {("TEE", "shop", None, date(2026, 3, 9), 2, 0)}


def test_days_follow_the_brand_timezone(net, brand_a):
    Brand.objects.filter(pk=brand_a.pk).update(timezone="America/Los_Angeles")
    # 03:00 UTC on the 10th is still the 9th in Los Angeles.
    ingest_order(order_input(lines=(("TEE", 1),), placed_at=at(10, hour=3)))

    services.rebuild_demand()

    assert {d for _s, _c, _w, d, _u, _r in rows()} == {date(2026, 3, 9)}


def test_a_bundle_line_counts_as_the_bundle_sku(net):
    box = SKUFactory(code="BOX", is_bundle=True)
    BundleComponent.objects.create(bundle=box, component=net["skus"]["TEE"], quantity=1)
    BundleComponent.objects.create(bundle=box, component=net["skus"]["MUG"], quantity=2)
    map_listing(channel="shop", external_sku="ext-BOX", sku=box)

    ingest_order(order_input(lines=(("BOX", 2),), placed_at=at(11)))
    services.rebuild_demand()

    assert {(s, u) for s, _c, w, _d, u, _r in rows() if w} == {("BOX", 2)}


def test_incremental_rebuild_replaces_only_the_window(net):
    ingest_order(order_input(lines=(("TEE", 1),), placed_at=at(1)))
    late = ingest_order(order_input(lines=(("TEE", 5),), placed_at=at(20))).order
    services.rebuild_demand()
    cancel_order(late)
    ingest_order(order_input(lines=(("HAT", 2),), placed_at=at(21)))

    services.rebuild_demand(since=date(2026, 3, 15))

    assert {(s, d, u) for s, _c, _w, d, u, _r in rows()} == {
        ("TEE", date(2026, 3, 1), 1),
        ("HAT", date(2026, 3, 21), 2),
    }


def _later() -> None:
    """What happened so far happened an hour before the last refresh (outside the slack
    it allows for writes still open)."""
    hour = timedelta(hours=1)
    Order.objects.update(updated_at=F("updated_at") - hour)
    StockMovement.objects.update(created_at=F("created_at") - hour)


def test_refresh_rebuilds_from_the_earliest_order_changed_since_the_last_one(net):
    # given: two orders, demand refreshed once
    first = ingest_order(order_input(lines=(("TEE", 4),), placed_at=at(1))).order
    ingest_order(order_input(lines=(("MUG", 1),), placed_at=at(10)))
    assert services.refresh_demand(today=date(2026, 4, 20)) == 2
    _later()

    # then: nothing changed, nothing rebuilt
    assert services.refresh_demand(today=date(2026, 4, 20)) is None

    # when: an order for an old day arrives late, and the oldest order is cancelled —
    # both before the nightly 30-day window
    ingest_order(order_input(lines=(("HAT", 2),), placed_at=at(3)))
    cancel_order(first)
    services.refresh_demand(today=date(2026, 4, 20), at_least_days=30)

    # then: history follows the orders
    assert {(s, d, u) for s, _c, _w, d, u, _r in rows()} == {
        ("HAT", date(2026, 3, 3), 2),
        ("MUG", date(2026, 3, 10), 1),
    }


def test_refresh_counts_a_return_booked_since_the_last_one(net):
    ingest_order(order_input(lines=(("TEE", 3),), placed_at=at(7)))
    services.refresh_demand()
    _later()

    stock.record_return(sku=net["skus"]["TEE"], warehouse=net["warehouses"]["WEST"], quantity=1)
    services.refresh_demand()

    assert DemandDay.objects.get(day=services.brand_today()).returned == 1


def test_a_manual_run_and_the_plan_read_orders_that_arrived_after_the_last_rebuild(net):
    # given: orders ingested, the night's rebuild not run yet (a channel's first backfill)
    ingest_order(order_input(lines=(("TEE", 2), ("MUG", 1)), placed_at=at(2)))
    assert not DemandDay.objects.exists()

    # when: someone runs forecasts now
    run = services.run_forecasts(kind=RunKind.MANUAL, publish=False)

    # then: both SKUs have history and are in the run
    assert run.total == 2
    _later()

    # and an order arriving after that is demand when the day's plan is made
    ingest_order(order_input(lines=(("HAT", 5),), placed_at=at(4)))
    replenishment.plan(today=date(2026, 3, 5))
    assert DemandDay.objects.get(sku__code="HAT").units == 5


def _move_events(sku, when: date) -> None:
    """Date the SKU's newest stock events (made now by the services) on `when`."""
    newest = StockEvent.objects.filter(sku=sku).order_by("-id")
    ids = [e.pk for e in newest if e.created_at.date() == datetime.now(UTC).date()]
    StockEvent.objects.filter(pk__in=ids).update(
        created_at=datetime.combine(when, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    )


def test_days_without_sellable_stock_anywhere_are_stockout_days(in_alpha):
    net = build_network(levels=[0] * 12)
    tee, west, tx = net["skus"]["TEE"], net["warehouses"]["WEST"], net["warehouses"]["TX"]
    today = services.brand_today()
    d = [today - timedelta(days=10 - i) for i in range(11)]  # d[10] is today

    stock.receive(sku=tee, warehouse=west, quantity=2)
    _move_events(tee, d[0])
    stock.receive(sku=tee, warehouse=tx, quantity=1)
    _move_events(tee, d[1])
    stock.adjust(sku=tee, warehouse=west, delta=-2, reason_code="damaged")
    _move_events(tee, d[3])  # one unit left in TX: not out
    stock.adjust(sku=tee, warehouse=tx, delta=-1, reason_code="lost")
    _move_events(tee, d[5])  # nothing anywhere from here
    stock.receive(sku=tee, warehouse=west, quantity=4)
    _move_events(tee, d[8])  # back in stock during d[8]

    services.rebuild_demand()

    out = set(StockoutDay.objects.filter(sku=tee).values_list("day", flat=True))
    assert out == {d[5], d[6], d[7], d[8]}
    # Zero sales on those days read as missing, not as zero demand.
    series = services.daily_units([tee.pk], start=d[4], end=d[9])[tee.pk]
    assert series == [0.0, None, None, None, None, 0.0]

    # An incremental rebuild from d[7] carries the level into the window.
    services.rebuild_demand(since=d[7])
    assert set(StockoutDay.objects.filter(sku=tee).values_list("day", flat=True)) == out


def test_a_bundle_is_out_when_a_component_is(in_alpha):
    net = build_network(levels=[0] * 12)
    tee, mug, west = net["skus"]["TEE"], net["skus"]["MUG"], net["warehouses"]["WEST"]
    box = SKUFactory(code="BOX", is_bundle=True)
    BundleComponent.objects.create(bundle=box, component=tee, quantity=1)
    BundleComponent.objects.create(bundle=box, component=mug, quantity=1)
    today = services.brand_today()
    stock.receive(sku=tee, warehouse=west, quantity=3)
    _move_events(tee, today - timedelta(days=3))
    stock.receive(sku=mug, warehouse=west, quantity=3)
    _move_events(mug, today - timedelta(days=3))
    stock.adjust(sku=mug, warehouse=west, delta=-3, reason_code="damaged")
    _move_events(mug, today - timedelta(days=1))

    services.rebuild_demand()

    mug_out = set(StockoutDay.objects.filter(sku=mug).values_list("day", flat=True))
    assert mug_out == {today - timedelta(days=1), today}
    assert set(StockoutDay.objects.filter(sku=box).values_list("day", flat=True)) == mug_out
    assert not StockoutDay.objects.filter(sku=tee).exists()
