"""The interface every forecasting method implements, and the interval helpers.

A method is a small dataclass: its fields are the configuration, `fit` stores the fitted
state on the instance and returns it, `forecast` returns a `Forecast` with prediction
intervals. `params()` is the JSON-serialisable state that warm-starts the next fit
(`fit(..., warm=params)`), so the platform can store it in a JSONField.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import numpy as np
from scipy import stats

from ..series import normalize_freq, prepare

DEFAULT_LEVELS: tuple[float, ...] = (80.0, 95.0)
# A point forecast beyond this multiple of the largest observation is a diverged fit.
DIVERGED = 100.0


def check_levels(levels: Sequence[float]) -> tuple[float, ...]:
    """Interval levels in percent, each strictly between 0 and 100."""
    checked = tuple(float(level) for level in levels)
    for level in checked:
        if not 0 < level < 100:
            raise ValueError(f"interval level must be a percentage in (0, 100), got {level}")
    return checked


@dataclass(frozen=True)
class Forecast:
    """Point forecast and prediction intervals, one value per future period.

    lower/upper are keyed by level in percent (80.0, 95.0).
    """

    mean: np.ndarray
    lower: dict[float, np.ndarray]
    upper: dict[float, np.ndarray]

    @property
    def levels(self) -> tuple[float, ...]:
        return tuple(sorted(self.lower))

    @property
    def finite(self) -> bool:
        """Whether the mean and every bound are finite numbers."""
        arrays = [self.mean, *self.lower.values(), *self.upper.values()]
        return all(np.isfinite(array).all() for array in arrays)

    def clipped(self) -> Forecast:
        """Demand cannot be negative: clip the mean and both bounds at zero."""
        return Forecast(
            np.maximum(self.mean, 0.0),
            {level: np.maximum(v, 0.0) for level, v in self.lower.items()},
            {level: np.maximum(v, 0.0) for level, v in self.upper.items()},
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly copy: {"mean": [...], "intervals": {"80": {"lower", "upper"}}}."""
        return {
            "mean": self.mean.tolist(),
            "intervals": {
                f"{level:g}": {
                    "lower": self.lower[level].tolist(),
                    "upper": self.upper[level].tolist(),
                }
                for level in self.levels
            },
        }


def normal_intervals(mean: np.ndarray, sd: np.ndarray, levels: Sequence[float]) -> Forecast:
    """Symmetric Gaussian intervals mean ± z·sd."""
    lower, upper = {}, {}
    for level in levels:
        z = float(stats.norm.ppf(0.5 + level / 200.0))
        lower[level] = mean - z * sd
        upper[level] = mean + z * sd
    return Forecast(np.asarray(mean, dtype=float), lower, upper)


def count_intervals(mean: np.ndarray, dispersion: float, levels: Sequence[float]) -> Forecast:
    """Equal-tailed intervals of a count distribution with the given mean.

    Poisson when `dispersion` (variance / mean) is 1 or less, otherwise negative binomial
    with variance = dispersion × mean. Discrete quantiles make the coverage at least the
    nominal level when the distribution is right, which is what a buyer sizing safety
    stock wants from a slow mover.
    """
    mean = np.maximum(np.asarray(mean, dtype=float), 0.0)
    positive = mean > 0
    safe_mean = np.where(positive, mean, 1.0)
    if dispersion <= 1.0 + 1e-9:
        dist = stats.poisson(safe_mean)
    else:
        dist = stats.nbinom(safe_mean / (dispersion - 1.0), 1.0 / dispersion)
    lower, upper = {}, {}
    for level in levels:
        tail = (1.0 - level / 100.0) / 2.0
        lower[level] = np.where(positive, dist.ppf(tail), 0.0)
        upper[level] = np.where(positive, dist.ppf(1.0 - tail), 0.0)
    return Forecast(mean, lower, upper)


