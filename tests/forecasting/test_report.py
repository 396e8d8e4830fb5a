"""Hold-out report (forecasting.engine.report) on small synthetic series with fixed seeds.

No database and no data files: the series are generated here, so every expected score can
be recomputed by hand from the engine's `mase` / `rmsse`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from forecasting.engine import SeriesInput, mase, rmsse
from forecasting.engine import report as report_module
from forecasting.engine.report import REPORT_METHODS, BacktestReport, backtest_report

CHEAP = ("chosen", "seasonal_naive", "naive", "croston_tsb", "adida")


def seasonal(rng: np.random.Generator, n: int, m: int = 12, level: float = 50.0) -> np.ndarray:
    t = np.arange(n)
    return np.round(level + 15 * np.sin(2 * np.pi * t / m) + rng.normal(0, 3, n)).clip(0)


def intermittent(rng: np.random.Generator, n: int, p: float = 0.3) -> np.ndarray:
    return (rng.random(n) < p) * rng.poisson(4, n).clip(1)


def test_rows_hold_the_mean_hold_out_scores_of_each_method():
    # given two exactly repeating monthly series: the seasonal naive is perfect on them
    cycle = np.array([3.0, 5, 8, 13, 21, 13, 8, 5, 3, 2, 1, 2])
    series = {"a": np.tile(cycle, 4), "b": np.tile(cycle * 2, 4)}

    report = backtest_report(series, h=6, freq="M", methods=CHEAP)

    assert isinstance(report, BacktestReport)
    assert [row.method for row in report.rows] == list(CHEAP)
    assert (report.series, report.skipped, report.m, report.h) == (2, 0, 12, 6)
    assert report.row("seasonal_naive").mase == 0.0
    assert report.row("seasonal_naive").rmsse == 0.0
    # naive repeats the last training value (13 for "a", 26 for "b") over the hold-out
    expected = []
    for values in series.values():
        train, actual = values[:-6], values[-6:]
        expected.append(rmsse(actual, np.full(6, train[-1]), train, 12))
    assert report.row("naive").rmsse == pytest.approx(np.mean(expected))
    assert all(row.series == 2 and row.failures == 0 for row in report.rows)
    assert report.wall_seconds > 0 and report.series_per_second > 0


def test_paired_difference_is_the_mean_gap_with_a_bootstrap_interval():
    report = BacktestReport(
        h=1, freq="M", m=12, rows=(), series=0, skipped=0, wall_seconds=1.0, n_jobs=1
    )
    rng = np.random.default_rng(7)
    gaps = rng.normal(0.05, 0.02, 200)
    report.scores = {i: {"a": (0.0, 1.0 + gap), "b": (0.0, 1.0)} for i, gap in enumerate(gaps)}

    diff, lower, upper = report.paired_difference("a", "b")

    assert diff == pytest.approx(gaps.mean())
    half = 1.96 * gaps.std(ddof=1) / math.sqrt(len(gaps))  # the normal-theory interval
    assert lower == pytest.approx(diff - half, abs=0.001)
    assert upper == pytest.approx(diff + half, abs=0.001)
    assert report.paired_difference("a", "b") == (diff, lower, upper)  # seeded
    # one odd series among equal ones widens the interval to cover zero
    report.scores = {i: {"a": (0.0, 1.0), "b": (0.0, 1.0)} for i in range(29)}
    report.scores[29] = {"a": (0.0, 1.3), "b": (0.0, 1.0)}
    diff, lower, upper = report.paired_difference("a", "b")
    assert diff == pytest.approx(0.01) and lower == 0.0 and upper > diff
    assert report.paired_difference("a", "b", metric="mase") == (0.0, 0.0, 0.0)


def test_errors_are_scaled_from_the_first_sale_on():
    # given a product listed 30 months before it first sold
    rng = np.random.default_rng(1)
    values = np.r_[np.zeros(30), seasonal(rng, 48)]

    report = backtest_report({"late": values}, h=6, freq="M", methods=("seasonal_naive",))

    train, actual = values[30:-6], values[-6:]
    forecast = train[-12:-6]
    assert report.scores["late"]["seasonal_naive"] == pytest.approx(
        (mase(actual, forecast, train, 12), rmsse(actual, forecast, train, 12))
    )
    # the jump from the pre-launch zeros to the first sales would have inflated the scale
    # and flattered every method's score
    assert report.row("seasonal_naive").mase > mase(actual, forecast, values[:-6], 12)


def test_out_of_stock_hold_out_periods_are_not_scored_and_empty_series_are_skipped():
    rng = np.random.default_rng(2)
    values = seasonal(rng, 48)
    oos = np.zeros(48, dtype=bool)
    oos[-3:] = True  # the last three months had no stock
    blank = np.ones(48, dtype=bool)
    blank[:-6] = False  # nothing observed in the hold-out
    series = {
        "partial": SeriesInput(values, oos=oos),
        "never_sold": np.zeros(48),
        "hold_out_unobserved": SeriesInput(values, oos=blank),
    }

    report = backtest_report(series, h=6, freq="M", methods=("seasonal_naive",))

    assert (report.series, report.skipped) == (1, 2)
    train, actual = values[:-6], values[-6:].copy()
    actual[-3:] = np.nan
    assert report.row("seasonal_naive").mase == pytest.approx(
        mase(actual, train[-12:-6], train, 12)
    )


def test_a_failing_method_is_scored_with_the_seasonal_naive_and_counted(monkeypatch):
    def broken(train: np.ndarray, h: int, m: int) -> np.ndarray:
        raise RuntimeError("no convergence")

    monkeypatch.setattr(report_module, "plain_auto_arima", broken)
    rng = np.random.default_rng(3)
    series = {key: seasonal(rng, 48) for key in "abc"}

    report = backtest_report(series, h=6, freq="M", methods=("seasonal_naive", "auto_arima"))

    arima, baseline = report.row("auto_arima"), report.row("seasonal_naive")
    assert (arima.failures, arima.series) == (3, 3)
    assert (arima.mase, arima.rmsse) == (baseline.mase, baseline.rmsse)


def test_per_sku_choice_beats_the_seasonal_naive_on_intermittent_demand():
    # given 30 intermittent monthly series (about 30 % of months with demand)
    rng = np.random.default_rng(4)
    series = {f"part{i}": intermittent(rng, 60) for i in range(30)}

    report = backtest_report(series, h=6, freq="M", methods=CHEAP)

    assert report.row("chosen").rmsse < report.row("seasonal_naive").rmsse
    assert set(report.picks) <= {"tsb", "adida", "combo"}
    assert sum(report.picks.values()) == report.series
    assert set(report.classes) <= {"intermittent", "lumpy"}
    by_class = report.by_class()
    assert set(by_class) == set(report.classes)
    assert all(set(methods) == set(CHEAP) for methods in by_class.values())


def test_plain_auto_arima_and_ets_run_on_every_series():
    # given two seasonal series of six years: auto_arima gets its seasonal search (m = 12)
    rng = np.random.default_rng(5)
    series = {"x": seasonal(rng, 72), "y": seasonal(rng, 72, level=80)}

    report = backtest_report(series, h=12, freq="MS")

    assert [row.method for row in report.rows] == list(REPORT_METHODS)
    arima, naive = report.row("auto_arima"), report.row("naive")
    assert arima.failures == 0 and report.row("ets").failures == 0
    # a seasonal model must beat the flat last-value forecast on a seasonal series
    assert arima.rmsse < naive.rmsse
    assert report.best_single().method != "chosen"
    assert report.best_single().rmsse == min(
        row.rmsse for row in report.rows if row.method != "chosen"
    )


def test_two_processes_give_the_same_report_in_input_order():
    rng = np.random.default_rng(6)
    series = {f"s{i}": intermittent(rng, 40, p=0.5) for i in range(12)}

    one = backtest_report(series, h=4, freq="M", methods=CHEAP, n_jobs=1)
    two = backtest_report(series, h=4, freq="M", methods=CHEAP, n_jobs=2, chunk_size=2)

    assert list(one.scores) == list(series) == list(two.scores)
    assert one.scores == two.scores
    assert [(r.method, r.mase, r.rmsse) for r in one.rows] == [
        (r.method, r.mase, r.rmsse) for r in two.rows
    ]
    assert one.picks == two.picks


def test_table_lists_every_method_with_its_scores():
    rng = np.random.default_rng(7)
    series = {f"s{i}": seasonal(rng, 48) for i in range(3)}

    report = backtest_report(series, h=6, freq="M", methods=CHEAP)
    table = report.as_table()

    lines = table.splitlines()
    assert "3 series" in lines[0] and "series/s" in lines[0]
    for row in report.rows:
        line = next(line for line in lines if line.strip().startswith(row.method + " "))
        assert f"{row.mase:.3f}" in line and f"{row.rmsse:.3f}" in line
    assert "<- best single" in next(
        line for line in lines if line.strip().startswith(report.best_single().method + " ")
    )


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown report methods"):
        backtest_report({"a": np.ones(30)}, h=3, freq="M", methods=("prophet",))
    with pytest.raises(ValueError, match="horizon"):
        backtest_report({"a": np.ones(30)}, h=0, freq="M")
    empty = backtest_report({"short": np.ones(3)}, h=6, freq="M", methods=CHEAP)
    assert empty.series == 0 and empty.skipped == 1
    assert math.isnan(empty.row("chosen").mase)
