"""Hold-out accuracy report: the engine's per-series choice against single methods.

    from forecasting.engine.report import backtest_report

    report = backtest_report({sku: units, ...}, h=28, freq="D", n_jobs=2)
    print(report.as_table())
    report.row("chosen").rmsse, report.row("seasonal_naive").rmsse, report.best_single()
    report.paired_difference("chosen", "adida")  # (mean difference, 95 % interval)

For every series the last `h` periods are held out. Each method is fitted on the rest and
forecasts those h periods:

* "chosen": the engine's normal pipeline (`forecast_series`: classify, rolling-origin
  backtest, pick per series, final fit); a launch profile in `SeriesInput.profile` is
  used as the pipeline would use it;
* "seasonal_naive": the baseline (last observed cycle);
* "naive": the last observed value carried forward (seasonal naive with m = 1);
* "croston_tsb": TSB on every series, whatever its class (the Croston family's
  representative: it decays towards zero when demand stops);
* "adida": ADIDA (temporal aggregation + SES) on every series;
* "ets": the engine's ETS on every series;
* "auto_arima": plain `pmdarima.auto_arima` (its default stepwise search, seasonal with
  m = the season length when 1 < m <= 12, non-seasonal otherwise) on every series. This
  is deliberately *not* the engine's speed-tuned AutoArima: it is the reference a
  forecaster would reach for, at its real price (1–10 s per series, ≈ 9.5 s on daily
  data with m = 7).

Scores follow the M5 conventions: the scale is the in-sample mean absolute (MASE) or
squared (RMSSE) naive difference of the training part *from the first sale on*
(`since_first_sale`), with the seasonal lag m as in the engine's backtest (`scale_lag=1`
gives the M5 competition's lag-1 scale; the engine's `mase`, `rmsse` and `naive_scale`,
with their guards for flat histories), and only observed hold-out periods
(not NaN, not out of stock) are scored. A series with no sale in its training part or no
observed hold-out period is skipped (`skipped`). Each row is the mean over the same
series: when a method raises on a series, that series gets the seasonal naive forecast
for the method and the failure is counted, so the rows stay comparable.

Times: `seconds` is the summed fit + forecast time of the method over all series (in the
worker processes); `wall_seconds` is the whole report's wall time and `series_per_second`
the throughput of the complete comparison. Series run in `n_jobs` processes (joblib /
loky, in chunks, BLAS single-threaded as in `forecast_many`); results do not depend on
the number of processes.
"""

from __future__ import annotations

import math
import statistics
import time
import warnings
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pmdarima as pm
from joblib import Parallel, delayed, effective_n_jobs, parallel_config

from .backtest import mase, rmsse
from .batch import SeriesInput
from .core import EngineConfig, forecast_series
from .methods import ADIDA, ETS, TSB, Naive, SeasonalNaive
from .series import normalize_freq, prepare, season_length, seasonal_fill, since_first_sale
from .threads import single_threaded_blas

CHOSEN = "chosen"
REPORT_METHODS: tuple[str, ...] = (
    CHOSEN,
    "seasonal_naive",
    "naive",
    "croston_tsb",
    "adida",
    "ets",
    "auto_arima",
)
# The methods that are not the engine's choice: "best single method" is the best of these.
SINGLE_METHODS = tuple(name for name in REPORT_METHODS if name != CHOSEN)

Scores = tuple[float, float]  # (MASE, RMSSE)


@dataclass(frozen=True)
class MethodRow:
    """One method's hold-out accuracy over the report's series."""

    method: str
    mase: float  # mean over series
    rmsse: float  # mean over series
    series: int
    seconds: float  # summed fit + forecast time over the series
    failures: int = 0  # series where the method raised (scored with the seasonal naive)

    @property
    def ms_per_series(self) -> float:
        return 1000.0 * self.seconds / self.series if self.series else math.nan


