"""Forecasting engine benchmark (forecasting.engine, no Django). Prints figures; asserts nothing.

    .venv/bin/python tests/benchmarks/bench_forecast.py [--smoke] [--only NAME,...]
                         [--series N] [--jobs N] [--data DIR]

Data: ../shared/data/forecast beside the repository (see its README), read in place:

  name       data                                        freq  h   full  smoke
  carparts   car-part sales, 2,674 intermittent series    M    6   400     40
  aus_retail Australian retail turnover, 152 series       M   12    48      2
             (last 10 years + the hold-out year)
  jewelry    costume-jewelry SKUs, 314 series             W    8   120     10
  m5_weekly  M5 TX_3 FOODS_3, 823 items, days → weeks     W    8   100     10
  m5_daily   M5 TX_3 FOODS_3, 823 items                   D   28    30      2

  M5 is Walmart data under the M5 competition rules: INTERNAL BENCHMARKING ONLY, never in
  fixtures, demos or the product. Subsets are the first N series in file order (aus_retail:
  the 148 series that run to 2018-12), so runs are comparable.

For each set (`forecasting.engine.report.backtest_report`): the last h periods are held out;
the engine's per-series choice ("chosen": classify, rolling-origin backtest, pick, final fit)
is compared with seasonal naive, naive, TSB (the Croston family, on every series), ADIDA,
ETS and plain pmdarima auto_arima (default stepwise search; seasonal where m <= 12) fitted
on every series. Mean MASE / RMSSE scaled by the in-sample seasonal-naive differences from
the first sale on. Then per set: the line "chosen vs seasonal naive vs best single method"
with the reference figure from the issue, RMSSE by demand class, the engine pipeline's
throughput with 1 and `--jobs` processes and the warm-started rerun (stored method and
ARIMA order, no backtest) that nightly runs use, and per-fit costs (auto_arima search,
refit of a known order, `update()` by one period, ETS, TSB, ADIDA). At the end a PASS/MISS
line for each target: "chosen below seasonal naive on every set" and "chosen no worse than
the best single method on each set".

Running time on the 2-core reference machine with nothing else running: full mode about
20–25 minutes (most of it plain auto_arima: ≈ 9.5 s per daily M5 series, 1–10 s per
monthly one), smoke about 2 minutes (177 s measured at load average 3). Smoke subsets are
too small for the PASS/MISS lines to mean much; they show that everything runs.
`--series N` overrides every subset size; `--only` picks sets.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

from forecasting.engine import (  # noqa: E402
    ADIDA,
    ETS,
    TSB,
    AutoArima,
    EngineConfig,
    SeriesInput,
    forecast_many,
)
from forecasting.engine.report import BacktestReport, backtest_report  # noqa: E402
from forecasting.engine.series import season_length, since_first_sale  # noqa: E402
from forecasting.engine.threads import single_threaded_blas  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "forecast"


# --- data --------------------------------------------------------------------------------


def _long(data: Path, name: str) -> dict[str, np.ndarray]:
    frame = pd.read_csv(data / name, dtype={"unique_id": str})
    wide = frame.pivot(index="unique_id", columns="period", values="y").sort_index(axis=1)
    return {key: row.to_numpy(dtype=float) for key, row in wide.iterrows()}


def load_carparts(data: Path) -> dict[str, np.ndarray]:
    return _long(data, "carparts_monthly.csv.gz")


def load_jewelry(data: Path) -> dict[str, np.ndarray]:
    return _long(data, "jewelry_weekly.csv.gz")


AUS_YEARS = 10


def load_aus_retail(data: Path) -> dict[str, np.ndarray]:
    """The last AUS_YEARS years before the hold-out plus the 12 held-out months.

    The full series run 36 years; plain auto_arima's seasonal search on all of them costs
    13+ s per series, and ten years are what a retailer would model anyway (the engine's
    own ARIMA search looks at the last 120 periods).
    """
    frame = pd.read_csv(data / "aus_retail_monthly.csv.gz")
    wide = frame.pivot(index="unique_id", columns="Month", values="Turnover").sort_index(axis=1)
    # Four series stop before 2018-12; the others share one calendar and one hold-out.
    wide = wide[wide.iloc[:, -1].notna()]
    keep = 12 * AUS_YEARS + 12
    return {key: row.to_numpy(dtype=float)[-keep:] for key, row in wide.iterrows()}


def load_m5_daily(data: Path) -> dict[str, np.ndarray]:
    frame = pd.read_csv(data / "m5_tx3_foods3_daily_wide.csv.gz")
    values = frame.drop(columns="unique_id").to_numpy(dtype=float)
    return dict(zip(frame["unique_id"], values, strict=True))


def load_m5_weekly(data: Path) -> dict[str, np.ndarray]:
    """Daily units summed to weeks ending on the last day (whole weeks only)."""
    daily = load_m5_daily(data)
    weekly = {}
    for key, values in daily.items():
        offset = len(values) % 7
        weekly[key] = values[offset:].reshape(-1, 7).sum(axis=1)
    return weekly


@dataclass(frozen=True)
class Dataset:
    name: str
    label: str
    load: Callable[[Path], dict[str, np.ndarray]]
    h: int
    freq: str
    full: int
    smoke: int
    reference: str  # best single method's RMSSE quoted in the forecasting issue


DATASETS = (
    Dataset("carparts", "car parts, monthly", load_carparts, 6, "M", 400, 40, "≈ 0.68 ADIDA/TSB"),
    Dataset(
        "aus_retail",
        "Australian retail, monthly",
        load_aus_retail,
        12,
        "M",
        48,
        2,
        "≈ 0.49 seasonal auto_arima",
    ),
    Dataset("jewelry", "jewelry, weekly", load_jewelry, 8, "W", 120, 10, "≈ 0.54 naive"),
    Dataset(
        "m5_weekly",
        "M5 TX_3 FOODS_3, weekly (internal benchmarking only)",
        load_m5_weekly,
        8,
        "W",
        100,
        10,
        "≈ 1.07 auto_arima",
    ),
    Dataset(
        "m5_daily",
        "M5 TX_3 FOODS_3, daily (internal benchmarking only)",
        load_m5_daily,
        28,
        "D",
        30,
        2,
        "≈ 0.63 seasonal auto_arima",
    ),
)


# --- printing helpers --------------------------------------------------------------------


def printer(label: str) -> Callable[[int, int], None]:
    """A progress callback printing about every 25 %."""
    state = {"next": 0.25, "started": time.perf_counter()}

    def report(done: int, total: int) -> None:
        if total and (done / total >= state["next"] or done == total):
            elapsed = time.perf_counter() - state["started"]
            print(f"    {label}: {done}/{total} series, {elapsed:.0f} s", flush=True)
            state["next"] = done / total + 0.25

    return report


def summary_line(report: BacktestReport, reference: str) -> str:
    chosen, baseline, best = report.row("chosen"), report.row("seasonal_naive"), None
    best = report.best_single()
    return (
        f"  RMSSE chosen {chosen.rmsse:.3f} | seasonal naive {baseline.rmsse:.3f} | "
        f"best single {best.method} {best.rmsse:.3f} (issue's reference: {reference})"
    )


def class_lines(report: BacktestReport) -> list[str]:
    lines = ["  RMSSE by demand class (chosen / seasonal naive / best single of the class)"]
    for name, methods in report.by_class().items():
        singles = {k: v for k, v in methods.items() if k != "chosen"}
        best = min(singles, key=singles.get)
        count = report.classes[name]
        lines.append(
            f"    {name:<13}{count:>5} series  {methods['chosen']:.3f} / "
            f"{methods['seasonal_naive']:.3f} / {best} {singles[best]:.3f}"
        )
    return lines


# --- throughput and per-fit costs --------------------------------------------------------


def throughput(series: dict[str, np.ndarray], h: int, freq: str, jobs: int, smoke: bool) -> None:
    """The engine pipeline alone (what the nightly task runs), cold and warm-started;
    with 1 and `jobs` processes (smoke: `jobs` only)."""
    train = {key: values[:-h] for key, values in series.items()}
    config = EngineConfig()
    runs = {}
    for n_jobs in sorted({jobs} if smoke else {1, jobs}):
        runs[n_jobs] = forecast_many(train, h=h, freq=freq, config=config, n_jobs=n_jobs)
    one, many = runs.get(1, runs[jobs]), runs[jobs]
    warm_inputs = {
        key: SeriesInput(values, warm=many.results[key].warm_state())
        for key, values in train.items()
        if key in many.results
    }
    warm = forecast_many(warm_inputs, h=h, freq=freq, config=config, n_jobs=jobs)
    count = len(train)
    if 1 in runs and jobs != 1:
        same = sum(np.array_equal(one.results[k].mean, many.results[k].mean) for k in one.results)
        print(
            f"  engine pipeline on {count} series: 1 process {one.seconds:.1f} s "
            f"({count / one.seconds:.1f} series/s), {jobs} processes {many.seconds:.1f} s "
            f"({count / many.seconds:.1f} series/s, speed-up {one.seconds / many.seconds:.2f}x, "
            f"identical forecasts {same}/{len(one.results)})"
        )
    else:
        print(
            f"  engine pipeline on {count} series: {jobs} process(es) {many.seconds:.1f} s "
            f"({count / many.seconds:.1f} series/s)"
        )
    print(
        f"  warm-started rerun ({jobs} processes, stored method/order, no backtest): "
        f"{1000 * warm.seconds / count:.1f} ms/series, "
        f"≈ {warm.seconds / count * 10_000 / 60:.1f} min per 10,000 series"
    )


def fit_costs(series: dict[str, np.ndarray], h: int, freq: str, count: int) -> None:
    """Median seconds of one fit, over the first `count` series with enough history."""
    m = season_length(freq)
    costs: dict[str, list[float]] = {
        "auto_arima search": [],
        "refit known order": [],
        "update 1 period": [],
        "ets": [],
        "tsb": [],
        "adida": [],
    }

    def timed(key: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        out = call(*args, **kwargs)
        costs[key].append(time.perf_counter() - started)
        return out

    done = 0
    with single_threaded_blas(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for values in series.values():
            y = since_first_sale(values[:-h])
            if (y > 0).sum() < 10 or len(y) < 3 * m and m <= 12:
                continue
            searched = timed("auto_arima search", AutoArima().fit, y, m=m, freq=freq)
            params = searched.params()
            timed("refit known order", AutoArima().fit, y, m=m, freq=freq, warm=params)
            timed("update 1 period", searched.update, values[len(values) - h :][:1])
            timed("ets", ETS().fit, y, m=m, freq=freq)
            timed("tsb", TSB().fit, y, m=m, freq=freq)
            timed("adida", ADIDA().fit, y, m=m, freq=freq)
            done += 1
            if done >= count:
                break
    if not done:
        return
    parts = []
    for key, values in costs.items():
        median = statistics.median(values)
        parts.append(f"{key} {median:.2f} s" if median >= 0.1 else f"{key} {1000 * median:.1f} ms")
    print(f"  per-fit cost (median of {done} series; engine methods): " + ", ".join(parts))


# --- main --------------------------------------------------------------------------------


def run_dataset(dataset: Dataset, data: Path, size: int, jobs: int, smoke: bool) -> BacktestReport:
    everything = dataset.load(data)
    series = dict(list(everything.items())[:size])
    print(
        f"\n== {dataset.label}: {len(series)} of {len(everything)} series, hold-out "
        f"{dataset.h}, freq {dataset.freq}, {jobs} processes",
        flush=True,
    )
    report = backtest_report(
        series, h=dataset.h, freq=dataset.freq, n_jobs=jobs, progress=printer(dataset.name)
    )
    print("\n".join("  " + line for line in report.as_table().splitlines()))
    print(summary_line(report, dataset.reference))
    print("\n".join(class_lines(report)))
    # Cheap methods make the pipeline fast on intermittent sets: time it on all of them.
    pipeline = everything if dataset.name == "carparts" and not smoke else series
    throughput(pipeline, dataset.h, dataset.freq, jobs, smoke)
    fit_costs(series, dataset.h, dataset.freq, 2 if smoke else 8)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="few series per set (CI)")
    parser.add_argument("--only", help="comma-separated set names (default all)")
    parser.add_argument("--series", type=int, help="series per set (overrides the defaults)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--data", type=Path, default=DATA, help="forecast data directory")
    args, _ = parser.parse_known_args()  # scripts/bench.sh passes its own flags through
    if not (args.data / "README.md").exists():
        sys.exit(f"forecast data not found at {args.data} (expected ../shared/data/forecast)")
    chosen_sets = set(args.only.split(",")) if args.only else None
    warnings.simplefilter("ignore")
    mode = "smoke" if args.smoke else "full"
    print(f"forecast benchmark ({mode}): {os.cpu_count()} CPUs, data {args.data}")
    started = time.perf_counter()
    reports: dict[str, BacktestReport] = {}
    for dataset in DATASETS:
        if chosen_sets is not None and dataset.name not in chosen_sets:
            continue
        size = args.series or (dataset.smoke if args.smoke else dataset.full)
        reports[dataset.name] = run_dataset(dataset, args.data, size, args.jobs, args.smoke)

    print("\n== summary (RMSSE on the hold-out)")
    print(
        f"  {'set':<12}{'series':>7}{'chosen':>9}{'s. naive':>10}  best single"
        "   chosen - best single (95 % paired bootstrap interval)"
    )
    below_naive, not_worse = [], []
    for name, report in reports.items():
        chosen, baseline, best = (
            report.row("chosen"),
            report.row("seasonal_naive"),
            report.best_single(),
        )
        diff, lower, upper = report.paired_difference("chosen", best.method)
        print(
            f"  {name:<12}{report.series:>7}{chosen.rmsse:>9.3f}{baseline.rmsse:>10.3f}"
            f"  {best.method} {best.rmsse:.3f}   {diff:+.4f} ({lower:+.4f} .. {upper:+.4f})"
        )
        if not chosen.rmsse < baseline.rmsse:
            below_naive.append(name)
        # Rounded to the printed precision: a tie at three decimals is no worse.
        if round(chosen.rmsse, 3) > round(best.rmsse, 3):
            not_worse.append(f"{name} {chosen.rmsse:.3f} vs {best.method} {best.rmsse:.3f}")
    count = len(reports)
    verdict = "PASS" if not below_naive else "MISS (" + ", ".join(below_naive) + ")"
    print(f"  target chosen below seasonal naive on every set: {verdict} [{count} sets]")
    verdict = "PASS" if not not_worse else "MISS (" + "; ".join(not_worse) + ")"
    print(f"  target chosen no worse than the best single method on each set: {verdict}")
    print(f"\nbenchmark finished in {time.perf_counter() - started:.0f} s")
    if math.isnan(sum(r.row("chosen").rmsse for r in reports.values())):
        print("  (a set had no scorable series)")


if __name__ == "__main__":
    main()
