"""Seasonal naive: next cycle = last observed cycle. The baseline every series runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..series import seasonal_fill
from .base import Forecast, ForecastMethod, normal_intervals


@dataclass(eq=False, kw_only=True)
class SeasonalNaive(ForecastMethod):
    """ŷ[T+j] = y[T+j-m·(k+1)], k = ⌊(j-1)/m⌋; plain naive when history is shorter than m.

    Out of stock: a missing period takes the value of the same phase one cycle earlier
    (or later for leading gaps), i.e. the forecast repeats the last *observed* value of
    each phase. Intervals: Gaussian with σ² = mean squared seasonal difference over
    observed pairs (no mean correction, as in Hyndman & Athanasopoulos, FPP3 §5.5) and
    sd growing with √(k+1) for later cycles; lag-1 differences when fewer than two
    seasonal pairs exist, and σ² = level (Poisson-like) when there are no pairs at all.
    """

    name = "seasonal_naive"

    lag: int = field(default=1, init=False)
    sigma: float = field(default=0.0, init=False)
    _last_cycle: np.ndarray = field(default_factory=lambda: np.zeros(0), init=False, repr=False)

    def _fit(self, y: np.ndarray, warm: Mapping[str, Any]) -> None:
        lag = self.m if len(y) >= self.m else 1
        filled = seasonal_fill(y, lag)
        diffs = y[lag:] - y[:-lag]
        diffs = diffs[~np.isnan(diffs)]
        if len(diffs) < 2 and lag > 1:
            # Too few pairs one cycle apart: the one-step spread is a better guess than 0.
            diffs = np.diff(y)
            diffs = diffs[~np.isnan(diffs)]
        self.lag = lag
        if len(diffs):
            self.sigma = float(np.sqrt(np.mean(diffs**2)))
        else:
            # One observation shows no spread; a zero-width interval would claim certainty,
            # so assume count-like demand (variance = level).
            self.sigma = float(np.sqrt(max(np.nanmean(y), 0.0)))
        self._last_cycle = filled[-lag:]

    def _forecast(self, h: int, levels: tuple[float, ...]) -> Forecast:
        steps = np.arange(h)
        mean = self._last_cycle[steps % self.lag]
        sd = self.sigma * np.sqrt(steps // self.lag + 1.0)
        return normal_intervals(mean, sd, levels)

    def params(self) -> dict[str, Any]:
        return {"lag": self.lag, "sigma": self.sigma}


@dataclass(eq=False, kw_only=True)
class Naive(SeasonalNaive):
    """Random walk: every future period = the last observed value (seasonal naive, m = 1).

    The benchmark a weekly series needs: with m = 52 the seasonal naive repeats last
    year's week, which only pays around the few weeks of a strong yearly peak, while the
    last observed week is often the better guess for the rest of the year.
    """

    name = "naive"

    def _fit(self, y: np.ndarray, warm: Mapping[str, Any]) -> None:
        self.m = 1
        super()._fit(y, warm)
