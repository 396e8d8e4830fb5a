"""replenishment.services: the daily plan's numbers, states and idempotency; acting on it
(draft POs per supplier, pulling a PO forward, braking, dismissing); transfers; exceptions.

Forecasts here are written directly (tests.forecasting.helpers.put_forecast) so the numbers
are known; test_signals.py runs the real forecasting engine end to end.
"""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal
from statistics import NormalDist

import pytest
from django.core.exceptions import PermissionDenied

from forecasting.services import segment_policies
from inventory.models import StockBalance, Transfer
from purchasing.models import POState, PurchaseOrder
from replenishment import services
from replenishment.models import (
    AlertKind,
    Recommendation,
    ReplenishmentAlert,
    ReplenishmentSettings,
    TransferSuggestion,
)
from tests.factories import WarehouseFactory
from tests.purchasing.factories import SupplierFactory
from tests.replenishment.helpers import delivered, forecast, history, sent_po, stocked

pytestmark = pytest.mark.usefixtures("alpha")


def rec_of(item, today) -> Recommendation:
    return Recommendation.objects.get(sku=item.sku, warehouse=item.warehouse, day=today)


def steady(today, *, on_hand=150, mean=10, spread=2.0, days=56, **kw):
    item = stocked(on_hand=on_hand, **kw)
    history(item.sku, today, [mean] * days)
    forecast(item.sku, today, mean=mean, spread=spread)
    return item


# --- numbers -------------------------------------------------------------------------------


def test_plan_stores_the_numbers_it_used_and_they_redo_by_hand(today):
    # given 10/day ± 2, a 14-day quoted lead time, 150 on hand, an unsegmented (tail) SKU
    item = steady(today, lead=14, moq=24, case_pack=12)

    services.plan(today=today)

    rec = rec_of(item, today)
    tail = segment_policies()["tail"]
    assert (rec.segment, rec.service_level, rec.review_period_days) == (
        "tail",
        tail.service_level,
        tail.review_cadence_days,
    )
    assert (rec.lead_time_source, rec.lead_time_mean, rec.lead_time_std) == ("quoted", 14, 3.5)
    z = NormalDist().inv_cdf(float(tail.service_level))
    ss = z * math.sqrt(14 * 2.0**2 + 10**2 * 3.5**2)
    rop = 10 * 14 + ss
    out = rop + 10 * tail.review_cadence_days
    assert rec.safety_stock == pytest.approx(ss, abs=0.01)
    assert rec.reorder_point == pytest.approx(rop, abs=0.01)
    assert rec.order_up_to == pytest.approx(out, abs=0.01)
    assert (rec.available, rec.on_order, rec.backorders) == (150, 0, 0)
    assert rec.suggested_quantity == math.ceil((out - 150) / 12) * 12
    assert rec.state == "healthy"
    assert rec.action == "order"
    assert (rec.moq, rec.case_pack, rec.supplier_id) == (24, 12, item.supplier.pk)


def test_measured_lead_time_replaces_the_quote_once_three_receipts_exist(today):
    item = steady(today, lead=14)
    for weeks in (10, 8, 6):
        sent = today - timedelta(weeks=weeks)
        delivered(
            item.supplier,
            item.warehouse,
            item.sku,
            sent=sent,
            expected=sent + timedelta(days=14),
            arrived=sent + timedelta(days=weeks + 10),
        )

    services.plan(today=today)

    rec = rec_of(item, today)
    assert rec.lead_time_source == "measured"
    assert rec.lead_time_samples == 3
    assert rec.lead_time_mean == pytest.approx((20 + 18 + 16) / 3)
    assert rec.lead_time_std == pytest.approx(2.0)


def test_running_the_plan_twice_replaces_the_day_and_keeps_what_was_acted_on(today, people):
    item = steady(today, on_hand=150)
    other = steady(today, on_hand=150)
    services.plan(today=today)
    first = rec_of(item, today)
    [po] = services.create_draft_pos([first], actor=people.buyer)

    result = services.plan(today=today)

    assert result.recommendations == 2
    assert Recommendation.objects.filter(day=today).count() == 2
    again = rec_of(item, today)
    assert again.pk == first.pk
    assert (again.status, again.purchase_order_id) == ("acted", po.pk)
    assert rec_of(other, today).status == "open"


# --- states --------------------------------------------------------------------------------


