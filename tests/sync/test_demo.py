"""The demo brand: sandbox orders arrive, route, go to the 3PL and ship; its imported
history gives forecasts, segments and a replenishment plan from the first minute."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Max, Min, Sum
from django.utils import timezone

from catalog.models import SKU
from forecasting import services as forecasting
from forecasting.models import DemandDay, ForecastRun, ImportedSale, SkuForecast, SkuSegment
from orders.models import FulfillmentOrder, Order
from purchasing.models import Supplier
from replenishment import services as replenishment
from replenishment.models import Recommendation
from sync import services
from sync.demo import connect_demo
from sync.models import Connection, FulfillmentPush, SyncRun


def test_demo_connections_make_orders_flow_through_the_sandbox(in_alpha, tasks):
    # given
    assert connect_demo()[0].startswith("Connected the sandbox channel, 3PL and carrier")
    channel = Connection.objects.get(channel_key="sandbox")
    # (a lighter stream than the demo's, to keep the test quick)
    services.update_connection(
        channel, settings={**channel.settings, "orders_per_day": 24, "backfill_days": 2}
    )

    # when: the schedule runs, then the 3PL's next poll
    services.poll_connections()
    tasks.drain()
    Connection.objects.update(last_polled_at=None)
    services.poll_connections(now=timezone.now())
    tasks.drain()

    # then: orders from the sandbox store, routed, some sent to the sandbox 3PL
    assert Order.objects.filter(channel="sandbox").count() > 10
    assert FulfillmentOrder.objects.filter(warehouse__code="NJ-3PL").exists()
    assert FulfillmentPush.objects.filter(status="sent").exists()
    assert set(SyncRun.objects.values_list("status", flat=True)) == {"succeeded"}
    assert sorted(Connection.objects.values_list("kind", flat=True)) == [
        "3pl",
        "carrier",
        "channel",
    ]
    # and running the bootstrap again changes nothing
    assert connect_demo() == ["The demo brand is already set up."]


def test_demo_history_gives_forecasts_segments_and_a_replenishment_plan(in_alpha):
    # given: the demo set-up
    said = connect_demo()
    assert any(line.startswith("Imported") for line in said), said
    skus = list(SKU.objects.filter(is_bundle=False))
    assert len(skus) == 12

    # then: a year of imported daily sales per SKU, ending the day before the channel's
    # backfilled orders begin (pulled at set-up, not left to the worker's first poll)
    today = forecasting.brand_today()
    first_order = forecasting.first_order_days().first("sandbox")
    assert first_order is not None and first_order < today
    imported = ImportedSale.objects.values("sku_id").annotate(first=Min("day"), last=Max("day"))
    assert {row["sku_id"] for row in imported} == {s.pk for s in skus}
    for row in imported:
        assert (row["last"] - row["first"]).days >= 360
        assert row["last"] == first_order - timedelta(days=1)
    # and demand history runs on without a gap through the orders' days: none of them
    # reads as a day without sales
    for sku in skus:
        days = set(DemandDay.objects.filter(sku=sku, units__gt=0).values_list("day", flat=True))
        span = (today - first_order).days
        assert {first_order + timedelta(days=i) for i in range(-30, span)} <= days
    assert set(DemandDay.objects.values_list("channel", flat=True)) == {"sandbox"}

    # segments ranked by the imported revenue; every SKU forecast from its history
    assert SkuSegment.objects.count() == 12
    assert set(SkuSegment.objects.values_list("segment", flat=True)) == {
        "hero",
        "supporting",
        "tail",
        "discontinue",
    }
    run = ForecastRun.objects.get()
    assert (run.state, run.done, run.failed) == ("succeeded", 12, 0)
    assert not SkuForecast.objects.filter(demand_class="new").exists()
    # each forecast is of the size of the SKU's recent sales (with the orders' days read as
    # no sales, the combinations fell to under half of it)
    start = today - timedelta(days=28)
    for forecast in SkuForecast.objects.all():
        recent = DemandDay.objects.filter(sku_id=forecast.sku_id, day__gte=start, day__lt=today)
        daily = recent.aggregate(n=Sum("units"))["n"] / 28
        assert 0.6 < forecast.daily_mean / daily < 1.67, (forecast.sku_id, daily)

    # and the day's plan is made: suppliers for every SKU, one draft PO per supplier
    assert Supplier.objects.count() == 2
    assert Recommendation.objects.filter(sku__in=skus).count() == 24  # 12 SKUs x 2 warehouses
    recs = Recommendation.objects.filter(suggested_quantity__gt=0)
    assert recs.exists() and not recs.filter(supplier__isnull=True).exists()
    for rec in recs:
        assert rec.suggested_quantity >= rec.moq
        assert rec.suggested_quantity % rec.case_pack == 0
    pos = replenishment.create_draft_pos([r.pk for r in recs], actor=None)
    assert {po.supplier.code for po in pos} <= {"BLANKS", "CAPWORKS"}
    assert len(pos) == len({(r.supplier_id, r.warehouse_id) for r in recs})
