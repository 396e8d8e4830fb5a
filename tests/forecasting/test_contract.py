"""The forecasting interface other apps rely on (see the contracts): segments, segment
policies and their approval ceilings, forecast summaries and daily units."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from approvals.models import ApprovalPolicy
from approvals.registry import Facts
from approvals.services import requirement
from forecasting import services
from forecasting.models import SkuSegment
from tests.factories import SKUFactory
from tests.forecasting.helpers import put_demand, put_forecast, put_stockouts

pytestmark = pytest.mark.django_db


def test_segment_tag_names_the_segment_and_refuses_unknown_ones():
    assert services.segment_tag("hero") == "segment:hero"
    assert services.segment_tag("discontinue") == "segment:discontinue"
    with pytest.raises(ValueError):
        services.segment_tag("gold")


def test_segments_of_defaults_to_tail_for_skus_never_segmented(in_alpha):
    ranked, fresh = SKUFactory(), SKUFactory()
    SkuSegment.objects.create(
        sku=ranked,
        segment="hero",
        trailing_revenue=Decimal("10"),
        rank=1,
        computed_at=timezone.now(),
    )

    assert services.segments_of([ranked.pk, fresh.pk]) == {ranked.pk: "hero", fresh.pk: "tail"}


def test_segment_policies_are_seeded_per_segment_in_order(in_alpha):
    policies = services.segment_policies()

    assert list(policies) == ["hero", "supporting", "tail", "discontinue"]
    assert [(p.review_cadence_days, p.service_level) for p in policies.values()] == [
        (7, Decimal("0.980")),
        (7, Decimal("0.950")),
        (30, Decimal("0.900")),
        (30, Decimal("0.800")),
    ]


def test_segment_approval_policies_sit_before_the_brand_wide_po_policy(in_alpha):
    rows = list(
        ApprovalPolicy.objects.filter(subject_type="purchase_order").order_by("position", "id")
    )

    assert [(p.sku_tags, p.position, p.auto_approve_up_to) for p in rows] == [
        (["segment:discontinue"], 10, None),
        (["segment:tail"], 20, Decimal("500.00")),
        (["segment:supporting"], 30, Decimal("2500.00")),
        (["segment:hero"], 40, Decimal("5000.00")),
        ([], 100, Decimal("1000.00")),
    ]
    generic = rows[-1]
    for policy in rows[:-1]:
        assert policy.approvers == generic.approvers
        assert policy.escalate_after == generic.escalate_after
        assert policy.expire_after == generic.expire_after
        version = policy.versions.get(version=1)
        assert version.rules["sku_tags"] == policy.sku_tags


def test_a_po_mixing_segments_is_judged_by_its_strictest_segment(in_alpha):
    facts = Facts(
        title="PO", amount=Decimal("400"), tags=frozenset({"segment:hero", "segment:tail"})
    )

    match = requirement("purchase_order", facts)

    assert match.policy.sku_tags == ["segment:tail"]
    assert match.rules.auto_approves(Decimal("400"))
    discontinued = Facts(title="PO", amount=Decimal("1"), tags=frozenset({"segment:discontinue"}))
    assert not requirement("purchase_order", discontinued).rules.auto_approves(Decimal("1"))


def test_daily_units_sums_channels_and_warehouses_and_blanks_stockouts(in_alpha):
    sku, other = SKUFactory(), SKUFactory()
    start = date(2026, 3, 1)
    put_demand(sku, start, [3, 0, 5, 2], channel="shop")
    put_demand(sku, start, [1, 1, 0, 0], channel="amazon")
    put_stockouts(sku, [start + timedelta(days=1)])

    out = services.daily_units([sku.pk, other.pk], start=start, end=start + timedelta(days=4))

    assert out == {sku.pk: [4.0, None, 5.0, 2.0, 0.0], other.pk: [0.0] * 5}


def test_forecast_summary_covers_the_next_28_days_from_today(in_alpha):
    sku, unforecast = SKUFactory(), SKUFactory()
    today = services.brand_today()
    # Started two days ago: the first two days are past and must not count.
    put_forecast(sku, start=today - timedelta(days=2), mean=[100, 100] + [2.0] * 54, spread=1.0)

    summary = services.forecast_summary([sku.pk, unforecast.pk])

    assert list(summary) == [sku.pk]
    s = summary[sku.pk]
    assert s.method == "ets"
    assert s.next_28 == pytest.approx(56.0)
    half = 1.959963984540054 * (28**0.5)
    assert s.lo95_28 == pytest.approx(56.0 - half, rel=1e-3)
    assert s.hi95_28 == pytest.approx(56.0 + half, rel=1e-3)
    assert s.daily_std == 1.0
