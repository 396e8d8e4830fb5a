"""Segmentation by trailing revenue: boundaries as properties, and the ranking from orders."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forecasting import services
from forecasting.models import SEGMENT_ORDER, SkuSegment
from orders.services import ingest_order
from tests.factories import SKUFactory
from tests.orders.conftest import build_network, order_input

ORDER = [s.value for s in SEGMENT_ORDER]

revenues = st.dictionaries(
    st.integers(min_value=1, max_value=10**6),
    st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False, allow_infinity=False),
    max_size=300,
)


@given(revenues)
def test_every_sku_lands_in_exactly_one_segment_in_revenue_order(revenue):
    assigned = services.assign_segments(revenue)

    assert sorted(sku for sku, *_ in assigned) == sorted(revenue)
    assert [rank for *_, rank in assigned] == list(range(1, len(revenue) + 1))
    for (_, seg_a, rev_a, _), (_, seg_b, rev_b, _) in zip(assigned, assigned[1:], strict=False):
        # Walking down the ranking, revenue never rises and segments never get better.
        assert rev_a >= rev_b
        assert ORDER.index(seg_a) <= ORDER.index(seg_b)


@given(st.integers(min_value=1, max_value=2000))
def test_segment_sizes_follow_the_10_30_50_10_split(count):
    segments = [services.segment_for_rank(rank, count) for rank in range(1, count + 1)]

    assert segments.count("hero") == math.ceil(0.10 * count)
    assert segments.count("hero") + segments.count("supporting") == math.ceil(0.40 * count)
    assert count - segments.count("discontinue") == math.ceil(0.90 * count)
    assert segments[0] == "hero"


def test_exact_boundaries_for_ten_skus():
    assert [services.segment_for_rank(r, 10) for r in range(1, 11)] == (
        ["hero"] + ["supporting"] * 3 + ["tail"] * 5 + ["discontinue"]
    )


@pytest.mark.django_db
def test_recompute_ranks_by_trailing_revenue_from_orders(in_alpha):
    net = build_network()
    idle = [SKUFactory(code=f"IDLE-{i}") for i in range(7)]  # ten SKUs in all
    today = services.brand_today()
    recent = datetime.combine(today - timedelta(days=3), datetime.min.time(), tzinfo=UTC)
    old = recent - timedelta(days=200)

    def sell(code, qty, price, placed_at, **kw):
        base = order_input(lines=((code, qty),), placed_at=placed_at, **kw)
        line = replace(base.lines[0], unit_price=Decimal(price))
        ingest_order(replace(base, lines=[line]))

    sell("MUG", 10, "12.00", recent)  # 120
    sell("TEE", 2, "20.00", recent)  # 40
    sell("HAT", 1, "15.00", recent)  # 15
    sell("HAT", 100, "15.00", old)  # outside the 90-day window
    sell("TEE", 50, "20.00", recent, status="cancelled")  # cancelled: no revenue

    counts = services.recompute_segments()

    ranked = [
        (s.sku.code, s.segment, s.trailing_revenue)
        for s in SkuSegment.objects.select_related("sku").order_by("rank")
    ]
    zero = Decimal("0.00")
    assert ranked == [
        ("MUG", "hero", Decimal("120.00")),
        ("TEE", "supporting", Decimal("40.00")),
        ("HAT", "supporting", Decimal("15.00")),
        ("IDLE-0", "supporting", zero),
        *[(f"IDLE-{i}", "tail", zero) for i in range(1, 6)],
        ("IDLE-6", "discontinue", zero),
    ]
    assert counts == {"hero": 1, "supporting": 3, "tail": 5, "discontinue": 1}
    assert services.segments_of([idle[-1].pk, net["skus"]["MUG"].pk]) == {
        idle[-1].pk: "discontinue",
        net["skus"]["MUG"].pk: "hero",
    }
