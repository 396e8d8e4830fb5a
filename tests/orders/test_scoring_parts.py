"""Each scoring input decides when everything else is equal (pure routing engine, no
database): stock cover, the warehouse's cutoff, capability (hazmat), packages, and the
brand's confidence threshold sending a coin toss to people."""

from __future__ import annotations

from datetime import UTC, datetime

from orders import routing

NOON_UTC = datetime(2026, 11, 2, 17, 0, tzinfo=UTC)  # 12:00 in New York, 09:00 in LA


def warehouse(wid: int, code: str, **kw) -> routing.WarehouseInfo:
    # Both in Pennsylvania, so distance to the customer is the same.
    defaults = dict(
        id=wid,
        code=code,
        country="US",
        state="PA",
        lat=39.95,
        lon=-75.17,
        capabilities=frozenset({"parcel"}),
        priority=10,
        timezone="America/New_York",
    )
    defaults.update(kw)
    return routing.WarehouseInfo(**defaults)


def facts(*lines: routing.LineInfo, state: str = "NY") -> routing.OrderFacts:
    return routing.OrderFacts(
        channel="shop",
        order_type="dtc",
        service_level="standard",
        country="US",
        state=state,
        postal_code="10001",
        value=None,
        lines=lines,
        now=NOON_UTC,
    )


def line(line_id: int, sku: int, qty: int = 1, **kw) -> routing.LineInfo:
    return routing.LineInfo(line_id=line_id, sku_id=sku, quantity=qty, code=f"S{sku}", **kw)


def decide(order, whs, atp, threshold=0.0, **kw) -> routing.Decision:
    return routing.decide(order, warehouses=whs, atp=atp, rules=[], threshold=threshold, **kw)


def test_more_stock_left_behind_wins_when_all_else_is_equal():
    whs = [warehouse(1, "THIN"), warehouse(2, "DEEP")]
    atp = {(7, 1): 4, (7, 2): 400}

    decision = decide(facts(line(1, 7, 2)), whs, atp)

    assert [c["warehouses"] for c in decision.candidates] == [["DEEP"], ["THIN"]]
    parts = {c["warehouses"][0]: c["parts"]["cover"] for c in decision.candidates}
    assert parts == {"DEEP": 0.995, "THIN": 0.5}


def test_a_warehouse_past_its_cutoff_loses_to_one_that_still_ships_today():
    # Noon in New York: EARLY stopped at 11:00, LATE takes orders until 15:00.
    whs = [warehouse(1, "EARLY", cutoff=(11, 0)), warehouse(2, "LATE", cutoff=(15, 0))]
    atp = {(7, 1): 100, (7, 2): 100}

    decision = decide(facts(line(1, 7)), whs, atp)

    assert decision.candidates[0]["warehouses"] == ["LATE"]
    assert {c["warehouses"][0]: c["parts"]["cutoff"] for c in decision.candidates} == {
        "LATE": 1.0,
        "EARLY": 0.0,
    }


def test_hazmat_lines_only_go_to_a_hazmat_warehouse():
    whs = [warehouse(1, "NEAR"), warehouse(2, "HAZ", capabilities=frozenset({"hazmat"}))]
    atp = {(7, 1): 100, (7, 2): 100}

    decision = decide(facts(line(1, 7, hazmat=True)), whs, atp)

    assert decision.plan.warehouse_ids == (2,)
    assert [c["warehouses"] for c in decision.candidates] == [["HAZ"]]


def test_a_split_is_scored_with_its_packages_and_covers_every_line():
    # Neither warehouse has both SKUs: a two-package split is the only plan.
    whs = [warehouse(1, "A"), warehouse(2, "B")]
    atp = {(7, 1): 10, (8, 2): 10}

    decision = decide(facts(line(1, 7), line(2, 8)), whs, atp)

    assert decision.plan.allocations == ((1, (1,)), (2, (2,)))
    assert decision.candidates[0]["parts"]["packages"] == 0.5
    assert "2 packages" in decision.explanation
    assert decision.confidence == 0.8  # the only plan, but a split


def test_a_coin_toss_goes_to_people_below_the_brands_threshold():
    whs = [warehouse(1, "A"), warehouse(2, "B")]
    atp = {(7, 1): 100, (7, 2): 100}

    low = decide(facts(line(1, 7)), whs, atp, threshold=0.6)
    lenient = decide(facts(line(1, 7)), whs, atp, threshold=0.4)

    assert (low.layer, low.confidence, low.hold_reason) == ("review", 0.5, "awaiting_review")
    assert "Below the 0.60 threshold: a person decides." in low.explanation
    assert len(low.candidates) == 2
    assert (lenient.layer, lenient.plan.warehouse_ids) == ("scoring", (1,))  # tie → id


def test_an_excluded_warehouse_is_never_planned():
    whs = [warehouse(1, "GONE"), warehouse(2, "LEFT")]
    atp = {(7, 1): 100, (7, 2): 1}

    decision = decide(facts(line(1, 7)), whs, atp, exclude=frozenset({1}))

    assert decision.plan.warehouse_ids == (2,)
    assert [c["warehouses"] for c in decision.candidates] == [["LEFT"]]
