"""Forecasting engine (forecasting.engine): classes, methods, intervals, backtest, batch.

No database: the engine is plain numpy/statsmodels/pmdarima. Real-data tests read small
slices of ../shared/data/forecast (see conftest.py); synthetic tests use fixed seeds.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from forecasting.engine import (
    ADIDA,
    BASELINE,
    ETS,
    METHODS,
    SBA,
    TSB,
    AutoArima,
    ClassifyConfig,
    Combination,
    Croston,
    DemandClass,
    EngineConfig,
    MethodScore,
    Naive,
    ProfileScaled,
    SeasonalNaive,
    SeriesInput,
    choose,
    classify,
    cutoffs,
    demand_stats,
    forecast_many,
    forecast_series,
    launch_profile,
    mase,
    naive_scale,
    rmsse,
)
from forecasting.engine.backtest import backtest_forecasts
from forecasting.engine.core import COMBINATION, make_method

LEVELS = (80.0, 95.0)


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    return float(np.mean((actual >= lower) & (actual <= upper)))


def seasonal_series(rng: np.random.Generator, n: int, m: int = 12, sd: float = 5.0):
    t = np.arange(n)
    return 100 + 20 * np.sin(2 * np.pi * t / m) + rng.normal(0, sd, n)


# --- classification ----------------------------------------------------------------------


def test_classes_follow_syntetos_boylan_cutoffs():
    # given four 24-period series on either side of ADI 1.32 and CV² 0.49
    smooth = np.full(24, 10.0)
    erratic = np.tile([1.0, 20.0], 12)  # ADI 1, CV² ≈ 0.82
    intermittent = np.tile([5.0, 0.0, 0.0], 8)  # ADI 3, CV² 0
    lumpy = np.tile([1.0, 0.0, 0.0, 30.0, 0.0, 0.0], 4)  # ADI 3, CV² ≈ 0.87

    # then
    assert classify(smooth) == DemandClass.SMOOTH
    assert classify(erratic) == DemandClass.ERRATIC
    assert classify(intermittent) == DemandClass.INTERMITTENT
    assert classify(lumpy) == DemandClass.LUMPY


def test_dead_and_new_series():
    assert classify(np.zeros(30)) == DemandClass.DEAD
    # six periods since the first sale: fewer than 8 periods (and than 2 cycles of 12)
    assert classify([0, 0, 0, 4, 5, 3, 6, 4, 5], m=12) == DemandClass.NEW
    # 20 periods of history are enough without seasonality but not for m = 12
    history = np.full(20, 3.0)
    assert classify(history, m=1) == DemandClass.SMOOTH
    assert classify(history, m=12) == DemandClass.NEW
    assert classify(history, m=12, config=ClassifyConfig(min_history=12)) == DemandClass.SMOOTH
    # one sale has neither an interval nor a size spread
    assert classify(np.r_[np.zeros(20), 7.0, np.zeros(20)]) == DemandClass.NEW


def test_out_of_stock_periods_are_left_out_of_adi():
    # given a series selling every period except during a stock-out
    y = np.full(40, 6.0)
    y[10:30] = 0.0
    oos = np.zeros(40, dtype=bool)
    oos[10:30] = True

    # then the stock-out is not read as intermittent demand
    assert classify(y) == DemandClass.INTERMITTENT
    assert classify(y, oos=oos) == DemandClass.SMOOTH
    stats = demand_stats(y, oos=oos)
    assert (stats.n_observed, stats.n_nonzero, stats.adi) == (20, 20, 1.0)


def test_carparts_sample_is_mostly_intermittent_and_lumpy(carparts):
    # given 200 car-part series drawn with a fixed seed
    rng = np.random.default_rng(0)
    sample = carparts.iloc[np.sort(rng.choice(len(carparts), 200, replace=False))]

    # when
    classes = [classify(row, m=12) for row in sample.to_numpy(dtype=float)]

    # then, as the data README counts (2,294 intermittent and 347 lumpy of 2,674;
    # single-sale and late-starting parts are "new" here)
    counts = {c: classes.count(c) for c in DemandClass}
    classified = sum(counts[c] for c in DemandClass if c not in ("new", "dead"))
    assert counts["intermittent"] + counts["lumpy"] >= 0.8 * len(classes)
    assert counts["intermittent"] / classified == pytest.approx(0.86, abs=0.07)
    assert counts["lumpy"] / classified == pytest.approx(0.13, abs=0.07)


def test_jewelry_is_smooth_or_erratic(jewelry):
    classes = [classify(row, m=52) for row in jewelry.to_numpy(dtype=float)]
    frequent = sum(c in (DemandClass.SMOOTH, DemandClass.ERRATIC) for c in classes)
    assert frequent >= 0.95 * len(classes)


# --- methods on hand-computed examples ---------------------------------------------------

# Demands at t = 1, 4, 6: sizes 3, 5, 4; intervals 2, 3, 2. With α = 0.5:
# sizes level 3 → 4 → 4, intervals level 2 → 2.5 → 2.25.
TINY = np.array([0.0, 3.0, 0.0, 0.0, 5.0, 0.0, 4.0])


def test_croston_and_sba_by_hand():
    croston = Croston(alpha=0.5).fit(TINY)
    assert (croston.size, croston.interval) == (4.0, 2.25)
    assert croston.forecast(3).mean == pytest.approx([16 / 9] * 3)
    # SBA = Croston × (1 - α/2)
    assert SBA(alpha=0.5).fit(TINY).forecast(1).mean == pytest.approx([16 / 9 * 0.75])


def test_tsb_by_hand():
    # probability starts at the demand share 3/7 and is smoothed every period with β = 0.5:
    # 3/14, 17/28, 17/56, 17/112, 129/224, 129/448, 577/896; size 3 → 3 → 4 → 4.
    tsb = TSB(alpha=0.5, beta=0.5).fit(TINY)
    assert tsb.probability == pytest.approx(577 / 896)
    assert tsb.size == pytest.approx(4.0)
    assert tsb.forecast(2).mean == pytest.approx([577 / 224] * 2)


def test_adida_by_hand():
    # demands at t = 1, 4, 6: mean interval 7/3 rounds to k = 2; buckets ending at the last
    # period: [3, 0], [0, 5], [0, 4] → totals 3, 5, 4; SES with α = 0.5: 3 → 4 → 4
    adida = ADIDA(alphas=(0.5,)).fit(TINY)
    assert (adida.k, adida.alpha) == (2, 0.5)
    assert adida.forecast(3).mean == pytest.approx([4 / 2] * 3)
    # k = 1 is plain SES on the periods: 0, 1.5, .75, .375, 2.6875, 1.34375, 2.671875
    assert ADIDA(aggregation=1, alphas=(0.5,)).fit(TINY).rate == pytest.approx(2.671875)
    # the smoothing constant follows the data: a level shift wants the fastest one
    shifted = ADIDA(aggregation=1).fit(np.r_[np.full(10, 10.0), np.full(10, 30.0)])
    assert shifted.alpha == max(ADIDA().alphas)
    assert ADIDA().fit(np.zeros(12)).forecast(2).mean.tolist() == [0.0, 0.0]


def test_naive_repeats_the_last_observed_value():
    y = np.r_[np.arange(1.0, 13.0), 20.0, np.nan]
    forecast = Naive().fit(y, m=12).forecast(4)
    assert forecast.mean.tolist() == [20.0] * 4
    assert np.all(np.diff(forecast.upper[95.0]) > 0)  # uncertainty grows with the horizon


def test_combination_averages_members_and_their_bounds():
    y = np.array([10.0, 12, 14, 16, 11, 13, 15, 17, 12, 14, 16, 18])
    naive, seasonal = Naive().fit(y, m=4), SeasonalNaive().fit(y, m=4)

    combo = Combination(members=(Naive(), SeasonalNaive())).fit(y, m=4)
    forecast = combo.forecast(4)

    assert forecast.mean == pytest.approx((naive.forecast(4).mean + [12, 14, 16, 18]) / 2)
    for level in LEVELS:
        low = (naive.forecast(4).lower[level] + seasonal.forecast(4).lower[level]) / 2
        assert forecast.lower[level] == pytest.approx(low)
    assert set(combo.params()["members"]) == {"naive", "seasonal_naive"}
    json.dumps(combo.params())
    with pytest.raises(ValueError, match="distinct"):
        Combination(members=(Naive(), Naive()))
    with pytest.raises(ValueError, match="member"):
        make_method(COMBINATION, EngineConfig())


def test_origins_cover_a_season_for_slow_candidates():
    config = EngineConfig()
    # weekly data, 8 weeks ahead: 7 windows reach round the year, not only last Christmas
    assert config.origins_plan(DemandClass.SMOOTH, 8, 52) == (7, 8)
    assert config.origins_plan(DemandClass.ERRATIC, 12, 12) == (3, 12)
    assert config.origins_plan(DemandClass.SMOOTH, 1, 52) == (config.max_origins, 1)
    assert config.origins_plan(DemandClass.INTERMITTENT, 6, 12) == (12, 1)


def test_croston_family_drops_missing_periods():
    # the same demands with stock-out periods in between
    gappy = np.array([0.0, 3.0, np.nan, 0.0, 0.0, 5.0, np.nan, np.nan, 0.0, 4.0])
    for method in (Croston(alpha=0.5), SBA(alpha=0.5), TSB(alpha=0.5, beta=0.5)):
        expected = method.clone().fit(TINY).forecast(1).mean
        assert method.fit(gappy).forecast(1).mean == pytest.approx(expected)


def test_croston_family_without_demand_forecasts_zero():
    for method in (Croston(), SBA(), TSB()):
        forecast = method.fit(np.zeros(12)).forecast(3)
        assert forecast.mean.tolist() == [0.0, 0.0, 0.0]
        assert forecast.upper[95.0].tolist() == [0.0, 0.0, 0.0]


def test_seasonal_naive_exact():
    # given 1..10 with season 4: last cycle is 7, 8, 9, 10; every seasonal difference is 4
    y = np.arange(1.0, 11.0)
    forecast = SeasonalNaive().fit(y, m=4).forecast(6)

    assert forecast.mean.tolist() == [7.0, 8.0, 9.0, 10.0, 7.0, 8.0]
    z80 = 1.2815515655446004
    sd = 4.0 * np.sqrt([1, 1, 1, 1, 2, 2])
    assert forecast.upper[80.0] == pytest.approx(forecast.mean + z80 * sd)
    assert forecast.lower[80.0] == pytest.approx(np.maximum(forecast.mean - z80 * sd, 0))


def test_seasonal_naive_repeats_last_observed_value_of_each_phase():
    y = np.arange(1.0, 11.0)
    y[8] = np.nan  # the value 9 was a stock-out: one cycle earlier it was 5
    assert SeasonalNaive().fit(y, m=4).forecast(4).mean.tolist() == [7.0, 8.0, 5.0, 10.0]
    # shorter than a season: plain naive
    assert SeasonalNaive().fit([3.0, 4.0], m=12).forecast(2).mean.tolist() == [4.0, 4.0]


def test_launch_profile_and_scaled_new_item():
    # given two comparable launches, aligned at their first sale: ages 0..3 average
    # (2+4)/2, (4+8)/2, (6+10)/2, (6+10)/2; later ages repeat the last known value
    profile = launch_profile([[0, 2, 4, 6, 6], [0, 0, 4, 8, 10, 10]], length=6)
    assert profile.tolist() == [3.0, 6.0, 8.0, 8.0, 8.0, 8.0]

    # when a new item sells 6 and 12 in its first two periods (twice the profile),
    # the scale is shrunk half-way to 1 (weight 2 / (2 + 2)): 1.5
    model = ProfileScaled(profile=profile).fit([0, 0, 6, 12])
    assert (model.age, model.scale) == (2, 1.5)
    assert model.forecast(3).mean.tolist() == [12.0, 12.0, 12.0]

    # a stock-out period is left out of both sides of the ratio: 6 vs 3, weight 1/3
    model = ProfileScaled(profile=profile).fit([6.0, np.nan])
    assert model.scale == pytest.approx(2 / 3 * 1 + 1 / 3 * 2)


def test_new_item_uses_profile_when_given():
    profile = [3.0, 6.0, 8.0, 8.0, 8.0, 8.0]
    result = forecast_series([0, 0, 6, 12], h=3, m=1, profile=profile)
    assert result.demand_class == DemandClass.NEW
    assert result.method == "profile"
    assert result.mean.tolist() == [12.0, 12.0, 12.0]
    # without a profile the fallback, ADIDA (here plain SES of the level), forecasts:
    # too short a history for any backtest window
    fallback = forecast_series([0, 0, 6, 12], h=3, m=1)
    assert (fallback.method, fallback.scores) == ("adida", {})
    assert fallback.mean.tolist() == pytest.approx([6.3] * 3)  # 6 + 0.05 × (12 - 6)


def test_dead_series_forecasts_zero():
    result = forecast_series(np.zeros(40), h=4, m=12)
    assert result.demand_class == DemandClass.DEAD
    assert result.mean.tolist() == [0.0] * 4
    assert result.intervals[95.0][1].tolist() == [0.0] * 4


# --- backtest and selection --------------------------------------------------------------


def test_mase_scale_guards_against_division_by_zero():
    assert naive_scale(np.array([1.0, 2.0, 3.0, 4.0]), m=1) == 1.0
    # flat history: no seasonal or lag-1 change, so the mean level scales
    assert naive_scale(np.full(10, 5.0), m=4) == 5.0
    # all zeros: scale 1, MASE is the plain MAE
    assert naive_scale(np.zeros(10), m=4) == 1.0
    assert mase(np.array([5.0, 6.0]), np.array([4.0, 4.0]), np.arange(1.0, 5.0), 1) == 1.5
    # a window of stock-outs has nothing to score
    assert math.isnan(mase(np.array([np.nan]), np.array([1.0]), np.ones(5), 1))


def test_cutoffs():
    assert cutoffs(20, 4, 3, min_train=5) == [8, 12, 16]
    assert cutoffs(20, 4, 3, min_train=5, step=2) == [12, 14, 16]
    assert cutoffs(20, 4, 3, min_train=10) == [12, 16]
    assert cutoffs(10, 4, 3, min_train=8) == []


def test_choose_prefers_baseline_on_ties_and_without_margin():
    def scores(**mases):
        return {name: MethodScore(name, value, value, 3, 0.0) for name, value in mases.items()}

    order = [BASELINE, "ets", "auto_arima"]
    assert choose(scores(seasonal_naive=1.0, ets=0.9, auto_arima=0.95), order) == "ets"
    assert choose(scores(seasonal_naive=1.0, ets=1.0), order) == BASELINE
    assert choose(scores(seasonal_naive=1.0, ets=0.9), order, min_improvement=0.2) == BASELINE
    failed = {
        BASELINE: MethodScore(BASELINE, 1.0, 1.0, 3, 0.0),
        "ets": MethodScore("ets", math.inf, math.inf, 0, 0.0, "ValueError: boom"),
    }
    assert choose(failed, order) == BASELINE


@pytest.fixture(scope="module")
def aus_run(aus_food_nsw):
    """Eight years of NSW food retail turnover, the last year held out."""
    train, test = aus_food_nsw[-108:-12], aus_food_nsw[-12:]
    return train, test, forecast_series(train, h=12, freq="M")


def test_backtest_picks_a_method_that_beats_seasonal_naive(aus_run):
    train, test, result = aus_run

    assert result.demand_class == DemandClass.SMOOTH
    assert set(result.scores) == {BASELINE, "naive", "ets", "auto_arima", "adida", "combo"}
    assert result.method != BASELINE
    assert result.scores[result.method].mase < result.scores[BASELINE].mase
    # and it holds on the held-out year
    assert mase(test, result.mean, train, 12) < mase(test, train[-12:], train, 12)
    lower80, upper80 = result.intervals[80.0]
    lower95, upper95 = result.intervals[95.0]
    assert np.all(lower95 <= lower80) and np.all(lower80 <= result.mean)
    assert np.all(result.mean <= upper80) and np.all(upper80 <= upper95)
    assert set(result.timings) == {"classify", "backtest", "fit", "total"}


def test_baseline_kept_when_no_candidate_beats_it():
    # given a strongly seasonal series and only non-seasonal challengers
    series = seasonal_series(np.random.default_rng(3), 96, sd=2.0)
    flat_only = {DemandClass.SMOOTH: ("croston", "tsb"), DemandClass.ERRATIC: ("croston",)}

    result = forecast_series(series, h=12, m=12, config=EngineConfig(candidates=flat_only))

    assert result.method == BASELINE
    assert set(result.scores) == {BASELINE, "croston", "tsb", "combo"}
    baseline = result.scores[BASELINE].mase
    assert all(score.mase > baseline for name, score in result.scores.items() if name != BASELINE)


def test_warm_start_reuses_the_order_and_skips_the_search(aus_food_nsw):
    train = aus_food_nsw[-108:-12]

    searched = AutoArima().fit(train, m=12, freq="M")
    warm = AutoArima().fit(train, m=12, freq="M", warm=searched.params())

    assert searched.searched and not warm.searched
    assert (warm.order, warm.seasonal_order) == (searched.order, searched.seasonal_order)
    assert warm.params() == searched.params()
    assert warm.forecast(12).mean == pytest.approx(searched.forecast(12).mean, rel=1e-3)

    # update() appends a month without searching or refitting from scratch
    warm.update(aus_food_nsw[-12:-11])
    assert len(warm.history) == len(train) + 1
    refit = AutoArima().fit(aus_food_nsw[-108:-11], m=12, freq="M", warm=searched.params())
    assert warm.forecast(11).mean == pytest.approx(refit.forecast(11).mean, rel=0.05)


def test_engine_warm_state_refits_only_the_chosen_method(aus_run, aus_food_nsw):
    _, _, cold = aus_run
    state = cold.warm_state()

    warm = forecast_series(aus_food_nsw[-107:-11], h=12, freq="M", warm=state)

    assert warm.warm_started and warm.method == cold.method
    assert warm.timings["backtest"] == 0.0
    assert {name: s.mase for name, s in warm.scores.items()} == pytest.approx(
        {name: s.mase for name, s in cold.scores.items()}
    )
    if cold.method == "auto_arima":
        assert warm.params["order"] == cold.params["order"]
    # a full refit ignores the stored state
    full = forecast_series(
        aus_food_nsw[-107:-11], h=12, freq="M", warm=state, full_refit=True, config=EngineConfig()
    )
    assert not full.warm_started


# --- intervals ---------------------------------------------------------------------------


def test_count_intervals_cover_poisson_demand():
    # given 300 Poisson(0.6) series (intermittent: 55 % zeros), six periods held out each
    rng = np.random.default_rng(7)
    series = rng.poisson(0.6, (300, 66)).astype(float)
    # equal-tailed Poisson(0.6) quantiles are [0, 2] at both levels: 97.7 % of outcomes
    for method in (TSB(), SBA()):
        hits = {level: [] for level in LEVELS}
        for y in series:
            forecast = method.clone().fit(y[:60]).forecast(6, LEVELS)
            for level in LEVELS:
                hits[level].append(coverage(y[60:], forecast.lower[level], forecast.upper[level]))
        for level in LEVELS:
            assert level / 100 - 0.02 <= np.mean(hits[level]) <= 0.99, (method.name, level)


def test_gaussian_intervals_cover_seasonal_normal_demand():
    rng = np.random.default_rng(11)
    for method, count, tolerance in ((SeasonalNaive(), 300, 0.03), (ETS(), 20, 0.08)):
        hits = {level: [] for level in LEVELS}
        for _ in range(count):
            y = seasonal_series(rng, 84)
            forecast = method.clone().fit(y[:72], m=12).forecast(12, LEVELS)
            for level in LEVELS:
                hits[level].append(coverage(y[72:], forecast.lower[level], forecast.upper[level]))
        for level in LEVELS:
            assert np.mean(hits[level]) == pytest.approx(level / 100, abs=tolerance), (
                method.name,
                level,
            )


# --- out of stock ------------------------------------------------------------------------


def _forecast_level(name: str, y: np.ndarray, oos: np.ndarray | None) -> float:
    return float(METHODS[name]().fit(y, m=1, oos=oos).forecast(7).mean.mean())


@pytest.mark.parametrize("name", ["seasonal_naive", "ets", "auto_arima", "croston", "sba", "tsb"])
def test_stockout_window_does_not_drag_forecast_to_zero(name):
    # given steady demand around 20 with a stock-out window recorded as zero sales
    demand = np.random.default_rng(5).poisson(20, 120).astype(float)
    # Croston and SBA only update when demand arrives, so trailing zeros cannot move
    # them; their window sits before the last ten periods, where it lengthens an interval.
    window = slice(-25, -10) if name in ("croston", "sba") else slice(-10, None)
    y = demand.copy()
    y[window] = 0.0
    oos = np.zeros(len(y), dtype=bool)
    oos[window] = True

    masked = _forecast_level(name, y, oos)
    as_zeros = _forecast_level(name, y, None)

    assert masked > as_zeros
    # the naive repeats one Poisson draw (31 here); the smoothing methods sit near 20
    assert 15 <= masked <= 32


def test_engine_with_stockout_mask_on_daily_seasonal_demand():
    # given 20 weeks of daily demand with a weekend peak and a two-week stock-out at the end
    rng = np.random.default_rng(9)
    weekday = np.array([20, 20, 20, 20, 30, 45, 35], dtype=float)
    y = rng.poisson(np.tile(weekday, 20)).astype(float)
    oos = np.zeros(len(y), dtype=bool)
    oos[-14:] = True
    y[oos] = 0.0

    masked = forecast_series(y, h=14, freq="D", oos=oos)
    as_zeros = forecast_series(y, h=14, freq="D")
    nan_marked = forecast_series(np.where(oos, np.nan, y), h=14, freq="D")

    assert masked.mean.mean() == pytest.approx(weekday.mean(), rel=0.2)
    assert masked.mean.mean() > 2 * as_zeros.mean.mean()
    # a NaN and an out-of-stock flag mean the same thing
    assert nan_marked.method == masked.method
    assert nan_marked.mean == pytest.approx(masked.mean)


def test_daily_arima_goes_through_weekly_totals():
    # given 24 weeks of daily demand peaking on the sixth day of each week
    rng = np.random.default_rng(4)
    weekday = np.array([10, 10, 10, 10, 20, 30, 25], dtype=float)
    y = rng.poisson(np.tile(weekday, 24)).astype(float)

    model = AutoArima().fit(y, m=7, freq="D")
    forecast = model.forecast(14)

    assert model.aggregated and model.seasonal_order[3] in (0, 1)
    assert [int(np.argmax(forecast.mean[w : w + 7])) for w in (0, 7)] == [5, 5]
    assert forecast.mean.sum() == pytest.approx(2 * weekday.sum(), rel=0.15)
    assert np.all(forecast.upper[95.0] > forecast.mean)
    # whole weeks update the weekly model; a single day refits the stored order
    model.update(rng.poisson(weekday).astype(float))
    assert len(model.history) == 24 * 7 + 7 and model.aggregated
    model.update([12.0])
    assert len(model.history) == 24 * 7 + 8 and not model.searched


# --- interface ---------------------------------------------------------------------------


def test_pandas_series_supplies_its_frequency():
    index = pd.period_range("2020-01", periods=36, freq="M")
    y = pd.Series(seasonal_series(np.random.default_rng(2), 36), index=index)
    result = forecast_series(y, h=6)
    assert (result.freq, result.m) == ("M", 12)


def test_update_equals_refit_for_recursive_methods():
    y = np.random.default_rng(8).poisson(0.7, 50).astype(float)
    for method in (Croston(), SBA(), TSB(), SeasonalNaive()):
        updated = method.clone().fit(y[:40], m=7).update(y[40:])
        refitted = method.clone().fit(y, m=7)
        assert updated.params() == pytest.approx(refitted.params())


def test_results_and_warm_state_are_json_serialisable(aus_run, carparts):
    _, _, seasonal = aus_run
    intermittent = forecast_series(carparts.iloc[3].to_numpy(dtype=float), h=6, freq="M")
    for result in (seasonal, intermittent):
        restored = json.loads(json.dumps(result.to_dict()))
        assert restored["method"] == result.method
        assert (
            restored["forecast"]["intervals"]["95"]["upper"] == result.intervals[95.0][1].tolist()
        )
        assert json.loads(json.dumps(result.warm_state()))["params"] == result.params


# --- determinism and batch ---------------------------------------------------------------


def test_same_input_same_output(carparts):
    y = carparts.iloc[7].to_numpy(dtype=float)
    first, second = (forecast_series(y, h=6, freq="M") for _ in range(2))
    assert first.method == second.method and first.params == second.params
    assert first.mean.tolist() == second.mean.tolist()
    assert first.forecast.to_dict() == second.forecast.to_dict()


def test_forecast_many_in_two_processes_matches_one_and_reports_progress(carparts):
    # given 30 car-part series and one that cannot be forecast
    series = {key: row.to_numpy(dtype=float) for key, row in carparts.iloc[:30].iterrows()}
    series["broken"] = SeriesInput(np.array([1.0, -2.0, 3.0]))
    calls: list[tuple[int, int]] = []

    # when
    parallel = forecast_many(
        series, h=6, freq="M", n_jobs=2, chunk_size=4, progress=lambda d, t: calls.append((d, t))
    )
    serial = forecast_many(series, h=6, freq="M", n_jobs=1)

    # then
    assert (parallel.n_jobs, serial.n_jobs) == (2, 1)
    assert list(parallel.results) == list(carparts.index[:30])
    assert set(parallel.failures) == {"broken"}
    assert "negative" in parallel.failures["broken"].error
    for key, result in parallel.results.items():
        assert result.key == key and result.model is None
        assert result.method == serial.results[key].method
        assert result.mean.tolist() == serial.results[key].mean.tolist()
    assert calls[0] == (0, 31) and calls[-1] == (31, 31)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert len(calls) == 1 + 8  # the start and each of the eight chunks


# --- selection: what competes, combinations ----------------------------------------------


def intermittent_history(seed: int, n: int = 60) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = ((rng.random(n) < 0.3) * rng.poisson(5, n).clip(1)).astype(float)
    y[0] = 3.0  # the first sale opens the history (the engine drops what comes before)
    return y


def test_seasonal_naive_does_not_compete_on_intermittent_demand():
    # given a part that sold for four years, then nothing in the backtest windows
    y = np.r_[intermittent_history(11, 48), np.zeros(30)]

    result = forecast_series(y, h=6, freq="M")

    assert result.demand_class in (DemandClass.INTERMITTENT, DemandClass.LUMPY)
    # repeating last year's zeros scores a perfect backtest, but only the baseline's
    # score is kept as the reference; a Croston-family forecast is chosen
    assert result.scores[BASELINE].rmsse == 0.0
    assert result.method in ("tsb", "adida", COMBINATION)
    assert result.mean[0] > 0


def test_combination_score_is_the_backtest_of_the_members_mean():
    y = intermittent_history(12)
    result = forecast_series(y, h=6, freq="M")
    combo = result.scores[COMBINATION]

    # recompute: the pooled members (within 50 % of the best backtest RMSSE), their mean
    # forecast at every origin
    best = min(result.scores[name].rmsse for name in ("tsb", "adida"))
    members = [name for name in ("tsb", "adida") if result.scores[name].rmsse <= 1.5 * best]
    assert set(result.params["members"] if result.method == COMBINATION else members) == set(
        members
    )
    origins = cutoffs(len(y), 6, 12, 8, 1)
    paths = [
        backtest_forecasts(METHODS[name](), y, m=12, freq="M", h=6, origins=origins).forecasts
        for name in members
    ]
    scores = [
        rmsse(y[cut : cut + 6], np.mean([path[i] for path in paths], axis=0), y[:cut], 12)
        for i, cut in enumerate(origins)
    ]
    assert combo.rmsse == pytest.approx(np.mean(scores))
    assert combo.origins == len(origins)


def test_a_single_method_must_beat_the_combination_clearly():
    y = intermittent_history(14)

    always = forecast_series(y, h=6, freq="M", config=EngineConfig(significance=1e9))
    never = forecast_series(y, h=6, freq="M", config=EngineConfig(combine=0))
    eager = forecast_series(y, h=6, freq="M", config=EngineConfig(significance=0.0))

    assert always.method == COMBINATION
    assert COMBINATION not in never.scores
    assert never.method == min(("tsb", "adida"), key=lambda name: never.scores[name].rmsse)
    # with no margin required, the single method wins when its mean paired difference is
    # positive, which it is whenever its mean score is the lower one
    single = never.method
    lower = eager.scores[single].rmsse < eager.scores[COMBINATION].rmsse
    assert eager.method == (single if lower else COMBINATION)


def test_a_method_far_behind_is_left_out_of_the_combination():
    # given a strongly seasonal series: the last-value forecast is far off in the backtest
    series = seasonal_series(np.random.default_rng(8), 96, sd=2.0)
    candidates = {DemandClass.SMOOTH: ("naive", "adida", "ets")}

    result = forecast_series(series, h=12, m=12, config=EngineConfig(candidates=candidates))

    best = min(result.scores[name].rmsse for name in ("naive", "adida", "ets"))
    assert result.scores["naive"].rmsse > 1.5 * best
    if result.method == COMBINATION:
        assert "naive" not in result.params["members"]
    assert result.method != "naive"


def test_combination_warm_state_refits_its_members():
    y = intermittent_history(13)
    state = {
        "method": COMBINATION,
        "params": {"members": {"tsb": {}, "adida": {}}},
        "demand_class": str(classify(y, m=12)),
        "scores": {},
    }

    warm = forecast_series(y, h=6, freq="M", warm=state)

    assert warm.warm_started and warm.method == COMBINATION
    expected = (TSB().fit(y, m=12).forecast(6).mean + ADIDA().fit(y, m=12).forecast(6).mean) / 2
    assert warm.mean == pytest.approx(expected)
    assert set(warm.warm_state()["params"]["members"]) == {"tsb", "adida"}
    json.dumps(warm.warm_state())
    # a stored member that is no longer a candidate of the class forces a full run
    stale = {**state, "params": {"members": {"croston": {}, "adida": {}}}}
    assert not forecast_series(y, h=6, freq="M", warm=stale).warm_started


def test_daily_intermittent_items_also_try_the_weekday_aware_methods():
    # given a daily item that sells mostly at weekends (about half the days without a sale)
    rng = np.random.default_rng(15)
    days = np.arange(210)
    rate = np.where(days % 7 >= 5, 2.5, 0.4)
    y = rng.poisson(rate).astype(float)
    y[0] = 1.0

    daily = forecast_series(y, h=14, freq="D")
    monthly = forecast_series(y, h=14, freq="M")

    assert daily.demand_class in (DemandClass.INTERMITTENT, DemandClass.LUMPY)
    assert {"tsb", "adida", "ets", "auto_arima"} <= set(daily.scores)
    assert "ets" not in monthly.scores and "auto_arima" not in monthly.scores
    # the weekday-aware candidates beat the flat Croston-family forecast in the backtest
    assert min(daily.scores["ets"].rmsse, daily.scores["auto_arima"].rmsse) < min(
        daily.scores["tsb"].rmsse, daily.scores["adida"].rmsse
    )


# --- fixed-parameter refits (the backtest's later origins) --------------------------------


def weekday_daily(rng: np.random.Generator, days: int) -> np.ndarray:
    weekday = np.array([1.0, 0.9, 0.9, 1.0, 1.15, 1.4, 0.65])
    return rng.poisson(6 * weekday[np.arange(days) % 7]).astype(float)


@pytest.mark.parametrize(
    ("method", "freq", "m"),
    [(ETS(), "D", 7), (AutoArima(), "D", 7), (AutoArima(), "M", 12), (ETS(), "M", 12)],
)
def test_refit_fixed_keeps_the_estimated_parameters_and_reads_the_new_data(method, freq, m):
    rng = np.random.default_rng(41)
    y = weekday_daily(rng, 400) if freq == "D" else seasonal_series(rng, 80, m=12)
    y[-30:-25] = np.nan  # a stock-out spell inside the longer history
    fitted = method.clone().fit(y[:-40], m=m, freq=freq)
    moved = fitted.refit_fixed(y)

    assert moved.params() == fitted.params()  # same order / structure / coefficients
    assert len(moved.history) == len(y)
    again = fitted.refit_fixed(y[:-40])
    np.testing.assert_allclose(
        again.forecast(14, LEVELS).mean, fitted.forecast(14, LEVELS).mean, rtol=1e-6
    )
    # the filter saw the 40 new periods: the forecast starts from them, not from the old end
    assert not np.allclose(moved.forecast(14, LEVELS).mean, fitted.forecast(14, LEVELS).mean)


def test_arima_moved_by_refit_fixed_can_still_take_updates():
    rng = np.random.default_rng(42)
    y = weekday_daily(rng, 300)
    moved = AutoArima().fit(y[:200], m=7, freq="D").refit_fixed(y[:280])
    updated = moved.update(y[280:])  # 20 days: not whole weeks, refits the stored order
    assert updated.params()["order"] == moved.params()["order"]
    assert len(updated.history) == 300
    assert np.isfinite(updated.forecast(7, LEVELS).mean).all()


def test_backtest_keeps_the_oldest_origins_parameters_unless_told_to_reestimate():
    rng = np.random.default_rng(43)
    y = weekday_daily(rng, 500)
    origins = cutoffs(len(y), 28, 4, 100, 28)
    fixed = backtest_forecasts(ETS(), y, m=7, freq="D", h=28, origins=origins)
    again = backtest_forecasts(ETS(), y, m=7, freq="D", h=28, origins=origins, reestimate=True)
    oldest = ETS().fit(y[: origins[0]], m=7, freq="D")
    newest = oldest.refit_fixed(y[: origins[-1]]).forecast(28, ()).mean
    np.testing.assert_allclose(fixed.forecasts[-1], newest)
    np.testing.assert_allclose(fixed.forecasts[0], again.forecasts[0])  # same first fit
    assert not np.allclose(fixed.forecasts[-1], again.forecasts[-1])  # re-estimated
    assert fixed.score.ok and again.score.ok


def test_re_estimates_start_from_the_arima_order_but_not_from_old_ets_estimates():
    rng = np.random.default_rng(44)
    y = seasonal_series(rng, 96)
    ets, arima = ETS().fit(y[:60], m=12), AutoArima().fit(y[:60], m=12, freq="M")

    assert ets.structure(ets.params()) == {"trend": True, "damped": True, "season": 12}
    assert arima.structure(arima.params()) == arima.params()
    combo = Combination(members=(ETS(), AutoArima()))
    seeded = combo.structure({"members": {"ets": ets.params(), "auto_arima": arima.params()}})
    assert seeded == {"members": {"ets": ets.structure(ets.params()), "auto_arima": arima.params()}}

    # A re-estimated backtest origin fits ETS as a fresh fit on that history would.
    origins = cutoffs(len(y), 12, 3, 24)
    run = backtest_forecasts(ETS(), y, m=12, freq="M", h=12, origins=origins, reestimate=True)
    fresh = ETS().fit(y[: origins[-1]], m=12, freq="M").forecast(12, ()).mean
    np.testing.assert_allclose(run.forecasts[-1], fresh)


def test_the_final_ets_fit_is_a_fresh_estimate_on_the_whole_history():
    rng = np.random.default_rng(45)
    y = seasonal_series(rng, 96)
    config = EngineConfig(
        candidates={DemandClass.SMOOTH: (BASELINE, "ets"), DemandClass.ERRATIC: (BASELINE, "ets")},
        baseline_competes=(),
        combine=0,
    )

    result = forecast_series(y, h=12, m=12, config=config)

    assert result.method == "ets"
    expected = ETS().fit(y, m=12).forecast(12, LEVELS)
    np.testing.assert_allclose(result.mean, expected.mean)
    np.testing.assert_allclose(result.forecast.upper[95.0], expected.upper[95.0])
    # The nightly warm path still starts from the stored estimates.
    warm = forecast_series(y, h=12, m=12, config=config, warm=result.warm_state())
    assert warm.warm_started and warm.method == "ets"


class _Diverging(ADIDA):
    """ADIDA whose forecast diverges, as a filter run with unstable parameters can."""

    name = "diverging"

    def _forecast(self, h, levels):
        forecast = super()._forecast(h, levels)
        mean = forecast.mean.copy()
        mean[h // 2 :] = np.nan
        return type(forecast)(mean, forecast.lower, forecast.upper)


def test_a_method_with_a_non_finite_forecast_fails_and_never_reaches_the_result(monkeypatch):
    monkeypatch.setitem(METHODS, "diverging", _Diverging)
    config = EngineConfig(
        candidates={DemandClass.INTERMITTENT: ("diverging",), DemandClass.LUMPY: ("diverging",)}
    )
    y = intermittent_history(15)
    with pytest.raises(ValueError, match="not finite"):
        _Diverging().fit(y, m=12, freq="M").forecast(6)

    result = forecast_series(y, h=6, freq="M", config=config)
    assert result.scores["diverging"].error and not result.scores["diverging"].ok
    assert result.method != "diverging"
    assert result.forecast.finite
    # a stored warm state naming it is refitted, fails the same way, and the full path runs
    warm = {**result.warm_state(), "method": "diverging", "params": {}}
    again = forecast_series(y, h=6, freq="M", config=config, warm=warm)
    assert not again.warm_started and again.forecast.finite


def test_a_diverging_final_fit_hands_over_to_the_next_best_method(monkeypatch):
    # the backtest's fits are fine but the fit on the whole history diverges, as an ARIMA
    # order refitted on two years of a bench SKU did (-2.6e12 units a day, clipped to 0)
    class LateDiverging(ADIDA):
        name = "late_diverging"

        def _forecast(self, h, levels):
            forecast = super()._forecast(h, levels)
            if len(self.history) < 60:
                return forecast
            return type(forecast)(forecast.mean - 1e12, forecast.lower, forecast.upper)

    monkeypatch.setitem(METHODS, "late_diverging", LateDiverging)
    config = EngineConfig(candidates={DemandClass.INTERMITTENT: ("late_diverging",)}, combine=0)
    y = intermittent_history(16)
    result = forecast_series(y, h=6, freq="M", config=config)

    assert result.scores["late_diverging"].ok  # the backtest saw nothing wrong
    assert "diverges" in result.errors["late_diverging"]
    assert result.method == BASELINE  # the only other candidate
    assert result.forecast.finite and (result.mean >= 0).all()