def test_accelerate_brake_and_escalate_each_say_why(today):
    # a week at double pace, a week at a fifth, no supplier, no forecast
    fast = stocked(on_hand=2000)
    history(fast.sku, today, [10] * 21 + [20] * 7)
    forecast(fast.sku, today, mean=10)
    slow = stocked(on_hand=2000)
    history(slow.sku, today, [10] * 21 + [2] * 7)
    forecast(slow.sku, today, mean=10)
    orphan = stocked(on_hand=2000, with_supplier=False)
    history(orphan.sku, today, [10] * 28)
    forecast(orphan.sku, today, mean=10)
    unforecast = stocked(on_hand=2000)
    history(unforecast.sku, today, [10] * 28)

    result = services.plan(today=today)

    fast_rec, slow_rec = rec_of(fast, today), rec_of(slow, today)
    assert fast_rec.state == "accelerate"
    assert "Last 7 days sold 20.0/day" in fast_rec.reason
    # accelerating plans with the recent pace, above the forecast's 10/day
    assert fast_rec.daily_mean == pytest.approx(20.0)
    assert slow_rec.state == "brake"
    assert slow_rec.daily_mean == pytest.approx(2.0)
    orphan_rec = rec_of(orphan, today)
    assert orphan_rec.state == "escalate"
    assert "no supplier" in orphan_rec.reason.lower()
    assert orphan_rec.suggested_quantity == 0
    assert "no forecast" in rec_of(unforecast, today).reason
    assert result.by_state == {"accelerate": 1, "brake": 1, "escalate": 2}


def test_escalate_when_stock_runs_out_before_a_new_order_could_arrive(today):
    item = steady(today, on_hand=50, lead=14)  # 5 days of cover, 14 days away

    services.plan(today=today)

    rec = rec_of(item, today)
    assert rec.state == "escalate"
    assert "next receipt cannot arrive for 14 days" in rec.reason
    assert rec.projected_stockout_on == today + timedelta(days=5)
    assert rec.suggested_quantity > 0  # a person may still order


def test_brand_thresholds_change_the_state(today):
    item = stocked(on_hand=2000)
    history(item.sku, today, [10] * 21 + [12] * 7)
    forecast(item.sku, today, mean=10)
    services.plan(today=today)
    assert rec_of(item, today).state == "healthy"

    services.update_settings(actor=None, accelerate_threshold="0.05")
    services.plan(today=today)

    assert rec_of(item, today).state == "accelerate"


def test_settings_refuse_out_of_range_values(people):
    with pytest.raises(services.ReplenishmentError) as caught:
        services.update_settings(actor=people.buyer, brake_threshold="1.5")
    assert "brake_threshold" in caught.value.error_dict
    with pytest.raises(PermissionDenied):
        services.update_settings(actor=people.viewer, brake_threshold="0.2")
    assert ReplenishmentSettings.current().brake_threshold == Decimal("0.300")


# --- acting --------------------------------------------------------------------------------


def test_draft_pos_group_by_supplier_and_go_through_approvals(today, people):
    supplier = SupplierFactory(quoted_lead_time_days=14)
    a = steady(today, supplier=supplier, cost="0.10")
    b = steady(today, supplier=supplier, warehouse=a.warehouse, cost="0.10")
    c = steady(today, cost="0.10")
    services.plan(today=today)
    recs = Recommendation.objects.filter(day=today)

    pos = services.create_draft_pos(recs, actor=people.buyer)

    assert len(pos) == 2
    grouped = PurchaseOrder.objects.get(supplier=supplier)
    expected = [(x.sku.pk, rec_of(x, today).suggested_quantity) for x in (a, b)]
    assert sorted(grouped.lines.values_list("sku_id", "quantity")) == sorted(expected)
    assert grouped.source == "replenishment"
    # small amounts auto-approve under the tail ceiling and go to the supplier
    assert {po.state for po in pos} == {POState.SENT}
    assert rec_of(c, today).purchase_order.supplier_id == c.supplier.pk
    # a second click drafts nothing more
    assert services.create_draft_pos(recs, actor=people.buyer) == []
    assert PurchaseOrder.objects.count() == 2


def test_viewers_cannot_draft_and_nothing_changes(today, people):
    item = steady(today)
    services.plan(today=today)
    with pytest.raises(PermissionDenied):
        services.create_draft_pos([rec_of(item, today)], actor=people.viewer)
    assert rec_of(item, today).status == "open"
    assert not PurchaseOrder.objects.exists()