@dataclass
class BacktestReport:
    """Outcome of `backtest_report`; `rows` are in the order of the methods requested."""

    h: int
    freq: str | None
    m: int
    rows: tuple[MethodRow, ...]
    series: int  # series scored
    skipped: int  # series without a sale in training or an observed hold-out period
    wall_seconds: float
    n_jobs: int
    picks: Counter[str] = field(default_factory=Counter)  # engine method chosen → series
    classes: Counter[str] = field(default_factory=Counter)  # demand class → series
    # Per series: {method: (MASE, RMSSE)}, and the class the engine gave it.
    scores: dict[Hashable, dict[str, Scores]] = field(default_factory=dict)
    demand_classes: dict[Hashable, str] = field(default_factory=dict)

    @property
    def series_per_second(self) -> float:
        return self.series / self.wall_seconds if self.wall_seconds > 0 else math.nan

    def row(self, method: str) -> MethodRow:
        for row in self.rows:
            if row.method == method:
                return row
        raise KeyError(method)

    def best_single(self, metric: str = "rmsse") -> MethodRow | None:
        """The single method (not "chosen") with the lowest mean `metric`."""
        singles = [row for row in self.rows if row.method != CHOSEN and row.series]
        return min(singles, key=lambda row: getattr(row, metric)) if singles else None

    def paired_difference(
        self,
        method: str,
        other: str,
        metric: str = "rmsse",
        level: float = 95.0,
        resamples: int = 2000,
        seed: int = 0,
    ) -> tuple[float, float, float]:
        """Mean per-series difference `method` − `other` and its paired bootstrap
        percentile interval at `level` percent: (difference, lower, upper).

        Both methods are scored on the same series, so the series-to-series spread
        (an easy part against a hard one) cancels and the interval shows what the
        difference of the two means is worth: one odd series can move a 30-series mean
        by more than the gap between two good methods.
        """
        index = 0 if metric == "mase" else 1
        diffs = np.array(
            [pair[method][index] - pair[other][index] for pair in self.scores.values()],
            dtype=float,
        )
        diffs = diffs[np.isfinite(diffs)]
        if not len(diffs):
            return math.nan, math.nan, math.nan
        rng = np.random.default_rng(seed)
        means = diffs[rng.integers(0, len(diffs), size=(resamples, len(diffs)))].mean(axis=1)
        tail = (100.0 - level) / 2.0
        lower, upper = np.percentile(means, [tail, 100.0 - tail])
        return float(diffs.mean()), float(lower), float(upper)

    def by_class(self, metric: str = "rmsse") -> dict[str, dict[str, float]]:
        """Mean `metric` per demand class and method (what the per-SKU choice wins where)."""
        index = 0 if metric == "mase" else 1
        grouped: dict[str, dict[str, list[float]]] = {}
        for key, per_method in self.scores.items():
            bucket = grouped.setdefault(self.demand_classes.get(key, "?"), {})
            for name, pair in per_method.items():
                bucket.setdefault(name, []).append(pair[index])
        return {
            cls: {name: statistics.fmean(values) for name, values in methods.items()}
            for cls, methods in sorted(grouped.items())
        }

    def as_table(self) -> str:
        """A plain-text table: one line per method, then throughput, picks and classes."""
        head = (
            f"hold-out {self.h} (freq {self.freq or '?'}, m={self.m}): {self.series} series"
            f" ({self.skipped} skipped), {self.wall_seconds:.1f} s wall in {self.n_jobs}"
            f" process{'es' if self.n_jobs != 1 else ''}, {self.series_per_second:.2f} series/s"
        )
        lines = [
            head,
            f"  {'method':<16}{'series':>7}{'mean MASE':>11}{'mean RMSSE':>12}"
            f"{'ms/series':>11}{'failed':>8}",
        ]
        best = self.best_single()
        for row in self.rows:
            mark = "  <- best single" if best is not None and row.method == best.method else ""
            lines.append(
                f"  {row.method:<16}{row.series:>7}{row.mase:>11.3f}{row.rmsse:>12.3f}"
                f"{row.ms_per_series:>11.1f}{row.failures:>8}{mark}"
            )
        if self.picks:
            picks = ", ".join(f"{name} {count}" for name, count in self.picks.most_common())
            lines.append(f"  chosen per series: {picks}")
        if self.classes:
            classes = ", ".join(f"{name} {count}" for name, count in sorted(self.classes.items()))
            lines.append(f"  demand classes: {classes}")
        return "\n".join(lines)


