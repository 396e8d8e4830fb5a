"""Rolling-origin backtest scored by MASE (and RMSSE).

Origins are the last `n_origins` non-overlapping windows of length h: cut-offs
n - h, n - 2h, ... (oldest first), each keeping at least `min_train` periods of training
data. At each cut-off the method is fitted on the data before it and forecasts h
periods; errors are taken over the periods of the window that were observed (a
stock-out day has no true demand to compare with).

MASE = MAE / in-sample MAE of the seasonal naive on the training data (Hyndman & Koehler
2006); RMSSE = sqrt(MSE / in-sample MSE of the same). The scale is recomputed at every
origin from that origin's training data. Division by zero is guarded: when the seasonal
differences are all zero (a flat or exactly repeating history) the lag-1 differences are
used, then the mean level, and a history of zeros scales by 1 (so its score is the plain
MAE). A method's score is the mean over origins.

Parameters inside the backtest: the first (oldest) origin fits from scratch. Later
origins either re-estimate, seeded with its structure (`reestimate=True`,
`ForecastMethod.structure`; auto_arima keeps the order, so there is one order search per
series, on data that ends before every window; ETS starts afresh),
or keep its estimated parameters (`ForecastMethod.refit_fixed`: ETS and ARIMA run their
filter over the longer history, with no search and no optimisation), as a production
model does between weekly refits — 4–10× cheaper for daily ETS and auto_arima. The engine
picks per class (`EngineConfig.reestimate_classes`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .methods.base import ForecastMethod

_EPS = 1e-12


@dataclass(frozen=True)
class MethodScore:
    """Backtest outcome of one method on one series."""

    method: str
    mase: float  # inf when the method failed, nan when no window had observed periods
    rmsse: float
    origins: int  # windows that were scored
    seconds: float  # fit + forecast time over all origins
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and math.isfinite(self.mase)

    def to_dict(self) -> dict[str, Any]:
        def clean(value: float) -> float | None:
            return value if math.isfinite(value) else None

        return {
            "method": self.method,
            "mase": clean(self.mase),
            "rmsse": clean(self.rmsse),
            "origins": self.origins,
            "seconds": self.seconds,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MethodScore:
        return cls(
            method=data["method"],
            mase=math.inf if data.get("mase") is None else float(data["mase"]),
            rmsse=math.inf if data.get("rmsse") is None else float(data["rmsse"]),
            origins=int(data.get("origins", 0)),
            seconds=float(data.get("seconds", 0.0)),
            error=data.get("error"),
        )


def naive_scale(train: np.ndarray, m: int, power: int = 1) -> float:
    """Mean |seasonal difference|^power of `train` over observed pairs, with the guards
    described in the module docstring. Always > 0."""
    for lag in (m, 1) if m > 1 else (1,):
        if len(train) > lag:
            diffs = train[lag:] - train[:-lag]
            diffs = np.abs(diffs[~np.isnan(diffs)])
            if len(diffs):
                scale = float(np.mean(diffs**power))
                if scale > _EPS:
                    return scale
    seen = np.abs(train[~np.isnan(train)])
    scale = float(np.mean(seen**power)) if len(seen) else 0.0
    return scale if scale > _EPS else 1.0


def mase(actual: np.ndarray, forecast: np.ndarray, train: np.ndarray, m: int) -> float:
    """MASE of `forecast` against the observed values of `actual` (NaN = not observed)."""
    seen = ~np.isnan(actual)
    if not seen.any():
        return math.nan
    mae = float(np.mean(np.abs(actual[seen] - forecast[seen])))
    return mae / naive_scale(train, m, 1)


def rmsse(actual: np.ndarray, forecast: np.ndarray, train: np.ndarray, m: int) -> float:
    """RMSSE (the M5 accuracy measure) with the same conventions as `mase`."""
    seen = ~np.isnan(actual)
    if not seen.any():
        return math.nan
    mse = float(np.mean((actual[seen] - forecast[seen]) ** 2))
    return math.sqrt(mse / naive_scale(train, m, 2))


def cutoffs(n: int, h: int, n_origins: int, min_train: int, step: int | None = None) -> list[int]:
    """Training lengths of the rolling origins, oldest first (may be empty).

    The newest origin leaves exactly h periods to score; earlier ones step back by
    `step` periods (default h: windows do not overlap).
    """
    step = step or h
    points = [n - h - step * k for k in range(n_origins - 1, -1, -1)]
    return [point for point in points if point >= min_train]


def score_forecasts(
    name: str,
    y: np.ndarray,
    forecasts: list[np.ndarray],
    *,
    m: int,
    h: int,
    origins: list[int],
    seconds: float = 0.0,
) -> MethodScore:
    """Mean MASE / RMSSE of per-origin point forecasts (one array of h per origin).

    Used directly for a combination, whose per-origin forecasts are the mean of its
    members' and need no refitting.
    """
    mases, rmsses = [], []
    for cutoff, predicted in zip(origins, forecasts, strict=True):
        actual, train = y[cutoff : cutoff + h], y[:cutoff]
        score = mase(actual, predicted, train, m)
        if math.isfinite(score):
            mases.append(score)
            rmsses.append(rmsse(actual, predicted, train, m))
    if not mases:
        return MethodScore(name, math.nan, math.nan, 0, seconds)
    return MethodScore(name, float(np.mean(mases)), float(np.mean(rmsses)), len(mases), seconds)


@dataclass(frozen=True)
class BacktestRun:
    """One method's backtest: the score, the first origin's `params()` (the warm start
    for later fits; empty on failure) and the point forecast at every origin (empty on
    failure)."""

    score: MethodScore
    warm: dict[str, Any]
    forecasts: list[np.ndarray]


def backtest_forecasts(
    method: ForecastMethod,
    y: np.ndarray,
    *,
    m: int,
    freq: str | None,
    h: int,
    origins: list[int],
    reestimate: bool = False,
) -> BacktestRun:
    """Fit `method` (an unfitted template) at every origin and score its forecasts.

    reestimate: estimate the parameters again at every origin (see the module docstring).
    Exceptions become a failed score: one method breaking on an odd series must not take
    the series' forecast down with it.
    """
    warm: dict[str, Any] = {}
    forecasts: list[np.ndarray] = []
    first: ForecastMethod | None = None
    started = time.perf_counter()
    try:
        for cutoff in origins:
            if first is None:
                model = first = method.clone().fit(y[:cutoff], m=m, freq=freq)
                warm = first.params()
            elif reestimate:
                seed = method.structure(warm)
                model = method.clone().fit(y[:cutoff], m=m, freq=freq, warm=seed)
            else:
                model = first.refit_fixed(y[:cutoff])
            forecasts.append(model.forecast(h, levels=()).mean)
    except Exception as exc:  # recorded on the score, see the docstring
        seconds = time.perf_counter() - started
        error = f"{type(exc).__name__}: {exc}"
        return BacktestRun(MethodScore(method.name, math.inf, math.inf, 0, seconds, error), {}, [])
    seconds = time.perf_counter() - started
    score = score_forecasts(method.name, y, forecasts, m=m, h=h, origins=origins, seconds=seconds)
    return BacktestRun(score, warm, forecasts)


def backtest_method(
    method: ForecastMethod,
    y: np.ndarray,
    *,
    m: int,
    freq: str | None,
    h: int,
    origins: list[int],
    reestimate: bool = False,
) -> tuple[MethodScore, dict[str, Any]]:
    """Score `method` (an unfitted template) over `origins`.

    Returns the score and the `params()` of the first origin's fit (empty on failure),
    which the final fit uses as warm start. Exceptions become a failed score.
    """
    run = backtest_forecasts(method, y, m=m, freq=freq, h=h, origins=origins, reestimate=reestimate)
    return run.score, run.warm
