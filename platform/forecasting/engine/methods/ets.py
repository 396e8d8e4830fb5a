"""Exponential smoothing (statsmodels ETSModel): additive errors, damped additive trend,
additive seasonality when the history holds enough cycles."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import pandas as pd
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

from ..series import prepare, seasonal_fill
from ..threads import single_threaded_blas
from .base import Forecast, ForecastMethod, normal_intervals


@dataclass(eq=False, kw_only=True)
class ETS(ForecastMethod):
    """ETS(A, Ad, A) / ETS(A, Ad, N) / ETS(A, N, N) chosen by the amount of history.

    * seasonal when 1 < m <= max_season and at least `seasonal_min_cycles` full cycles are
      observed: 52 weekly or 24 hourly seasonal states estimated by maximum likelihood
      overfit and cost seconds, so long seasons are left to the seasonal naive baseline;
    * damped trend from `trend_min_length` observed periods (a damped trend is the safest
      trend to extrapolate); level only below that.

    ETSModel rather than the state-space ExponentialSmoothing: 5–10× faster here, with
    analytic intervals. It cannot skip missing values, so out-of-stock periods are filled
    in two passes: first with the same phase of the previous cycle, then — after a first
    fit — with the model's own one-step predictions, and the model is refitted from the
    first fit's parameters. Filling a gap with the one-step prediction is exactly what a
    filter that skips the observation does when the parameters are held fixed.
    Intervals: the model's analytic Gaussian ones with the error variance taken as
    SSE / (n - k) over the k estimated parameters (as R's forecast::ets does) instead of
    statsmodels' maximum-likelihood SSE / n. A seasonal model estimates 18 values from a
    few years of monthly data, and the ML variance then gives 80 % intervals that hold
    about 72 % of outcomes on seasonal Gaussian test data.
    """

    name = "ets"

    damped: bool = True
    seasonal_min_cycles: int = 2
    max_season: int = 24
    trend_min_length: int = 10
    maxiter: int = 200

    trend: bool = field(default=False, init=False)
    season: int = field(default=0, init=False)
    fitted_params: dict[str, float] = field(default_factory=dict, init=False)
    _result: Any = field(default=None, init=False, repr=False)

    def _structure(self, n_observed: int) -> tuple[bool, int]:
        seasonal = 1 < self.m <= self.max_season and n_observed >= self.seasonal_min_cycles * self.m
        return n_observed >= self.trend_min_length, self.m if seasonal else 0

    def _model(self, y: np.ndarray) -> ETSModel:
        return ETSModel(
            # ETSModel.get_prediction needs an index (statsmodels 0.15 with numpy 2).
            pd.Series(y),
            error="add",
            trend="add" if self.trend else None,
            damped_trend=self.damped and self.trend,
            seasonal="add" if self.season else None,
            seasonal_periods=self.season or None,
        )

    def _fit_once(self, y: np.ndarray, start: np.ndarray | None) -> Any:
        with warnings.catch_warnings(), single_threaded_blas():
            # Convergence warnings on short or flat series are expected; the backtest,
            # not the optimiser's exit code, decides whether this model is any good.
            warnings.simplefilter("ignore")
            return self._model(y).fit(disp=False, maxiter=self.maxiter, start_params=start)

    def _fit(self, y: np.ndarray, warm: Mapping[str, Any]) -> None:
        missing = np.isnan(y)
        n_observed = int((~missing).sum())
        if n_observed < 3:
            raise ValueError("ETS needs at least 3 observed periods")
        self.trend, self.season = self._structure(n_observed)
        start = None
        same_structure = (warm.get("trend"), warm.get("season")) == (self.trend, self.season)
        if same_structure and warm.get("params"):
            start = np.array(list(warm["params"].values()), dtype=float)
        filled = seasonal_fill(y, self.season or 1)
        result = self._fit_once(filled, start)
        if missing.any():
            filled = np.where(missing, np.asarray(result.fittedvalues), y)
            result = self._fit_once(filled, np.asarray(result.params))
        self._result = result
        self.fitted_params = {
            name: float(value)
            for name, value in zip(result.model.param_names, result.params, strict=True)
        }

    def structure(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Nothing of the estimates: a fit on another history starts from statsmodels'
        own starting values (heuristic initial states, default smoothing weights).

        Started from the estimates of a fit on a shorter history, the optimiser stays in
        that fit's basin: on the Australian retail hold-out the final fit reached a higher
        in-sample likelihood on 32 of 48 series, and forecast worse (RMSSE 0.663 against
        0.611 from the default start; 0.739 against 0.730 one horizon earlier). The
        nightly warm path still starts from the stored estimates: there the history has
        grown by a day, not by a season.
        """
        return {key: value for key, value in params.items() if key != "params"}

    def refit_fixed(self, y: Any) -> Self:
        """The fitted parameters (smoothing weights, damping, initial states) run over the
        longer history by the model's filter, with the same two-pass gap filling as `fit`.
        A history long enough to change the model's structure gets a warm-started fit."""
        if self._result is None or self.history is None:
            raise RuntimeError(f"{self.name}: fit() before refit_fixed()")
        values = prepare(y)
        missing = np.isnan(values)
        if self._structure(int((~missing).sum())) != (self.trend, self.season):
            return super().refit_fixed(values)
        new = self.clone()
        new.m, new.freq, new.history = self.m, self.freq, values
        new.trend, new.season = self.trend, self.season
        new.fitted_params = dict(self.fitted_params)
        params = np.asarray(self._result.params)
        with warnings.catch_warnings(), single_threaded_blas():
            warnings.simplefilter("ignore")
            result = new._model(seasonal_fill(values, self.season or 1)).smooth(params)
            if missing.any():
                filled = np.where(missing, np.asarray(result.fittedvalues), values)
                result = new._model(filled).smooth(params)
        new._result = result
        return new

    def _forecast(self, h: int, levels: tuple[float, ...]) -> Forecast:
        n = self._result.model.nobs
        with single_threaded_blas():
            prediction = self._result.get_prediction(start=n, end=n + h - 1)
        mean = np.asarray(prediction.predicted_mean, dtype=float)
        variance = np.maximum(np.asarray(prediction.forecast_variance, dtype=float), 0.0)
        n_params = len(self._result.params)
        variance *= n / max(n - n_params, 1)
        sd = np.sqrt(variance)
        return normal_intervals(mean, sd, levels)

    def params(self) -> dict[str, Any]:
        return {
            "trend": self.trend,
            "damped": self.damped and self.trend,
            "season": self.season,
            "params": dict(self.fitted_params),
        }