def test_accelerate_pulls_the_next_open_po_forward(today, people):
    item = stocked(on_hand=400, lead=14)
    history(item.sku, today, [10] * 21 + [20] * 7)
    forecast(item.sku, today, mean=10)
    po = sent_po(item.supplier, item.warehouse, item.sku, 100, expected=today + timedelta(days=25))
    services.plan(today=today)
    rec = rec_of(item, today)
    assert rec.state == "accelerate"
    assert rec.action == "pull_forward"
    target = rec.proposal[0]["new_expected_on"]
    assert rec.proposal[0]["po"] == po.pk

    services.pull_forward(rec, actor=people.buyer)

    po.refresh_from_db()
    assert str(po.expected_on) == target
    assert po.expected_on < today + timedelta(days=25)
    assert rec_of(item, today).status == "acted"


def test_brake_proposes_and_only_a_person_cancels(today, people):
    item = stocked(on_hand=300, lead=14)
    history(item.sku, today, [10] * 21 + [1] * 7)
    forecast(item.sku, today, mean=10)
    po = sent_po(item.supplier, item.warehouse, item.sku, 200, expected=today + timedelta(days=20))

    services.plan(today=today)

    rec = rec_of(item, today)
    assert rec.state == "brake"
    assert rec.action == "slow_down"
    kinds = [o["kind"] for o in rec.proposal[0]["options"]]
    assert kinds[0] == "delay" and "cancel" in kinds
    po.refresh_from_db()
    assert po.state == POState.SENT  # nothing happened by itself

    services.apply_slowdown(rec, po_id=po.pk, option="cancel", actor=people.buyer)

    po.refresh_from_db()
    assert po.state == POState.CANCELLED
    assert rec_of(item, today).status == "acted"


def test_dismiss_closes_the_recommendation(today, people):
    item = steady(today)
    services.plan(today=today)
    services.dismiss(rec_of(item, today), actor=people.buyer, reason="Launching a new version")
    rec = rec_of(item, today)
    assert (rec.status, rec.outcome) == ("dismissed", "Launching a new version")
    with pytest.raises(services.ReplenishmentError):
        services.dismiss(rec, actor=people.buyer)


# --- transfers -----------------------------------------------------------------------------


def test_a_long_warehouse_feeds_a_short_one_when_accepted(today, people):
    east = WarehouseFactory(code="EAST", priority=10)
    west = WarehouseFactory(code="WEST", priority=20)
    item = stocked(on_hand=2000, warehouse=east, lead=14)
    from inventory import services as stock

    stock.receive(sku=item.sku, warehouse=west, quantity=20)
    # routed demand split evenly between them
    history(item.sku, today, [5] * 56, warehouse=east)
    history(item.sku, today, [5] * 56, warehouse=west)
    forecast(item.sku, today, mean=10, spread=2)

    result = services.plan(today=today)

    assert result.transfers == 1
    suggestion = TransferSuggestion.objects.get()
    assert (suggestion.from_warehouse_id, suggestion.to_warehouse_id) == (east.pk, west.pk)
    west_rec = Recommendation.objects.get(warehouse=west, day=today)
    east_rec = Recommendation.objects.get(warehouse=east, day=today)
    assert suggestion.quantity == min(
        math.ceil(west_rec.order_up_to - 20), math.floor(2000 - east_rec.order_up_to)
    )

    services.accept_transfer(suggestion, actor=people.ops)

    suggestion.refresh_from_db()
    assert suggestion.status == "accepted"
    transfer = Transfer.objects.get(pk=suggestion.transfer_id)
    assert (transfer.source_id, transfer.destination_id) == (east.pk, west.pk)
    assert StockBalance.objects.get(sku=item.sku, warehouse=west, status="in_transit").quantity == (
        suggestion.quantity
    )
    with pytest.raises(PermissionDenied):
        services.accept_transfer(suggestion, actor=people.buyer)


# --- exceptions ----------------------------------------------------------------------------


def test_exceptions_name_the_trending_sku_the_slipping_supplier_and_the_stockout(today):
    # quietly trending: 14 days at 16/day against a forecast of 10 ± 2
    trending = stocked(on_hand=5000)
    history(trending.sku, today, [10] * 42 + [16] * 14)
    forecast(trending.sku, today, mean=10, spread=2)
    # slipping: on time all year, late in the last 90 days
    slipping = steady(today, on_hand=5000)
    for days_ago, late in ((300, 0), (250, 0), (200, 0), (150, 0), (80, 9), (60, 9), (40, 9)):
        sent = today - timedelta(days=days_ago)
        delivered(
            slipping.supplier,
            slipping.warehouse,
            slipping.sku,
            sent=sent,
            expected=sent + timedelta(days=14),
            arrived=sent + timedelta(days=14 + late),
        )
    short = steady(today, on_hand=30, lead=14)

    services.plan(today=today)

    found = services.exceptions(today=today)
    kinds = {(e.kind, e.sku_id or e.supplier_id) for e in found}
    assert (AlertKind.DEMAND_SHIFT, trending.sku.pk) in kinds
    assert (AlertKind.SUPPLIER_SLIPPING, slipping.supplier.pk) in kinds
    assert (AlertKind.STOCKOUT_RISK, short.sku.pk) in kinds
    shift = next(e for e in found if e.kind == AlertKind.DEMAND_SHIFT)
    assert shift.data["actual"] == 224
    assert "above its forecast of 140" in shift.message
    # the steady SKU is inside its band
    assert (AlertKind.DEMAND_SHIFT, slipping.sku.pk) not in kinds
    # and the plan stored the same list for the dashboard
    assert ReplenishmentAlert.objects.filter(day=today).count() == len(found)