# --- the single methods ------------------------------------------------------------------


def plain_auto_arima(train: np.ndarray, h: int, m: int) -> np.ndarray:
    """pmdarima's auto_arima with its defaults (stepwise), seasonal when 1 < m <= 12."""
    seasonal = 1 < m <= 12 and len(train) >= 2 * m
    filled = seasonal_fill(train, m if seasonal else 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = pm.auto_arima(
            filled,
            m=m if seasonal else 1,
            seasonal=seasonal,
            stepwise=True,
            error_action="ignore",
            suppress_warnings=True,
        )
        return np.asarray(model.predict(n_periods=h), dtype=float)


def _engine_method(cls: Callable[..., Any], m: int) -> Callable[[np.ndarray, int, str | None], Any]:
    def run(train: np.ndarray, h: int, freq: str | None) -> np.ndarray:
        return cls().fit(train, m=m, freq=freq).forecast(h, levels=()).mean

    return run


def _single_methods(m: int) -> dict[str, Callable[[np.ndarray, int, str | None], np.ndarray]]:
    return {
        "seasonal_naive": _engine_method(SeasonalNaive, m),
        "naive": _engine_method(Naive, m),
        "croston_tsb": _engine_method(TSB, m),
        "adida": _engine_method(ADIDA, m),
        "ets": _engine_method(ETS, m),
        "auto_arima": lambda train, h, freq: plain_auto_arima(train, h, m),
    }


# --- per series ------------------------------------------------------------------------


@dataclass
class _Outcome:
    key: Hashable
    scores: dict[str, Scores] | None  # None: skipped
    seconds: dict[str, float] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    picked: str | None = None
    demand_class: str | None = None


def _one(
    key: Hashable,
    item: SeriesInput,
    h: int,
    freq: str | None,
    m: int,
    methods: Sequence[str],
    config: EngineConfig,
    scale_lag: int,
) -> _Outcome:
    values = prepare(item.y, item.oos)
    if len(values) <= h:
        return _Outcome(key, None)
    train_full, actual = values[:-h], values[-h:]
    train = since_first_sale(train_full)
    if not (train > 0).any() or np.isnan(actual).all():
        return _Outcome(key, None)
    outcome = _Outcome(key, {})
    singles = _single_methods(m)
    baseline: np.ndarray | None = None
    forecasts: dict[str, np.ndarray] = {}
    for name in methods:
        started = time.perf_counter()
        try:
            if name == CHOSEN:
                result = forecast_series(
                    train_full, h=h, m=m, freq=freq, profile=item.profile, config=config
                )
                mean = result.mean
                outcome.picked, outcome.demand_class = result.method, str(result.demand_class)
            else:
                mean = np.maximum(singles[name](train, h, freq), 0.0)
            if mean.shape != (h,) or not np.isfinite(mean).all():
                raise ValueError(f"{name} returned no finite forecast")
        except Exception:  # scored with the baseline, see the module docstring
            outcome.failed.add(name)
            if baseline is None:
                baseline = singles["seasonal_naive"](train, h, freq)
            mean = baseline
        outcome.seconds[name] = time.perf_counter() - started
        forecasts[name] = mean
    outcome.scores = {
        name: (mase(actual, mean, train, scale_lag), rmsse(actual, mean, train, scale_lag))
        for name, mean in forecasts.items()
    }
    return outcome


def _run_chunk(
    chunk: list[tuple[Hashable, SeriesInput]],
    h: int,
    freq: str | None,
    m: int,
    methods: Sequence[str],
    config: EngineConfig,
    scale_lag: int,
) -> list[_Outcome]:
    with single_threaded_blas(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [_one(key, item, h, freq, m, methods, config, scale_lag) for key, item in chunk]


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def backtest_report(
    series: Mapping[Hashable, Any],
    *,
    h: int,
    freq: str,
    n_jobs: int = 1,
    m: int | None = None,
    methods: Sequence[str] = REPORT_METHODS,
    config: EngineConfig | None = None,
    scale_lag: int | None = None,
    chunk_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestReport:
    """Hold out the last `h` periods of every series and compare the methods on them.

    series: key → array / pandas Series / `SeriesInput` (its `oos` marks periods that are
        missing, its `profile` is the launch curve for new items).
    freq: "D", "W", "M", ... (pandas aliases too); sets the season length unless `m`.
    methods: a subset of `REPORT_METHODS` (e.g. without "auto_arima", which costs seconds
        per series).
    scale_lag: lag of the in-sample naive differences that scale the errors (None = m;
        1 = the M5 competition's non-seasonal scale).
    progress: called as progress(done, total) in this process after every chunk.
    See the module docstring for the methods, the scores and the times.
    """
    if h < 1:
        raise ValueError(f"horizon must be >= 1, got {h}")
    unknown = [name for name in methods if name not in REPORT_METHODS]
    if unknown:
        raise ValueError(f"unknown report methods {unknown}; known: {list(REPORT_METHODS)}")
    freq = normalize_freq(freq)
    m = season_length(freq, m)
    config = config or EngineConfig()
    started = time.perf_counter()
    items = [
        (key, value if isinstance(value, SeriesInput) else SeriesInput(value))
        for key, value in series.items()
    ]
    with parallel_config(backend="loky"):
        n_jobs = effective_n_jobs(max(1, int(n_jobs)))
    if chunk_size is None:
        chunk_size = max(1, min(10, math.ceil(len(items) / (n_jobs * 8)))) if items else 1
    chunks = list(_chunks(items, chunk_size))
    args = (h, freq, m, tuple(methods), config, scale_lag or m)
    if n_jobs == 1 or len(chunks) <= 1:
        outputs: Iterable[list[_Outcome]] = (_run_chunk(chunk, *args) for chunk in chunks)
    else:
        outputs = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator_unordered")(
            delayed(_run_chunk)(chunk, *args) for chunk in chunks
        )
    collected: dict[Hashable, _Outcome] = {}
    for output in outputs:
        collected.update((outcome.key, outcome) for outcome in output)
        if progress:
            progress(len(collected), len(items))

    report = BacktestReport(
        h=h, freq=freq, m=m, rows=(), series=0, skipped=0, wall_seconds=0.0, n_jobs=n_jobs
    )
    seconds: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    for key, _ in items:  # input order, whatever the completion order
        outcome = collected[key]
        if outcome.scores is None:
            report.skipped += 1
            continue
        report.scores[key] = outcome.scores
        seconds.update(outcome.seconds)
        failures.update(outcome.failed)
        if outcome.picked is not None:
            report.picks[outcome.picked] += 1
            report.classes[outcome.demand_class or "?"] += 1
            report.demand_classes[key] = outcome.demand_class or "?"
    report.series = len(report.scores)
    rows = []
    for name in methods:
        pairs = [per_method[name] for per_method in report.scores.values()]
        rows.append(
            MethodRow(
                method=name,
                mase=statistics.fmean(p[0] for p in pairs) if pairs else math.nan,
                rmsse=statistics.fmean(p[1] for p in pairs) if pairs else math.nan,
                series=len(pairs),
                seconds=seconds[name],
                failures=failures[name],
            )
        )
    report.rows = tuple(rows)
    report.wall_seconds = time.perf_counter() - started
    return report
