"""shipping.scoring (no Django): properties of the composite score, Bayesian shrinkage,
do-not-use, and a fixed-seed replay where lane scoring beats "always cheapest"."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from shipping import scoring
from tests.benchmarks.bench_carrier_scoring import cheapest_policy, replay, scored_policy

LANE = "900→CA"

prices = st.decimals(min_value=Decimal("1.00"), max_value=Decimal("500.00"), places=2)
days = st.one_of(st.none(), st.integers(min_value=1, max_value=10))
candidates = st.lists(
    st.tuples(
        st.sampled_from(["UPS", "USPS", "FedEx"]), st.sampled_from(["A", "B", "C"]), prices, days
    ),
    min_size=1,
    max_size=8,
    unique_by=lambda t: (t[0], t[1]),
).map(lambda rows: [scoring.Candidate(str(i), *row) for i, row in enumerate(rows)])
outcomes = st.lists(
    st.builds(
        scoring.Outcome,
        carrier=st.sampled_from(["UPS", "USPS", "FedEx"]),
        service=st.sampled_from(["A", "B", "C"]),
        lane=st.sampled_from([LANE, "100→NY"]),
        on_time=st.one_of(st.none(), st.booleans()),
        damaged=st.booleans(),
        rating=st.one_of(st.none(), st.integers(min_value=1, max_value=5)),
    ),
    max_size=80,
)
weights = st.builds(
    scoring.Weights,
    st.floats(min_value=0, max_value=1),
    st.floats(min_value=0, max_value=1),
    st.floats(min_value=0, max_value=1),
)


@settings(max_examples=200, deadline=None)
@given(candidates, outcomes, weights)
def test_every_candidate_is_scored_once_between_0_and_1_and_one_is_chosen(cands, past, w):
    choice = scoring.score(cands, scoring.History.of(past), LANE, w)
    assert sorted(s.candidate.ref for s in choice.table) == sorted(c.ref for c in cands)
    assert all(-1e-9 <= s.score <= 1 + 1e-9 for s in choice.table)
    assert choice.chosen is choice.table[0]
    # the chosen one is the best scored among those not marked do-not-use, if any
    usable = [s for s in choice.table if not s.do_not_use] or choice.table
    assert choice.chosen.score == max(s.score for s in usable)
    assert choice.reason.startswith(f"{choice.chosen.candidate.carrier} ")


@settings(max_examples=200, deadline=None)
@given(candidates)
def test_with_only_price_weighted_the_cheapest_wins(cands):
    choice = scoring.score(cands, scoring.History(), LANE, scoring.Weights(1, 0, 0))
    assert choice.chosen.candidate.price == min(c.price for c in cands)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=200))
def test_shrinkage_stays_between_the_prior_and_the_lane_rate(on_time, late):
    history = scoring.History.of(
        [scoring.Outcome("UPS", "A", LANE, True)] * on_time
        + [scoring.Outcome("UPS", "A", LANE, False)] * late
    )
    rel = scoring.reliability(history, LANE, "UPS", "A")
    if on_time + late == 0:
        assert rel.on_time == scoring.PRIOR_ON_TIME
        return
    raw = on_time / (on_time + late)
    low, high = sorted([raw, scoring.PRIOR_ON_TIME])
    assert low - 1e-9 <= rel.on_time <= high + 1e-9


def test_little_lane_history_leans_on_the_carriers_overall_record():
    # given: UPS A is on time 95 % overall elsewhere; on this lane it was late twice
    elsewhere = [scoring.Outcome("UPS", "A", "100→NY", i % 20 != 0) for i in range(200)]
    here = [scoring.Outcome("UPS", "A", LANE, False)] * 2
    rel = scoring.reliability(scoring.History.of(elsewhere + here), LANE, "UPS", "A")
    # then: two late deliveries do not make it a 0 % carrier
    assert 0.7 < rel.on_time < 0.9
    assert rel.lane_on_time_raw == 0.0 and rel.lane_deliveries == 2


def test_do_not_use_needs_enough_history_and_a_clear_gap():
    def lane_of(on_time: int, late: int, service: str):
        return [scoring.Outcome("X", service, LANE, True)] * on_time + [
            scoring.Outcome("X", service, LANE, False)
        ] * late

    few = scoring.History.of(lane_of(2, 8, "A") + lane_of(10, 0, "B"))
    assert scoring.do_not_use(few, LANE, min_history=20) == set()
    many = scoring.History.of(lane_of(10, 20, "A") + lane_of(29, 1, "B") + lane_of(28, 2, "C"))
    assert scoring.do_not_use(many, LANE, min_history=20) == {"X A"}
    close = scoring.History.of(lane_of(27, 3, "A") + lane_of(29, 1, "B") + lane_of(28, 2, "C"))
    assert scoring.do_not_use(close, LANE, min_history=20) == set()


def test_a_do_not_use_carrier_is_not_chosen_while_another_quoted():
    past = (
        [scoring.Outcome("Cheap", "S", LANE, i < 5) for i in range(30)]
        + [scoring.Outcome("Good", "G", LANE, i < 29) for i in range(30)]
        + [scoring.Outcome("Fast", "F", LANE, i < 28) for i in range(30)]
    )
    cands = [
        scoring.Candidate("1", "Cheap", "S", Decimal("5.00"), 5),
        scoring.Candidate("2", "Good", "G", Decimal("9.00"), 4),
    ]
    choice = scoring.score(cands, scoring.History.of(past), LANE, scoring.Weights(0.9, 0.05, 0.05))
    assert choice.chosen.candidate.ref == "2"
    assert "marked do-not-use on this lane" in choice.reason


def test_lane_scoring_beats_always_cheapest_on_time_on_a_fixed_replay():
    # given: the benchmark's ground truth (the cheapest service is late on a third of lanes)
    scored = replay(scored_policy, seed=7, weeks=10, orders_per_week=80)
    cheapest = replay(cheapest_policy, seed=7, weeks=10, orders_per_week=80)
    # then: more on time, for a modest premium
    assert scored.orders == cheapest.orders == 800
    assert scored.on_time_rate > cheapest.on_time_rate + 0.02
    assert scored.cost_per_order < cheapest.cost_per_order * Decimal("1.10")


def test_lane_keys():
    assert scoring.lane_of("90001", "ca") == "900→CA"
    assert scoring.lane_of("10001", "", "94107") == "100→941"
