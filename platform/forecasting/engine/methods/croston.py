"""Croston, SBA and TSB for intermittent and lumpy demand, in plain numpy.

Notation: sizes z (non-zero demands), intervals p (periods between demands, the first one
counted from the start of the series), simple exponential smoothing (SES)
l_k = l_{k-1} + α (x_k - l_{k-1}) initialised at the first value.

* Croston (1972): forecast = ẑ / p̂, both smoothed with α, updated only in demand periods.
* SBA (Syntetos & Boylan 2005): Croston × (1 - α/2), removing Croston's upward bias.
* TSB (Teunter, Syntetos & Babai 2011): smooths the demand *probability* d_t = 1{y_t > 0}
  every period with β (initialised at the share of periods with demand) and the size
  with α in demand periods; forecast = d̂ · ẑ. Unlike Croston it decays towards zero
  while no demand arrives, which is what an item going obsolete needs.

Out of stock: missing periods are dropped before anything is computed. A stock-out then
neither ends nor lengthens an interval, and TSB's probability is not pulled down by days
on which the item could not sell.

Intervals: a count distribution around the flat forecast μ (see `count_intervals`) with
dispersion φ = mean squared one-step in-sample error / mean one-step forecast, measured
after the first demand and floored at 1 (Poisson). φ > 1 gives a negative binomial with
variance φ·μ, so lumpy items get the wide upper tail their history shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.signal import lfilter

from .base import Forecast, ForecastMethod, count_intervals


def ses_levels(x: np.ndarray, alpha: float, init: float) -> np.ndarray:
    """Level after each value of SES: l_k = l_{k-1} + α (x_k - l_{k-1}), l_{-1} = init.

    lfilter runs the recursion in C: the Python loop would cost more than everything else
    on a 2-year daily series.
    """
    if len(x) == 0:
        return np.zeros(0)
    values = np.asarray(x, dtype=float)
    levels, _ = lfilter([alpha], [1.0, alpha - 1.0], values, zi=[(1 - alpha) * init])
    return levels


def _dispersion(values: np.ndarray, fitted: np.ndarray, start: int) -> float:
    """Variance-to-mean ratio of one-step errors from period `start` on, at least 1."""
    errors = values[start:] - fitted[start:]
    mean_fit = float(np.mean(fitted[start:])) if len(errors) else 0.0
    if len(errors) < 2 or mean_fit <= 0:
        return 1.0
    return max(1.0, float(np.mean(errors**2)) / mean_fit)


@dataclass(eq=False, kw_only=True)
class Croston(ForecastMethod):
    """Croston's method; `alpha` smooths both sizes and intervals (0.1 is the classic value)."""

    name = "croston"

    alpha: float = 0.1

    size: float = field(default=0.0, init=False)
    interval: float = field(default=1.0, init=False)
    rate: float = field(default=0.0, init=False)
    dispersion: float = field(default=1.0, init=False)

    def _bias_factor(self) -> float:
        return 1.0

    def _fit(self, y: np.ndarray, warm: Mapping[str, Any]) -> None:
        values = y[~np.isnan(y)]
        demand_at = np.flatnonzero(values > 0)
        if len(demand_at) == 0:
            self.size, self.interval, self.rate, self.dispersion = 0.0, 1.0, 0.0, 1.0
            return
        sizes = values[demand_at]
        intervals = np.diff(np.concatenate([[-1], demand_at])).astype(float)
        size_levels = ses_levels(sizes, self.alpha, sizes[0])
        interval_levels = ses_levels(intervals, self.alpha, intervals[0])
        rates = self._bias_factor() * size_levels / interval_levels
        # The forecast for period t is the rate after the last demand before t.
        periods = np.arange(len(values))
        last_demand = np.searchsorted(demand_at, periods, side="left") - 1
        fitted = np.where(last_demand >= 0, rates[np.maximum(last_demand, 0)], 0.0)
        self.size = float(size_levels[-1])
        self.interval = float(interval_levels[-1])
        self.rate = float(rates[-1])
        self.dispersion = _dispersion(values, fitted, int(demand_at[0]) + 1)

    def _forecast(self, h: int, levels: tuple[float, ...]) -> Forecast:
        return count_intervals(np.full(h, self.rate), self.dispersion, levels)

    def params(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "size": self.size,
            "interval": self.interval,
            "rate": self.rate,
            "dispersion": self.dispersion,
        }


@dataclass(eq=False, kw_only=True)
class SBA(Croston):
    """Syntetos–Boylan approximation: Croston × (1 - α/2)."""

    name = "sba"

    def _bias_factor(self) -> float:
        return 1.0 - self.alpha / 2.0