def test_the_daily_task_plans_once_at_its_hour_and_drafts_when_the_brand_says_so(
    today, monkeypatch
):
    from replenishment import tasks

    item = steady(today, cost="0.10")
    services.update_settings(actor=None, auto_draft_pos=True)
    monkeypatch.setattr(tasks, "PLAN_HOUR", (services.brand_now().hour + 1) % 24)
    assert tasks.daily_plan.apply().get() is None
    assert not Recommendation.objects.exists()

    monkeypatch.setattr(tasks, "PLAN_HOUR", services.brand_now().hour)
    result = tasks.daily_plan.apply().get()

    assert (result["recommendations"], result["by_state"]) == (1, {"healthy": 1})
    po = PurchaseOrder.objects.get(pk__in=result["drafted"])
    assert (po.source, po.created_by_label) == ("replenishment", "task replenishment.daily_plan")
    # small enough for the tail ceiling: approved and sent by approvals, not by the task
    assert po.state == POState.SENT
    assert rec_of(item, today).purchase_order_id == po.pk


def test_the_daily_plan_is_scheduled_hourly_on_the_forecast_queue():
    from config.celery import app

    entry = app.conf.beat_schedule["replenishment-daily-plan"]
    assert entry["task"] == "workers.fan_out"
    assert entry["args"] == ("replenishment.daily_plan",)
    assert entry["kwargs"] == {"queue": "forecast"}
    app.loader.import_default_modules()
    assert "replenishment.daily_plan" in app.tasks


@pytest.mark.parametrize("option", ["delay", "shrink"])
def test_brake_delays_or_shrinks_a_po_when_a_person_picks_it(today, people, option):
    # 60 on hand, 200 due in 5 days; sales fell from 10 to 2 a day
    item = stocked(on_hand=60, lead=14)
    history(item.sku, today, [10] * 21 + [2] * 7)
    forecast(item.sku, today, mean=10, spread=1.0)
    due = today + timedelta(days=5)
    po = sent_po(item.supplier, item.warehouse, item.sku, 200, expected=due)
    services.plan(today=today)
    rec = rec_of(item, today)
    assert (rec.state, rec.action) == ("brake", "slow_down")
    excess = math.floor(60 + 200 - rec.order_up_to)
    options = {o["kind"]: o for o in rec.proposal[0]["options"]}
    assert set(options) == {"delay", "shrink"}  # not all 200 are surplus: no cancel
    assert options["shrink"]["quantity"] == 200 - excess
    assert options["delay"]["new_expected_on"] == str(due + timedelta(days=math.ceil(excess / 2)))

    services.apply_slowdown(rec, po_id=po.pk, option=option, actor=people.buyer)

    po.refresh_from_db()
    if option == "delay":
        assert str(po.expected_on) == options["delay"]["new_expected_on"]
        assert po.lines.get().quantity == 200
    else:
        assert po.lines.get().quantity == 200 - excess
        assert po.expected_on == due
    assert po.state == POState.SENT
    assert rec_of(item, today).outcome.endswith("— done")


def test_escalate_when_receipts_contradict_the_quoted_lead_time(today):
    item = steady(today, on_hand=2000, lead=14)
    for weeks in (20, 16, 12):
        sent = today - timedelta(weeks=weeks)
        delivered(
            item.supplier,
            item.warehouse,
            item.sku,
            sent=sent,
            expected=sent + timedelta(days=14),
            arrived=sent + timedelta(days=40),
        )

    services.plan(today=today)

    rec = rec_of(item, today)
    assert rec.state == "escalate"
    assert f"Receipts say {item.supplier.code} takes 40 days" in rec.reason
    assert "the quote is 14" in rec.reason
    # the plan itself already trusts the measurement
    assert (rec.lead_time_source, rec.lead_time_mean) == ("measured", 40)
