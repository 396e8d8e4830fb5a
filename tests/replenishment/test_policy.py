"""replenishment.policy: the arithmetic and the daily state, without a database.

Properties over hypothesis-drawn inputs: order quantities respect MOQ and case pack, grow
with demand, safety stock grows with the service level and both variabilities; transfers
never take a source below its order-up-to level. Examples pin the formulas to hand-worked
numbers.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from replenishment import policy
from replenishment.policy import (
    ACCELERATE,
    BRAKE,
    ESCALATE,
    HEALTHY,
    WarehousePosition,
    classify,
    compute,
    minimum_order,
    order_quantity,
    safety_stock,
    transfers,
)

demand = st.floats(min_value=0, max_value=500, allow_nan=False)
spread = st.floats(min_value=0, max_value=200, allow_nan=False)
lead = st.floats(min_value=0, max_value=120, allow_nan=False)
levels = st.floats(min_value=0.5, max_value=0.999)
units = st.integers(min_value=-200, max_value=20_000)
packs = st.integers(min_value=1, max_value=48)
moqs = st.integers(min_value=1, max_value=500)
review = st.integers(min_value=0, max_value=60)


# --- examples ----------------------------------------------------------------------------


def test_safety_stock_matches_the_formula_by_hand():
    # given 10/day ± 3, lead time 16 ± 4 days, 95 %
    ss = safety_stock(
        daily_mean=10, daily_std=3, lead_time_mean=16, lead_time_std=4, service_level=0.95
    )
    # then z = 1.6449 and sqrt(16·9 + 100·16) = sqrt(1744) = 41.76
    assert ss == pytest.approx(NormalDist().inv_cdf(0.95) * math.sqrt(1744))
    assert ss == pytest.approx(68.69, abs=0.01)


def test_reorder_point_order_up_to_and_quantity_by_hand():
    n = compute(
        daily_mean=10,
        daily_std=0,
        lead_time_mean=14,
        lead_time_std=0,
        service_level=0.95,
        review_period_days=7,
        available=60,
        on_order=20,
        backorders=5,
        moq=50,
        case_pack=12,
    )
    assert n.safety_stock == 0
    assert n.reorder_point == 140
    assert n.order_up_to == 210
    # position 75: need 135 → 12 cases = 144
    assert n.quantity == 144


def test_nothing_is_ordered_above_the_reorder_point():
    assert order_quantity(order_up_to=300, reorder_point=100, available=101, on_order=0) == 0
    assert order_quantity(order_up_to=300, reorder_point=100, available=100, on_order=0) == 200


def test_moq_wins_over_a_small_need_and_is_rounded_to_whole_cases():
    # need 3 units, MOQ 25, cases of 12 → 3 cases
    assert minimum_order(25, 12) == 36
    q = order_quantity(
        order_up_to=10, reorder_point=8, available=7, on_order=0, moq=25, case_pack=12
    )
    assert q == 36


def test_quoted_lead_time_assumes_a_quarter_of_the_quote_as_std():
    assert policy.quoted_lead_time(20) == (20.0, 5.0)
    assert policy.quoted_lead_time(2) == (2.0, 1.0)


def test_lead_time_contradiction_needs_samples_and_a_real_gap():
    assert not policy.lead_time_contradicts(measured_mean=40, samples=2, quoted_days=14)
    assert policy.lead_time_contradicts(measured_mean=40, samples=3, quoted_days=14)
    assert not policy.lead_time_contradicts(measured_mean=20, samples=10, quoted_days=14)


def test_a_service_level_outside_zero_one_is_refused():
    with pytest.raises(ValueError):
        policy.z_score(1.0)


# --- state -------------------------------------------------------------------------------


def test_accelerate_when_the_week_runs_above_the_month_by_the_threshold():
    d = classify(
        velocity_7=12, velocity_28=10, available=1000, daily_mean=10, days_to_next_receipt=14
    )
    assert d.state == ACCELERATE
    assert "+20%" in d.reason
    assert classify(velocity_7=11, velocity_28=10).state == HEALTHY
    # a brand with a lower threshold sees it earlier
    assert classify(velocity_7=11, velocity_28=10, accelerate_threshold=0.05).state == ACCELERATE


def test_brake_when_the_week_runs_below_the_month_by_the_brake_threshold():
    assert classify(velocity_7=6, velocity_28=10).state == BRAKE
    assert classify(velocity_7=8, velocity_28=10).state == HEALTHY
    assert classify(velocity_7=8, velocity_28=10, brake_threshold=0.1).state == BRAKE


def test_escalate_wins_and_names_every_problem():
    d = classify(velocity_7=20, velocity_28=10, has_supplier=False, has_forecast=False)
    assert d.state == ESCALATE
    assert "no supplier" in d.reason.lower()
    assert "no forecast" in d.reason


def test_escalate_when_stock_runs_out_before_anything_can_arrive():
    d = classify(
        velocity_7=10, velocity_28=10, available=50, daily_mean=10, days_to_next_receipt=14
    )
    assert d.state == ESCALATE
    assert "lasts about 5 days" in d.reason
    ok = classify(
        velocity_7=10, velocity_28=10, available=200, daily_mean=10, days_to_next_receipt=14
    )
    assert ok.state == HEALTHY


def test_stockout_days_are_left_out_of_velocities():
    days = [10.0] * 21 + [None, None, None, 20.0, 20.0, 20.0, 20.0]
    v7, v28 = policy.velocities(days)
    assert v7 == 20
    assert v28 == pytest.approx((210 + 80) / 25)
    # too few known days this week: no judgement
    assert policy.velocities([10.0] * 24 + [None, None, None, None])[0] is None


# --- properties --------------------------------------------------------------------------


@given(
    out=st.floats(min_value=0, max_value=50_000, allow_nan=False),
    rop_share=st.floats(min_value=0, max_value=1),
    available=units,
    on_order=st.integers(min_value=0, max_value=5_000),
    backorders=st.integers(min_value=0, max_value=500),
    moq=moqs,
    case_pack=packs,
)
def test_quantities_are_zero_or_whole_cases_of_at_least_the_moq(
    out, rop_share, available, on_order, backorders, moq, case_pack
):
    rop = out * rop_share
    q = order_quantity(
        order_up_to=out,
        reorder_point=rop,
        available=available,
        on_order=on_order,
        backorders=backorders,
        moq=moq,
        case_pack=case_pack,
    )
    position = available + on_order - backorders
    assert q >= 0
    if q:
        assert q % case_pack == 0
        assert q >= moq
        # never more than one case (or the MOQ) beyond what S asks for
        assert q < max(out - position + case_pack, minimum_order(moq, case_pack) + 1)
        # and it brings the position up to S
        assert position + q >= out - 1e-6
    if position > rop:
        assert q == 0


@given(
    d1=demand,
    d2=demand,
    std=spread,
    lt=lead,
    lt_std=spread,
    sl=levels,
    r=review,
    available=units,
    on_order=st.integers(0, 5000),
    moq=moqs,
    case_pack=packs,
)
def test_quantities_are_monotone_in_demand(
    d1, d2, std, lt, lt_std, sl, r, available, on_order, moq, case_pack
):
    low, high = sorted((d1, d2))
    args = dict(
        daily_std=std,
        lead_time_mean=lt,
        lead_time_std=lt_std,
        service_level=sl,
        review_period_days=r,
        available=available,
        on_order=on_order,
        moq=moq,
        case_pack=case_pack,
    )
    a = compute(daily_mean=low, **args)
    b = compute(daily_mean=high, **args)
    assert a.reorder_point <= b.reorder_point + 1e-9
    assert a.order_up_to <= b.order_up_to + 1e-9
    assert a.quantity <= b.quantity


@given(d=demand, std=spread, lt=lead, lt_std=spread, s1=levels, s2=levels)
def test_safety_stock_is_monotone_in_service_level(d, std, lt, lt_std, s1, s2):
    low, high = sorted((s1, s2))
    kw = dict(daily_mean=d, daily_std=std, lead_time_mean=lt, lead_time_std=lt_std)
    assert safety_stock(service_level=low, **kw) <= safety_stock(service_level=high, **kw) + 1e-9


@given(d=demand, a=spread, b=spread, lt=lead, lt_std=spread, sl=levels)
def test_safety_stock_is_monotone_in_demand_variability(d, a, b, lt, lt_std, sl):
    low, high = sorted((a, b))
    kw = dict(daily_mean=d, lead_time_mean=lt, lead_time_std=lt_std, service_level=sl)
    assert safety_stock(daily_std=low, **kw) <= safety_stock(daily_std=high, **kw) + 1e-9


@given(d=demand, std=spread, lt=lead, a=spread, b=spread, sl=levels)
def test_safety_stock_is_monotone_in_lead_time_variability(d, std, lt, a, b, sl):
    low, high = sorted((a, b))
    kw = dict(daily_mean=d, daily_std=std, lead_time_mean=lt, service_level=sl)
    assert safety_stock(lead_time_std=low, **kw) <= safety_stock(lead_time_std=high, **kw) + 1e-9


@given(d=demand, std=spread, lt=lead, lt_std=spread, sl=levels)
def test_safety_stock_is_zero_only_without_variability(d, std, lt, lt_std, sl):
    assume(sl > 0.5)
    ss = safety_stock(
        daily_mean=d, daily_std=std, lead_time_mean=lt, lead_time_std=lt_std, service_level=sl
    )
    assert ss >= 0
    if (lt * std * std + d * d * lt_std * lt_std) > 1e-6:
        assert ss > 0


positions = st.lists(
    st.builds(
        lambda wid, available, on_order, rop, extra: WarehousePosition(
            wid, available, on_order, rop, rop + extra
        ),
        st.integers(1, 6),
        st.integers(0, 2000),
        st.integers(0, 500),
        st.floats(0, 800, allow_nan=False),
        st.floats(0, 800, allow_nan=False),
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda p: p.warehouse_id,
)


@given(positions)
def test_transfers_never_make_the_source_short_nor_overfill_the_target(ps):
    by_id = {p.warehouse_id: p for p in ps}
    moves = transfers(ps)
    sent: dict[int, int] = {}
    got: dict[int, int] = {}
    for m in moves:
        assert m.quantity > 0
        assert m.from_warehouse_id != m.to_warehouse_id
        sent[m.from_warehouse_id] = sent.get(m.from_warehouse_id, 0) + m.quantity
        got[m.to_warehouse_id] = got.get(m.to_warehouse_id, 0) + m.quantity
    assert not set(sent) & set(got)
    for wid, qty in sent.items():
        p = by_id[wid]
        assert p.available - qty >= p.order_up_to - 1e-6
    for wid, qty in got.items():
        p = by_id[wid]
        assert p.available + p.on_order <= p.reorder_point
        assert p.available + p.on_order + qty <= math.ceil(p.order_up_to - 1e-9)


@given(
    out=st.floats(min_value=0, max_value=50_000, allow_nan=False),
    rop_share=st.floats(min_value=0, max_value=1),
    available=units,
    on_order=st.integers(min_value=0, max_value=5_000),
    moq=moqs,
    case_pack=packs,
)
def test_forcing_an_order_never_orders_less_and_keeps_the_supplier_rules(
    out, rop_share, available, on_order, moq, case_pack
):
    kw = dict(
        order_up_to=out,
        reorder_point=out * rop_share,
        available=available,
        on_order=on_order,
        moq=moq,
        case_pack=case_pack,
    )
    normal, forced = order_quantity(**kw), order_quantity(force=True, **kw)
    assert forced >= normal
    assert forced == 0 or (forced % case_pack == 0 and forced >= moq)
    assert (forced > 0) == (out - (available + on_order) > 0)