@dataclass(eq=False, kw_only=True)
class TSB(ForecastMethod):
    """Teunter–Syntetos–Babai: `alpha` smooths sizes, `beta` the demand probability."""

    name = "tsb"

    alpha: float = 0.1
    beta: float = 0.1

    size: float = field(default=0.0, init=False)
    probability: float = field(default=0.0, init=False)
    rate: float = field(default=0.0, init=False)
    dispersion: float = field(default=1.0, init=False)

    def _fit(self, y: np.ndarray, warm: Mapping[str, Any]) -> None:
        values = y[~np.isnan(y)]
        occurred = (values > 0).astype(float)
        demand_at = np.flatnonzero(occurred)
        if len(demand_at) == 0:
            self.size, self.probability, self.rate, self.dispersion = 0.0, 0.0, 0.0, 1.0
            return
        sizes = values[demand_at]
        prob0, size0 = float(occurred.mean()), float(sizes[0])
        prob_levels = ses_levels(occurred, self.beta, prob0)
        size_levels = ses_levels(sizes, self.alpha, size0)
        # Size state after period t: unchanged between demands.
        periods = np.arange(len(values))
        last_demand = np.searchsorted(demand_at, periods, side="right") - 1
        size_state = np.where(last_demand >= 0, size_levels[np.maximum(last_demand, 0)], size0)
        # One-step forecast for period t uses the states after t-1.
        fitted = np.concatenate([[prob0 * size0], (prob_levels * size_state)[:-1]])
        self.size = float(size_levels[-1])
        self.probability = float(prob_levels[-1])
        self.rate = self.size * self.probability
        self.dispersion = _dispersion(values, fitted, int(demand_at[0]) + 1)

    def _forecast(self, h: int, levels: tuple[float, ...]) -> Forecast:
        return count_intervals(np.full(h, self.rate), self.dispersion, levels)

    def params(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "beta": self.beta,
            "size": self.size,
            "probability": self.probability,
            "rate": self.rate,
            "dispersion": self.dispersion,
        }


@dataclass(eq=False, kw_only=True)
class ADIDA(ForecastMethod):
    """ADIDA (Nikolopoulos et al. 2011): aggregate, smooth, disaggregate.

    The observed history is cut into non-overlapping buckets of k periods ending at the
    last one, k = the mean interval between demands rounded (at least 1; `aggregation`
    fixes it). SES on the bucket totals, with α picked from `alphas` by in-sample
    one-step squared error, gives the next bucket's total; the per-period forecast is
    that total / k. Aggregating to about one demand per bucket removes most of the zeros
    that make SES on the raw series jumpy, which is why ADIDA is among the most accurate
    simple methods on the car-parts and M5 intermittent series.
    """

    name = "adida"

    aggregation: int | None = None
    alphas: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)

    k: int = field(default=1, init=False)
    alpha: float = field(default=0.1, init=False)
    rate: float = field(default=0.0, init=False)
    dispersion: float = field(default=1.0, init=False)

    def _fit(self, y: np.ndarray, warm: Mapping[str, Any]) -> None:
        values = y[~np.isnan(y)]
        demand_at = np.flatnonzero(values > 0)
        if len(demand_at) == 0:
            self.k, self.rate, self.dispersion = 1, 0.0, 1.0
            return
        if self.aggregation:
            k = int(self.aggregation)
        else:
            intervals = np.diff(np.concatenate([[-1], demand_at]))
            k = int(round(float(np.mean(intervals))))
        k = max(1, min(k, len(values)))
        usable = len(values) - len(values) % k
        buckets = values[len(values) - usable :].reshape(-1, k).sum(axis=1)
        best = None
        for alpha in self.alphas:
            levels = ses_levels(buckets, alpha, float(buckets[0]))
            errors = buckets[1:] - levels[:-1]
            sse = float(np.sum(errors**2))
            if best is None or sse < best[0] - 1e-12:
                best = (sse, alpha, levels)
        _, self.alpha, levels = best
        self.k = k
        self.rate = float(levels[-1]) / k
        # One-step fitted rate per period: the level after the previous bucket.
        fitted_buckets = np.concatenate([[buckets[0]], levels[:-1]]) / k
        fitted = np.repeat(fitted_buckets, k)
        self.dispersion = _dispersion(values[len(values) - usable :], fitted, k)

    def _forecast(self, h: int, levels: tuple[float, ...]) -> Forecast:
        return count_intervals(np.full(h, self.rate), self.dispersion, levels)

    def params(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "alpha": self.alpha,
            "rate": self.rate,
            "dispersion": self.dispersion,
        }
