"""Per-series pipeline: classify, backtest the class's candidates, choose, final fit.

Periods before the first sale are dropped first (see `series.since_first_sale`). Every
candidate of the class is backtested on rolling origins and scored by RMSSE (see
`EngineConfig.metric`). Smooth and erratic series get 3 windows of h periods, or as many
as span one season (at most 8; their candidates cost up to seconds); intermittent, lumpy
and new ones 12 overlapping windows (theirs cost about a millisecond).

Choice: the best competing single method by mean backtest score (the seasonal naive
baseline wins ties, and competes only for smooth and erratic series with m <= 12, see
`EngineConfig.baseline_competes`) is kept only when it beats the combination — the mean of
the competing methods other than the baseline whose backtest score is within 50 % of the
best one's ("combo", `methods/combo.py`, `EngineConfig.pool_tolerance`) — clearly: its
per-window scores must be lower by more than two standard errors of the paired difference.
Otherwise the combination forecasts. With a handful of windows the backtest ranks similar
methods almost at random; picking the winner of such a draw per SKU added noise that cost
more than the selection gained on every benchmark set
(tests/benchmarks/bench_forecast.py), while the combination is never far from its best
member. Series too short for one backtest window get the launch profile when one is given,
else ADIDA (`EngineConfig.fallback`). Dead series forecast zero.

Warm runs: pass the previous result's `warm_state()`. When the class is unchanged and the
stored method (for a combination: every member) is still a candidate, only that method is
refitted, warm-started (auto_arima: the stored order, no search) and the stored backtest
scores are carried over. This is the nightly path; `full_refit=True` (e.g. weekly, or
after a class change) runs everything.
"""

from __future__ import annotations

import math
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from .backtest import (
    BacktestRun,
    MethodScore,
    backtest_forecasts,
    cutoffs,
    mase,
    rmsse,
    score_forecasts,
)
from .classify import ClassifyConfig, DemandClass, DemandStats, classify_stats, demand_stats
from .methods import DEFAULT_LEVELS, METHODS, Combination, Forecast, ForecastMethod
from .methods.profile import as_profile
from .series import infer_freq, normalize_freq, prepare, season_length, since_first_sale
from .threads import single_threaded_blas

BASELINE = "seasonal_naive"
COMBINATION = "combo"

DEFAULT_CANDIDATES: Mapping[DemandClass, tuple[str, ...]] = MappingProxyType(
    {
        DemandClass.SMOOTH: (BASELINE, "naive", "ets", "auto_arima", "adida"),
        DemandClass.ERRATIC: (BASELINE, "naive", "ets", "auto_arima", "adida"),
        DemandClass.INTERMITTENT: (BASELINE, "tsb", "adida"),
        DemandClass.LUMPY: (BASELINE, "tsb", "adida"),
        DemandClass.NEW: (BASELINE, "tsb", "adida", "profile"),
        DemandClass.DEAD: (BASELINE,),
    }
)