@dataclass(eq=False, kw_only=True)
class ForecastMethod(ABC):
    """Common interface: `fit(y, m=, freq=, oos=, warm=)` then `forecast(h, levels)`.

    Subclasses implement `_fit`, `_forecast` and `params`; they receive the prepared
    history (float array, NaN = missing or out of stock) and must not read a gap as zero.
    """

    name: ClassVar[str]

    m: int = field(default=1, init=False)
    freq: str | None = field(default=None, init=False)
    history: np.ndarray | None = field(default=None, init=False, repr=False)

    def fit(
        self,
        y: Any,
        *,
        m: int = 1,
        freq: str | None = None,
        oos: Any = None,
        warm: Mapping[str, Any] | None = None,
    ) -> Self:
        """Fit on `y` (array or Series; NaN and `oos`-marked periods are missing).

        warm: `params()` of an earlier fit of the same method; each method reuses what it
        can (ARIMA: the order, ETS: starting values) and ignores what no longer fits.
        """
        values = prepare(y, oos)
        if np.isnan(values).all():
            raise ValueError("series has no observed values")
        self.m = max(1, int(m))
        self.freq = normalize_freq(freq)
        self.history = values
        self._fit(values, warm or {})
        return self

    def forecast(self, h: int, levels: Sequence[float] = DEFAULT_LEVELS) -> Forecast:
        """Point forecast and intervals for the next `h` periods, clipped at zero."""
        if self.history is None:
            raise RuntimeError(f"{self.name}: fit() before forecast()")
        if h < 1:
            raise ValueError(f"horizon must be >= 1, got {h}")
        forecast = self._forecast(int(h), check_levels(levels))
        # A fit that diverged must fail loudly here, before clipping hides it (an explosive
        # ARIMA refit forecast -2.6e12 units a day, clipped to a plausible-looking zero):
        # the backtest then scores the method as failed and the pipeline falls back,
        # instead of a NaN or a runaway number reaching safety stock or a JSON column.
        if not forecast.finite:
            raise ValueError(f"{self.name}: the forecast is not finite")
        seen = np.abs(self.history[~np.isnan(self.history)])
        limit = DIVERGED * max(1.0, float(seen.max()) if len(seen) else 0.0)
        if len(forecast.mean) and float(np.abs(forecast.mean).max()) > limit:
            raise ValueError(f"{self.name}: the forecast diverges (beyond {limit:g} per period)")
        return forecast.clipped()

    def update(self, y_new: Any, oos_new: Any = None) -> Self:
        """Append new observations. The default refits warm-started on the whole history;
        methods with a cheaper incremental update override it."""
        if self.history is None:
            raise RuntimeError(f"{self.name}: fit() before update()")
        combined = np.concatenate([self.history, prepare(y_new, oos_new)])
        return self.fit(combined, m=self.m, freq=self.freq, warm=self.params())

    def refit_fixed(self, y: Any) -> Self:
        """A new model for the longer history `y` (same start, same m and freq) that keeps
        this fit's estimated parameters instead of estimating them again.

        The rolling-origin backtest estimates at its oldest origin and moves to the later
        ones with this: what a production model does between weekly refits, at a
        fraction of the cost (an ETS or ARIMA filter pass instead of an optimisation).
        The default is a warm-started fit, which is all the cheap methods need.
        """
        if self.history is None:
            raise RuntimeError(f"{self.name}: fit() before refit_fixed()")
        return self.clone().fit(y, m=self.m, freq=self.freq, warm=self.params())

    def structure(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """What of an earlier fit's `params()` a fresh estimate on another history keeps.

        The engine seeds its final fit and the re-estimated backtest origins with this:
        the model structure a costly search found (ARIMA: the order), never estimates to
        polish. The default keeps everything, which is what the cheap methods and ARIMA
        need; ETS keeps nothing of its estimates (see `ETS.structure`).
        """
        return dict(params)

    def clone(self) -> Self:
        """An unfitted copy with the same configuration."""
        return dataclasses.replace(self)

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """JSON-serialisable fitted state; `fit(..., warm=params())` reuses it."""

    @abstractmethod
    def _fit(self, y: np.ndarray, warm: Mapping[str, Any]) -> None: ...

    @abstractmethod
    def _forecast(self, h: int, levels: tuple[float, ...]) -> Forecast: ...
