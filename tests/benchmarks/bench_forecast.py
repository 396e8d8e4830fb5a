"""Forecasting engine benchmark (forecasting.engine, no Django). Prints figures; asserts nothing.

    .venv/bin/python tests/benchmarks/bench_forecast.py [--smoke] [--m5 N] [--carparts N]
                                            [--scaling N] [--jobs N] [--repeat N]

Data: ../shared/data/forecast beside the repository (see its README), read in place:
  * M5 store TX_3, department FOODS_3: 823 daily series, 1,941 days. Walmart data under
    the M5 competition rules: INTERNAL BENCHMARKING ONLY, never in fixtures or demos.
  * carparts: 2,674 monthly intermittent series, 51 months.

For each data set the last 28 days (M5) / 6 months (carparts) are held out; the engine
sees the rest, runs its per-series pipeline (classify, rolling-origin backtest, choose,
final fit) in `--jobs` processes, and forecasts the held-out periods. New items compete
with the data set's launch curve (`launch_profile` of all training parts). Reported:
(a) time per series by demand class (classify + backtest + final fit) and per method
    (one fit + forecast, averaged over backtest origins);
(b) wall time for the first N series with 1 and with 2 processes (best of --repeat) and
    their ratio, and the warm-started rerun (stored method and ARIMA order, no backtest)
    that nightly runs use;
(c) accuracy on the hold-out: MASE of the chosen method vs the seasonal-naive baseline
    (median and mean of the per-series ratio, and the ratio of mean MASEs), mean MASE and
    RMSSE of every candidate method fitted on the full training part, and how often each
    method was chosen. Scales come from the training data from the first sale on (the M5
    convention), with the seasonal naive in-sample differences (m = 7 / 12).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

from forecasting.engine import (  # noqa: E402
    BASELINE,
    EngineConfig,
    ForecastResult,
    SeriesInput,
    forecast_many,
    launch_profile,
    mase,
    rmsse,
)
from forecasting.engine.series import since_first_sale  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "forecast"


def load_m5(data: Path, limit: int | None) -> dict[str, np.ndarray]:
    frame = pd.read_csv(data / "m5_tx3_foods3_daily_wide.csv.gz")
    if limit:
        frame = frame.iloc[:limit]
    values = frame.drop(columns="unique_id").to_numpy(dtype=float)
    return dict(zip(frame["unique_id"], values, strict=True))


def load_carparts(data: Path, limit: int | None) -> dict[str, np.ndarray]:
    long = pd.read_csv(data / "carparts_monthly.csv.gz", dtype={"unique_id": str})
    wide = long.pivot(index="unique_id", columns="period", values="y").sort_index(axis=1)
    if limit:
        wide = wide.iloc[:limit]
    return {key: row.to_numpy(dtype=float) for key, row in wide.iterrows()}


def printer(label: str) -> Callable[[int, int], None]:
    """A progress callback printing about every 10 %."""
    state = {"next": 0.0, "started": time.perf_counter()}

    def report(done: int, total: int) -> None:
        if total and (done / total >= state["next"] or done == total):
            elapsed = time.perf_counter() - state["started"]
            print(f"    {label}: {done}/{total} series, {elapsed:.1f} s", flush=True)
            state["next"] = done / total + 0.1

    return report


def pipeline_seconds(result: ForecastResult) -> float:
    # forecast_all's extra fits are bench-only work, so they are left out.
    return sum(result.timings.get(part, 0.0) for part in ("classify", "backtest", "fit"))


def summarize_timings(results: dict[str, ForecastResult]) -> None:
    by_class: dict[str, list[float]] = defaultdict(list)
    by_method: dict[str, list[float]] = defaultdict(list)
    for result in results.values():
        by_class[str(result.demand_class)].append(pipeline_seconds(result))
        for name, score in result.scores.items():
            if score.origins:
                by_method[name].append(score.seconds / score.origins)
    print("  (a) time per series by class (classify + backtest + final fit)")
    print(f"      {'class':<13}{'series':>7}{'mean s':>9}{'median s':>10}{'max s':>8}")
    for name, values in sorted(by_class.items()):
        print(
            f"      {name:<13}{len(values):>7}{statistics.fmean(values):>9.3f}"
            f"{statistics.median(values):>10.3f}{max(values):>8.2f}"
        )
    print("      per method, one fit + forecast (mean over backtest origins)")
    print(f"      {'method':<16}{'fits':>6}{'mean ms':>10}{'median ms':>11}")
    for name, values in sorted(by_method.items()):
        print(
            f"      {name:<16}{len(values):>6}{1000 * statistics.fmean(values):>10.2f}"
            f"{1000 * statistics.median(values):>11.2f}"
        )


def summarize_accuracy(
    results: dict[str, ForecastResult],
    train: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    m: int,
) -> None:
    per_method: dict[str, list[tuple[float, float]]] = defaultdict(list)
    chosen_scores, baseline_scores, ratios = [], [], []
    chosen_rmsse, baseline_rmsse = [], []
    picks: Counter[str] = Counter()
    by_class: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for key, result in results.items():
        actual, history = test[key], since_first_sale(train[key])
        forecasts = {name: fc.mean for name, fc in result.candidates.items()}
        forecasts[result.method] = result.mean
        scores = {
            name: (mase(actual, mean, history, m), rmsse(actual, mean, history, m))
            for name, mean in forecasts.items()
        }
        if BASELINE not in scores or not math.isfinite(scores[BASELINE][0]):
            continue
        picks[result.method] += 1
        for name, pair in scores.items():
            per_method[name].append(pair)
        chosen, baseline = scores[result.method], scores[BASELINE]
        by_class[str(result.demand_class)].append((chosen[0], baseline[0]))
        chosen_scores.append(chosen[0])
        baseline_scores.append(baseline[0])
        chosen_rmsse.append(chosen[1])
        baseline_rmsse.append(baseline[1])
        if baseline[0] > 0:
            ratios.append(chosen[0] / baseline[0])
    print(f"  (c) hold-out accuracy over {len(chosen_scores)} series")
    mean_chosen, mean_base = statistics.fmean(chosen_scores), statistics.fmean(baseline_scores)
    print(
        f"      MASE chosen/baseline per series: median {statistics.median(ratios):.3f}, "
        f"mean {statistics.fmean(ratios):.3f} ({len(ratios)} series with baseline MASE > 0)"
    )
    print(
        f"      mean MASE chosen {mean_chosen:.3f} vs seasonal naive {mean_base:.3f} "
        f"(ratio {mean_chosen / mean_base:.3f}); mean RMSSE chosen "
        f"{statistics.fmean(chosen_rmsse):.3f} vs {statistics.fmean(baseline_rmsse):.3f}"
    )
    print(
        "      mean MASE by class: "
        + "; ".join(
            f"{name} {statistics.fmean(p[0] for p in pairs):.3f} vs "
            f"{statistics.fmean(p[1] for p in pairs):.3f} ({len(pairs)})"
            for name, pairs in sorted(by_class.items())
        )
    )
    print("      per method, fitted on the full training part of every series it competed on")
    print(f"      {'method':<16}{'series':>7}{'mean MASE':>11}{'mean RMSSE':>12}{'chosen':>8}")
    for name, pairs in sorted(per_method.items()):
        print(
            f"      {name:<16}{len(pairs):>7}{statistics.fmean(p[0] for p in pairs):>11.3f}"
            f"{statistics.fmean(p[1] for p in pairs):>12.3f}{picks[name]:>8}"
        )


def scaling(
    train: dict[str, np.ndarray], h: int, freq: str, count: int, jobs: int, repeat: int
) -> None:
    """Wall time with 1 and with `jobs` processes, best of `repeat` runs each.

    The workers were started by the full run before (each imports numpy, statsmodels and
    pmdarima once) and are reused, as in a long-lived Celery worker. The machine may be
    shared, so the best run is the figure least disturbed by other load.
    """
    subset = dict(list(train.items())[:count])
    config = EngineConfig()
    seconds: dict[int, list[float]] = {1: [], jobs: []}
    outcomes = {}
    for _ in range(repeat):
        for n_jobs in (1, jobs):
            outcomes[n_jobs] = forecast_many(subset, h=h, freq=freq, config=config, n_jobs=n_jobs)
            seconds[n_jobs].append(outcomes[n_jobs].seconds)
    one, many = outcomes[1], outcomes[jobs]
    warm_inputs = {
        key: SeriesInput(values, warm=many.results[key].warm_state())
        for key, values in subset.items()
        if key in many.results
    }
    warm = forecast_many(warm_inputs, h=h, freq=freq, config=config, n_jobs=jobs)
    same = sum(np.array_equal(one.results[key].mean, many.results[key].mean) for key in one.results)
    best_one, best_many = min(seconds[1]), min(seconds[jobs])
    print(
        f"  (b) {len(subset)} series, best of {repeat}: 1 process {best_one:.1f} s, {jobs} "
        f"processes {best_many:.1f} s, speed-up {best_one / best_many:.2f}x "
        f"(identical forecasts: {same}/{len(one.results)})"
    )
    per_series = warm.seconds / max(1, len(subset))
    print(
        f"      warm-started rerun ({jobs} processes, stored method/order, no backtest): "
        f"{warm.seconds:.1f} s = {1000 * per_series:.1f} ms/series; "
        f"per 10,000 series ≈ {per_series * 10_000 / 60:.1f} min"
    )


def run_dataset(
    label: str,
    series: dict[str, np.ndarray],
    *,
    h: int,
    freq: str,
    m: int,
    jobs: int,
    scaling_count: int,
    repeat: int,
) -> None:
    train = {key: values[:-h] for key, values in series.items()}
    test = {key: values[-h:] for key, values in series.items()}
    print(f"\n== {label}: {len(series)} series, hold-out {h}, freq {freq}, {jobs} processes")
    # New items compete with the data set's own launch curve (training parts only).
    profile = launch_profile(list(train.values()), length=len(next(iter(train.values()))))
    inputs = {key: SeriesInput(values, profile=profile) for key, values in train.items()}
    config = EngineConfig(forecast_all=True)
    batch = forecast_many(
        inputs, h=h, freq=freq, config=config, n_jobs=jobs, progress=printer(label)
    )
    classes = Counter(str(result.demand_class) for result in batch.results.values())
    print(f"  classes: {dict(sorted(classes.items()))}; failures: {len(batch.failures)}")
    print(f"  full run (with every candidate's final forecast): {batch.seconds:.1f} s wall")
    summarize_timings(batch.results)
    scaling(train, h, freq, scaling_count, jobs, repeat)
    summarize_accuracy(batch.results, train, test, m)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes (CI)")
    parser.add_argument("--m5", type=int, help="M5 series (default all 823; smoke 40; 0 skips)")
    parser.add_argument(
        "--carparts", type=int, help="carparts series (default all 2,674; smoke 200; 0 skips)"
    )
    parser.add_argument(
        "--scaling",
        type=int,
        help="series in the 1 vs 2 process run (default M5 200, carparts 1,000; smoke 24 / 100)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--repeat", type=int, help="runs per process count (default 2; smoke 1)")
    parser.add_argument("--data", type=Path, default=DATA, help="forecast data directory")
    args, _ = parser.parse_known_args()  # scripts/bench.sh passes its own flags through
    if not (args.data / "README.md").exists():
        sys.exit(f"forecast data not found at {args.data} (expected ../shared/data/forecast)")
    m5_count = args.m5 if args.m5 is not None else (40 if args.smoke else None)
    carparts_count = args.carparts if args.carparts is not None else (200 if args.smoke else None)
    repeat = args.repeat or (1 if args.smoke else 2)
    warnings.simplefilter("ignore")
    print(f"forecast benchmark: {os.cpu_count()} CPUs, data {args.data}")
    started = time.perf_counter()
    if m5_count != 0:
        run_dataset(
            "M5 TX_3 FOODS_3 daily (internal benchmarking only)",
            load_m5(args.data, m5_count),
            h=28,
            freq="D",
            m=7,
            jobs=args.jobs,
            scaling_count=args.scaling or (24 if args.smoke else 200),
            repeat=repeat,
        )
    if carparts_count != 0:
        run_dataset(
            "carparts monthly",
            load_carparts(args.data, carparts_count),
            h=6,
            freq="M",
            m=12,
            jobs=args.jobs,
            # Car-part series cost ~15 ms: a small set would time the pool's start-up.
            scaling_count=args.scaling or (100 if args.smoke else 1000),
            repeat=repeat,
        )
    print(f"\nbenchmark finished in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