DAILY_CANDIDATES: Mapping[DemandClass, tuple[str, ...]] = MappingProxyType(
    {
        DemandClass.INTERMITTENT: ("ets", "auto_arima"),
        DemandClass.LUMPY: ("ets", "auto_arima"),
    }
)


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    """Knobs of `forecast_series` / `forecast_many`; the defaults suit daily to monthly data.

    levels: prediction interval levels in percent.
    n_origins / backtest_step: rolling origins for smooth and erratic series, whose
        candidates (ETS, auto_arima) cost 0.05–0.5 s per fit; step None = the horizon.
        When the windows would not span a full season, more origins are used, up to
        `max_origins` (weekly data, m = 52, h = 8: 7 origins). Three windows of 8 weeks
        can all fall on the Christmas peak, where the seasonal naive shines, and then pick
        it for the other 44 weeks of the year.
    cheap_origins / cheap_step: origins for intermittent, lumpy and new series, whose
        candidates cost about a millisecond. More, overlapping windows (step None =
        max(1, h // 4)) make the choice less of a coin toss: on the car-parts and M5
        hold-outs 12 origins cut the chosen method's mean MASE by 1–2 % against 3.
    backtest_horizon: periods scored per window (None = h).
    min_train: training periods the oldest origin must keep. None = by class: 8 for
        intermittent, lumpy and new series (Croston-family methods need a few demands,
        not cycles), max(12, 2·m) for smooth and erratic ones with m <= 12 (two cycles
        for a seasonal model), else max(12, m).
    candidates: method names per class; the baseline is always added first.
    daily_candidates: added to `candidates` for daily series (freq "D"): ETS and
        auto_arima for intermittent and lumpy items. A daily item selling on most days
        but not all (M5 foods: 62 % zero days) is intermittent by ADI yet has the
        day-of-week pattern the flat Croston-family forecasts lack; seasonal ETS (m = 7)
        carries it (it was the best single method on the M5 daily hold-out), and
        auto_arima models weekly totals split by the weekday shares (`methods/arima.py`).
        Cost: ≈ 0.1 s per ETS fit, ≈ 0.2 s per ARIMA search and ≈ 10 ms per refit.
    method_options: constructor keyword arguments per method name,
        e.g. {"tsb": {"alpha": 0.2, "beta": 0.05}}.
    metric: "rmsse" (default) or "mase", the backtest score that picks the method.
        RMSSE, because the forecast feeds safety stock and order quantities, which need
        the mean: squared error is minimised by the mean, absolute error by the median,
        and the median of an intermittent series is zero. Picking by MASE chose the
        seasonal naive (mostly zeros) for over half of the car-parts series.
    combine / pool_tolerance: the combination ("combo", `methods/combo.py`) is the
        equal-weight mean of the competing candidates other than the baseline whose mean
        backtest score is within `pool_tolerance` (relative) of the best one's, at most
        `combine` of them, best first: forecast pooling (Kourentzes, Barrow & Petropoulos
        2019) drops the members the backtest shows to be clearly wrong for the series (a
        non-seasonal method on strongly seasonal retail) without trusting it to rank
        the close ones. Its backtest score is the mean forecast's at every origin (no
        extra fits). combine 0 or 1 turns combinations off.
    significance: how many standard errors of the paired per-window score difference a
        single method must beat the combination by to be chosen instead.
    baseline_max_season: the seasonal naive competes only up to this season length. At
        m = 52 it copies one noisy observation per phase of last year: on the jewelry
        set it won most weekly backtests (it nails the Christmas weeks) and then lost
        the spring hold-out to every smoothing method.
    baseline_competes: classes in which the seasonal naive can be chosen. Elsewhere it
        is still backtested (its score is the reference every forecast is judged
        against) but does not compete: on an intermittent series whose backtest windows
        happen to hold no demand, repeating last year's zeros scores a perfect 0 and
        would win, and then misses every later order (on the car-parts hold-out such
        picks had 1.7× the RMSSE of ADIDA's forecast).
    fallback: the method for a series too short for one backtest window when it is a
        candidate of its class (new items without a launch profile): ADIDA, an exponential
        smoothing of the recent level (plain SES when demand comes every period), is
        what such a short history supports; the seasonal naive would repeat a single,
        noisy, last value.
    min_improvement: relative margin over the baseline's score a method needs to win.
    reestimate_classes: classes whose candidates are estimated again at every backtest
        origin; the others keep the oldest origin's parameters (see `backtest.py`).
        Smooth and erratic series have 3–8 origins a season or more apart, and
        parameters two years stale chose worse on monthly retail (Australian retail, 48
        series: chosen RMSSE 0.625 re-estimating, 0.649 not). Intermittent, lumpy and new
        series have 12 origins a few periods apart, where keeping the parameters chose as
        well (M5 daily 0.798 either way) at a quarter of the cost for daily ETS/ARIMA.
    max_history: keep only the last N periods (None = all).
    forecast_all: also fit every candidate on the full history and return its forecast.
    limit_threads: run BLAS single-threaded (see `threads.py`; ETS and auto_arima
        limit themselves in any case).
    """

    levels: tuple[float, ...] = DEFAULT_LEVELS
    n_origins: int = 3
    max_origins: int = 8
    backtest_step: int | None = None
    cheap_origins: int = 12
    cheap_step: int | None = None
    backtest_horizon: int | None = None
    min_train: int | None = None
    candidates: Mapping[DemandClass, tuple[str, ...]] = field(
        default_factory=lambda: DEFAULT_CANDIDATES
    )
    daily_candidates: Mapping[DemandClass, tuple[str, ...]] = field(
        default_factory=lambda: DAILY_CANDIDATES
    )
    method_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    metric: str = "rmsse"
    min_improvement: float = 0.0
    combine: int = 4
    pool_tolerance: float = 0.5
    fallback: str = "adida"
    significance: float = 2.0
    baseline_max_season: int = 12
    baseline_competes: tuple[DemandClass, ...] = (
        DemandClass.SMOOTH,
        DemandClass.ERRATIC,
        DemandClass.DEAD,
    )
    reestimate_classes: tuple[DemandClass, ...] = (DemandClass.SMOOTH, DemandClass.ERRATIC)
    max_history: int | None = None
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)
    forecast_all: bool = False
    limit_threads: bool = True

    def origins_plan(self, demand_class: DemandClass, horizon: int, m: int = 1) -> tuple[int, int]:
        """(number of origins, step between them) for a class and season length."""
        if demand_class in (DemandClass.SMOOTH, DemandClass.ERRATIC):
            step = self.backtest_step or horizon
            season = min(self.max_origins, math.ceil(m / step))
            return max(self.n_origins, season), step
        return self.cheap_origins, self.cheap_step or max(1, horizon // 4)

    def train_floor(self, m: int, demand_class: DemandClass) -> int:
        """Training periods the oldest backtest origin keeps (see `min_train`)."""
        if self.min_train is not None:
            return self.min_train
        if demand_class not in (DemandClass.SMOOTH, DemandClass.ERRATIC):
            return 8
        return max(12, 2 * m) if m <= 12 else max(12, m)


@dataclass(eq=False)
class ForecastResult:
    """Everything the platform stores about one series' forecast.

    `params` is the chosen method's JSON-serialisable state (auto_arima: the order) and
    `warm_state()` bundles what the next run needs. `model` is the fitted method object,
    kept for `model.update(new_observations)`; it is not part of `to_dict()`.
    """

    key: Hashable | None
    demand_class: DemandClass
    stats: DemandStats
    method: str
    params: dict[str, Any]
    forecast: Forecast
    scores: dict[str, MethodScore]
    timings: dict[str, float]
    h: int
    m: int
    freq: str | None
    warm_started: bool = False
    candidates: dict[str, Forecast] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    model: ForecastMethod | None = field(default=None, repr=False)

    @property
    def mean(self) -> np.ndarray:
        return self.forecast.mean

    @property
    def intervals(self) -> dict[float, tuple[np.ndarray, np.ndarray]]:
        """{level: (lower, upper)} for every requested level."""
        return {
            level: (self.forecast.lower[level], self.forecast.upper[level])
            for level in self.forecast.levels
        }

    def warm_state(self) -> dict[str, Any]:
        """What the next run needs to warm-start (JSON-serialisable)."""
        return {
            "method": self.method,
            "params": self.params,
            "demand_class": str(self.demand_class),
            "scores": {name: score.to_dict() for name, score in self.scores.items()},
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (no fitted model)."""
        return {
            "key": self.key,
            "demand_class": str(self.demand_class),
            "stats": self.stats.to_dict(),
            "method": self.method,
            "params": self.params,
            "forecast": self.forecast.to_dict(),
            "scores": {name: score.to_dict() for name, score in self.scores.items()},
            "timings": dict(self.timings),
            "h": self.h,
            "m": self.m,
            "freq": self.freq,
            "warm_started": self.warm_started,
            "errors": dict(self.errors),
        }


def make_method(
    name: str,
    config: EngineConfig,
    profile: np.ndarray | None = None,
    members: Sequence[str] = (),
) -> ForecastMethod:
    """An unfitted method by registry name, with the configured options.

    members: the member method names when `name` is the combination ("combo").
    """
    if name not in METHODS:
        raise ValueError(f"unknown forecasting method {name!r}; known: {sorted(METHODS)}")
    if name == COMBINATION:
        if not members:
            raise ValueError("the combination needs its member methods")
        return Combination(members=tuple(make_method(n, config, profile) for n in members))
    options = dict(config.method_options.get(name, {}))
    if name == "profile":
        if profile is None:
            raise ValueError("the profile method needs a reference profile")
        options["profile"] = profile
    return METHODS[name](**options)


def choose(
    scores: Mapping[str, MethodScore],
    order: Sequence[str],
    min_improvement: float = 0.0,
    metric: str = "rmsse",
) -> str:
    """The winning method: lowest mean score, the baseline on ties or without a margin."""
    if metric not in ("mase", "rmsse"):
        raise ValueError(f"metric must be 'mase' or 'rmsse', got {metric!r}")

    def value(name: str) -> float:
        return getattr(scores[name], metric)

    ranked = [name for name in order if name in scores and scores[name].ok]
    if not ranked:
        return BASELINE
    best = min(ranked, key=value)  # min keeps the first of equal scores: order breaks ties
    if best == BASELINE or BASELINE not in ranked:
        return best
    return best if value(best) < value(BASELINE) * (1.0 - min_improvement) else BASELINE


def forecast_series(
    y: Any,
    *,
    h: int,
    m: int | None = None,
    freq: str | None = None,
    oos: Any = None,
    profile: Sequence[float] | np.ndarray | None = None,
    warm: Mapping[str, Any] | None = None,
    full_refit: bool = False,
    config: EngineConfig | None = None,
    key: Hashable | None = None,
) -> ForecastResult:
    """Classify `y`, pick its best method by rolling-origin MASE and forecast h periods.

    y: units per period, oldest first (array, list or pandas Series; NaN = missing).
    m / freq: season length, or a frequency ("D", "W", "M", pandas aliases) to derive it;
        a Series with a PeriodIndex/DatetimeIndex supplies freq itself.
    oos: boolean mask, True where the item was out of stock (treated as missing).
    profile: launch profile (units per period by age since first sale) for new items.
    warm: a previous result's `warm_state()`; see the module docstring.
    """
    config = config or EngineConfig()
    started = time.perf_counter()
    freq = normalize_freq(freq) or infer_freq(y)
    m = season_length(freq, m)
    values = prepare(y, oos)
    if config.max_history and len(values) > config.max_history:
        values = values[-config.max_history :]
    if np.isnan(values).all():
        raise ValueError("series has no observed values")
    values = since_first_sale(values)
    reference = as_profile(profile) if profile is not None else None

    stats = demand_stats(values)
    demand_class = classify_stats(stats, m=m, config=config.classify)
    extra = config.daily_candidates.get(demand_class, ()) if freq == "D" else ()
    names = [BASELINE] + [
        name
        for name in dict.fromkeys([*config.candidates.get(demand_class, ()), *extra])
        if name != BASELINE and (name != "profile" or reference is not None)
    ]
    timings = {"classify": time.perf_counter() - started}
    run = _Run(values, h, m, freq, config, reference, stats, key)
    with single_threaded_blas(config.limit_threads):
        result = None
        if warm and not full_refit:
            result = run.warm(warm, names, demand_class)
        if result is None:
            result = run.full(names, demand_class)
    result.timings = {**timings, **result.timings, "total": time.perf_counter() - started}
    return result


class _Run:
    """One series' fitting work, shared by the full and the warm path."""

    def __init__(
        self,
        values: np.ndarray,
        h: int,
        m: int,
        freq: str | None,
        config: EngineConfig,
        profile: np.ndarray | None,
        stats: DemandStats,
        key: Hashable | None,
    ) -> None:
        if h < 1:
            raise ValueError(f"horizon must be >= 1, got {h}")
        self.values, self.h, self.m, self.freq = values, h, m, freq
        self.config, self.profile, self.stats, self.key = config, profile, stats, key

    def fit(
        self, name: str, warm: Mapping[str, Any] | None, members: Sequence[str] = ()
    ) -> ForecastMethod:
        method = make_method(name, self.config, self.profile, members)
        return method.fit(self.values, m=self.m, freq=self.freq, warm=warm)

    def result(
        self,
        demand_class: DemandClass,
        model: ForecastMethod,
        forecast: Forecast | None = None,
        **extra: Any,
    ) -> ForecastResult:
        return ForecastResult(
            key=self.key,
            demand_class=demand_class,
            stats=self.stats,
            method=model.name,
            params=model.params(),
            forecast=forecast or model.forecast(self.h, self.config.levels),
            h=self.h,
            m=self.m,
            freq=self.freq,
            model=model,
            **extra,
        )

    def warm(
        self, state: Mapping[str, Any], names: list[str], demand_class: DemandClass
    ) -> ForecastResult | None:
        name = state.get("method")
        members: list[str] = []
        if name == COMBINATION:
            members = list((state.get("params") or {}).get("members") or {})
            if not members or any(member not in names for member in members):
                return None
        elif name not in names:
            return None
        if state.get("demand_class") != str(demand_class):
            return None
        started = time.perf_counter()
        try:
            model = self.fit(name, state.get("params"), members)
            forecast = model.forecast(self.h, self.config.levels)
        except Exception:  # the full path below retries from scratch
            return None
        scores = {
            method: MethodScore.from_dict(score)
            for method, score in (state.get("scores") or {}).items()
        }
        timings = {"backtest": 0.0, "fit": time.perf_counter() - started}
        return self.result(
            demand_class, model, forecast, scores=scores, timings=timings, warm_started=True
        )

    def combination(
        self, runs: Mapping[str, BacktestRun], origins: list[int], horizon: int
    ) -> tuple[list[str], list[np.ndarray], MethodScore] | None:
        """The pooled members (see `EngineConfig.combine`), their mean forecast at every
        origin and its backtest score."""
        metric = self.config.metric
        ranked = sorted(
            (
                name
                for name, run in runs.items()
                if name != BASELINE and run.score.ok and run.forecasts
            ),
            key=lambda name: getattr(runs[name].score, metric),
        )
        if not ranked:
            return None
        limit = getattr(runs[ranked[0]].score, metric) * (1.0 + self.config.pool_tolerance)
        members = [name for name in ranked if getattr(runs[name].score, metric) <= limit]
        members = members[: self.config.combine]
        if self.config.combine < 2 or len(members) < 2:
            return None
        paths = zip(*(runs[name].forecasts for name in members), strict=True)
        forecasts = [np.mean(path, axis=0) for path in paths]
        seconds = sum(runs[name].score.seconds for name in members)
        score = score_forecasts(
            COMBINATION,
            self.values,
            forecasts,
            m=self.m,
            h=horizon,
            origins=origins,
            seconds=seconds,
        )
        return members, forecasts, score

    def clearly_better(
        self, single: list[np.ndarray], combined: list[np.ndarray], origins: list[int], h: int
    ) -> bool:
        """Whether a single method's per-origin scores beat the combination's by more than
        `config.significance` standard errors of the mean difference (a paired t-test
        over the backtest windows)."""
        scorer = rmsse if self.config.metric == "rmsse" else mase
        diffs = []
        for cutoff, one, mixed in zip(origins, single, combined, strict=True):
            actual, train = self.values[cutoff : cutoff + h], self.values[:cutoff]
            diff = scorer(actual, mixed, train, self.m) - scorer(actual, one, train, self.m)
            if math.isfinite(diff):
                diffs.append(diff)
        if len(diffs) < 2:
            return False
        mean, spread = float(np.mean(diffs)), float(np.std(diffs, ddof=1))
        if mean <= 0:
            return False
        return spread == 0 or mean > self.config.significance * spread / math.sqrt(len(diffs))

    def competing(self, names: list[str], demand_class: DemandClass) -> list[str]:
        """The candidates that can be chosen (see `EngineConfig.baseline_competes`)."""
        config = self.config
        baseline_ok = demand_class in config.baseline_competes and (
            self.m <= config.baseline_max_season or demand_class == DemandClass.DEAD
        )
        return [name for name in names if name != BASELINE or baseline_ok]

    def full(self, names: list[str], demand_class: DemandClass) -> ForecastResult:
        config = self.config
        horizon = config.backtest_horizon or self.h
        n_origins, step = config.origins_plan(demand_class, horizon, self.m)
        floor = config.train_floor(self.m, demand_class)
        origins = cutoffs(len(self.values), horizon, n_origins, floor, step)
        runs: dict[str, BacktestRun] = {}
        members: list[str] = []
        started = time.perf_counter()
        if len(names) > 1 and origins:
            for name in names:
                template = make_method(name, config, self.profile)
                runs[name] = backtest_forecasts(
                    template,
                    self.values,
                    m=self.m,
                    freq=self.freq,
                    h=horizon,
                    origins=origins,
                    reestimate=demand_class in config.reestimate_classes,
                )
            scores = {name: run.score for name, run in runs.items()}
            order = self.competing(names, demand_class)
            chosen = choose(scores, order, config.min_improvement, config.metric)
            combined = self.combination({n: runs[n] for n in order}, origins, horizon)
            if combined is not None:
                members, paths, scores[COMBINATION] = combined
                single = runs[chosen].forecasts if chosen in runs else []
                if not single or not self.clearly_better(single, paths, origins, horizon):
                    chosen = COMBINATION
        else:
            scores = {}
            chosen = "profile" if "profile" in names else config.fallback
            if chosen not in names:
                chosen = BASELINE
        backtest_seconds = time.perf_counter() - started
        # The final fit on the whole history keeps what the backtest's search found (the
        # ARIMA order) but estimates afresh (see `ForecastMethod.structure`).
        warm_params = {
            name: make_method(name, config, self.profile).structure(run.warm)
            for name, run in runs.items()
        }
        warm_params[COMBINATION] = {"members": {name: warm_params[name] for name in members}}

        started = time.perf_counter()
        errors: dict[str, str] = {}
        # A final fit can fail where the backtest's fits did not (an ARIMA order refitted
        # on the whole history can diverge): then the next best method by backtest score
        # forecasts, and the baseline last (it cannot fail on a series with observations).
        ranked = sorted(
            (n for n in self.competing(names, demand_class) if n in scores and scores[n].ok),
            key=lambda name: getattr(scores[name], config.metric),
        )
        for name in dict.fromkeys([chosen, *ranked, BASELINE]):
            try:
                model = self.fit(name, warm_params.get(name), members)
                forecast = model.forecast(self.h, config.levels)
                break
            except Exception as exc:  # recorded; the next candidate forecasts
                errors[name] = f"{type(exc).__name__}: {exc}"
        else:
            raise ValueError(f"no method could forecast this series: {errors}")
        fit_seconds = time.perf_counter() - started

        others: dict[str, Forecast] = {}
        if config.forecast_all:
            for name in [*names, COMBINATION] if members else names:
                if name == model.name:
                    continue
                try:
                    other = self.fit(name, warm_params.get(name), members)
                    others[name] = other.forecast(self.h, config.levels)
                except Exception as exc:  # reported, the chosen forecast stands
                    errors[name] = f"{type(exc).__name__}: {exc}"
        timings = {"backtest": backtest_seconds, "fit": fit_seconds}
        return self.result(
            demand_class,
            model,
            forecast,
            scores=scores,
            timings=timings,
            candidates=others,
            errors=errors,
        )
