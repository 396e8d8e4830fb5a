"""pmdarima auto_arima with a search tuned for speed, warm starts and cheap updates.

Measured on the 2-core reference machine (DESIGN.md): a seasonal search costs 1–10 s per
series, a daily m=7 seasonal search ≈ 9.5 s, refitting a known order 0.02–0.27 s and
`update()` 0.01–0.07 s. So the search is bounded and run as rarely as possible:

* Bounded stepwise search: p, q <= 2, P, Q <= 1, d, D <= 1, starting from (1,d,1)(1,D,0).
* Seasonal terms only when 1 < m <= 12 and at least `seasonal_min_cycles` cycles are
  observed (m = 52 or 24 seasonal ARIMA is too slow and too data-hungry).
* The search sees at most the last `search_window` periods; the chosen order is then
  fitted on the whole history.
* Daily data (freq "D", m = 7) with at least `weekly_min_weeks` complete weeks is
  aggregated to weekly totals (blocks ending on the last day), modelled by a non-seasonal
  ARIMA and spread back over the days with the day-of-week shares of the last
  `profile_weeks` weeks. That replaces the ≈ 9.5 s m = 7 search by a sub-second weekly
  one and averages away most daily noise. Shorter daily histories get a non-seasonal
  daily ARIMA (the seasonal naive and ETS candidates cover the weekday pattern there).
  Daily interval: treating the week's total W as Gaussian (mean μ_W, sd σ_W) and its
  split over the days as multinomial with the weekday shares s gives
  Var(day) = s²·σ_W² + μ_W·s·(1 - s).
* Warm start: `fit(y, warm=params)` refits the stored order without searching.
  `update(new)` appends observations to the fitted model (pmdarima `update`, a few
  optimiser steps from the current parameters); for weekly-aggregated daily data that is
  possible only in whole weeks, otherwise it falls back to refitting the stored order.

Out of stock: statsmodels' Kalman filter treats NaN as missing, so the fit and update
use the gaps as gaps. Only the order search (whose unit-root tests reject NaN) sees a copy
filled with the same phase of the previous cycle. A week with some stock-out days is
scaled up by the weekday shares of the days that were observed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import pmdarima as pm

from ..series import aggregate_cycles, phase_shares, prepare, seasonal_fill
from ..threads import single_threaded_blas
from .base import Forecast, ForecastMethod, normal_intervals

WEEK = 7


@dataclass(eq=False, kw_only=True)
class AutoArima(ForecastMethod):
    """Speed-tuned auto_arima; see the module docstring for the rules."""

    name = "auto_arima"

    max_p: int = 2
    max_q: int = 2
    max_P: int = 1
    max_Q: int = 1
    max_d: int = 1
    max_D: int = 1
    seasonal_max_m: int = 12
    seasonal_min_cycles: int = 3
    search_window: int = 120
    weekly_min_weeks: int = 16
    profile_weeks: int = 26
    min_observed: int = 10
    maxiter: int = 50

    order: tuple[int, int, int] = field(default=(0, 0, 0), init=False)
    seasonal_order: tuple[int, int, int, int] = field(default=(0, 0, 0, 0), init=False)
    with_intercept: bool = field(default=True, init=False)
    aggregated: bool = field(default=False, init=False)
    searched: bool = field(default=False, init=False)
    _model: Any = field(default=None, init=False, repr=False)
    # The statsmodels results that forecast: the pmdarima model's own, or the stored
    # parameters applied to a longer history by `refit_fixed` (which has no _model).
    _results: Any = field(default=None, init=False, repr=False)
    _shares: np.ndarray = field(
        default_factory=lambda: np.full(WEEK, 1 / WEEK), init=False, repr=False
    )

    def _aggregates(self, n: int) -> bool:
        return self.freq == "D" and self.m == WEEK and n // WEEK >= self.weekly_min_weeks

    def _arima(self, order: Any, seasonal_order: Any, with_intercept: bool) -> pm.ARIMA:
        return pm.ARIMA(
            order=tuple(order),
            seasonal_order=tuple(seasonal_order),
            with_intercept=with_intercept,
            maxiter=self.maxiter,
            suppress_warnings=True,
        )

    def _fit(self, y: np.ndarray, warm: Mapping[str, Any]) -> None:
        self.aggregated = self._aggregates(len(y))
        series = self._series(y)
        season = 1 if self.aggregated else self.m  # weekly data would need m = 52
        n_observed = int((~np.isnan(series)).sum())
        if n_observed < self.min_observed:
            raise ValueError(f"auto_arima needs {self.min_observed} observed periods")
        seasonal = 1 < season <= self.seasonal_max_m and (
            n_observed >= self.seasonal_min_cycles * season
        )
        season = season if seasonal else 1
        with warnings.catch_warnings(), single_threaded_blas():
            # statsmodels warns about convergence and frequency on most real series; the
            # backtest judges the model, so the warnings are only noise in worker logs.
            warnings.simplefilter("ignore")
            if self._warm_matches(warm, season):
                self.order = tuple(warm["order"])
                self.seasonal_order = tuple(warm["seasonal_order"])
                self.with_intercept = bool(warm["with_intercept"])
                self._model = self._arima(self.order, self.seasonal_order, self.with_intercept).fit(
                    series
                )
                self.searched = False
            else:
                self._search(series, season, seasonal)
        self._results = self._model.arima_res_

    def _series(self, y: np.ndarray) -> np.ndarray:
        """What the model is fitted to: weekly totals when aggregated (and the weekday
        shares of `y` stored for the split back), else `y` itself."""
        if not self.aggregated:
            return y
        self._shares = phase_shares(y, WEEK, WEEK * self.profile_weeks)
        series, _ = aggregate_cycles(y, WEEK, self._shares)
        return series

    def refit_fixed(self, y: Any) -> Self:
        """The fitted coefficients run over the longer history by the Kalman filter
        (statsmodels `apply`): no order search and no optimisation. A history long enough
        to switch to weekly aggregation gets a warm-started fit instead."""
        if self._results is None or self.history is None:
            raise RuntimeError(f"{self.name}: fit() before refit_fixed()")
        values = prepare(y)
        new = self.clone()
        new.m, new.freq, new.history = self.m, self.freq, values
        new.aggregated = new._aggregates(len(values))
        if new.aggregated != self.aggregated:
            return super().refit_fixed(values)
        new.order, new.seasonal_order = self.order, self.seasonal_order
        new.with_intercept = self.with_intercept
        series = new._series(values)
        with warnings.catch_warnings(), single_threaded_blas():
            warnings.simplefilter("ignore")
            new._results = self._results.apply(series)
        return new

    def _warm_matches(self, warm: Mapping[str, Any], season: int) -> bool:
        if not warm.get("order") or bool(warm.get("aggregated")) != self.aggregated:
            return False
        warm_season = int(warm["seasonal_order"][3]) if warm.get("seasonal_order") else 0
        return max(warm_season, 1) == season

    def _search(self, series: np.ndarray, season: int, seasonal: bool) -> None:
        window = max(self.search_window, 4 * season)
        sample = seasonal_fill(series, season)[-window:]
        found = pm.auto_arima(
            sample,
            m=season,
            seasonal=seasonal,
            stepwise=True,
            start_p=1,
            start_q=1,
            start_P=1,
            start_Q=0,
            max_p=self.max_p,
            max_q=self.max_q,
            max_P=self.max_P,
            max_Q=self.max_Q,
            max_d=self.max_d,
            max_D=self.max_D,
            maxiter=self.maxiter,
            error_action="ignore",
            suppress_warnings=True,
        )
        self.order = tuple(int(v) for v in found.order)
        self.seasonal_order = tuple(int(v) for v in found.seasonal_order)
        self.with_intercept = bool(found.with_intercept)
        self.searched = True
        if len(sample) == len(series) and not np.isnan(series).any():
            self._model = found
        else:
            self._model = self._arima(self.order, self.seasonal_order, self.with_intercept).fit(
                series
            )

    def _forecast(self, h: int, levels: tuple[float, ...]) -> Forecast:
        steps = math.ceil(h / WEEK) if self.aggregated else h
        with single_threaded_blas():
            prediction = self._results.get_forecast(steps=steps)
        mean = np.asarray(prediction.predicted_mean, dtype=float)
        sd = np.asarray(prediction.se_mean, dtype=float)
        if not self.aggregated:
            return normal_intervals(mean, sd, levels)
        days = np.arange(h)
        week = days // WEEK
        share = self._shares[(len(self.history) + days) % WEEK]
        week_mean = np.maximum(mean[week], 0.0)
        daily_var = share**2 * sd[week] ** 2 + week_mean * share * (1 - share)
        return normal_intervals(mean[week] * share, np.sqrt(daily_var), levels)

    def update(self, y_new: Any, oos_new: Any = None) -> Self:
        """Append observations with pmdarima's `update` (no search, no full refit).

        Weekly-aggregated daily models take whole weeks only; any other number of days (or
        a model from `refit_fixed`, which has no pmdarima model to update) is absorbed by
        refitting the stored order on the whole history.
        """
        if self.history is None:
            raise RuntimeError(f"{self.name}: fit() before update()")
        new = prepare(y_new, oos_new)
        if len(new) == 0:
            return self
        start = len(self.history)
        combined = np.concatenate([self.history, new])
        if self._model is None or (self.aggregated and len(new) % WEEK):
            return self.fit(combined, m=self.m, freq=self.freq, warm=self.params())
        if self.aggregated:
            new, _ = aggregate_cycles(new, WEEK, self._shares, start=start)
        with warnings.catch_warnings(), single_threaded_blas():
            warnings.simplefilter("ignore")
            self._model.update(new)
        self._results = self._model.arima_res_
        self.history = combined
        return self

    def params(self) -> dict[str, Any]:
        return {
            "order": list(self.order),
            "seasonal_order": list(self.seasonal_order),
            "with_intercept": self.with_intercept,
            "aggregated": self.aggregated,
        }
