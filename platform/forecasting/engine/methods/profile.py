"""New SKUs: a launch profile of comparable items, scaled to the new item's first sales."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .base import Forecast, ForecastMethod, count_intervals


def launch_profile(histories: Sequence[Any], length: int) -> np.ndarray:
    """Mean units per period by age since first sale, over comparable items' histories.

    Each history is aligned at its first non-zero period (NaN = missing, skipped), so the
    profile describes a typical launch curve of the category. Ages no item reached
    repeat the last known value. Raises ValueError when no history has a sale.
    """
    totals, counts = np.zeros(length), np.zeros(length)
    for history in histories:
        values = np.asarray(history, dtype=float)
        sold = np.flatnonzero(values > 0)
        if len(sold) == 0:
            continue
        aligned = values[sold[0] : sold[0] + length]
        seen = ~np.isnan(aligned)
        totals[: len(aligned)][seen] += aligned[seen]
        counts[: len(aligned)][seen] += 1
    if not counts.any():
        raise ValueError("no comparable history has any demand")
    with np.errstate(invalid="ignore", divide="ignore"):
        profile = totals / counts
    oldest = np.flatnonzero(counts > 0)[-1]
    profile[oldest + 1 :] = profile[oldest]
    # Gaps inside the profile (an age that only missing values covered) get the mean.
    return np.where(np.isnan(profile), np.nanmean(profile), profile)


@dataclass(eq=False, kw_only=True)
class ProfileScaled(ForecastMethod):
    """Forecast = scale × profile[age], age = periods since the item's first sale.

    `profile` holds the reference demand per period by age since first sale, in units
    (e.g. from `launch_profile`); `y` is the new item's history (leading periods without
    a sale are ignored). The scale is the
    ratio of the item's observed units to the profile's units over the same observed
    periods, shrunk towards 1 with credibility weight n / (n + shrink) so that a single
    lucky or unlucky first week does not set the level alone. Beyond the profile's end
    the mean of its last `m` values carries on.

    Out of stock: missing periods are left out of both sides of the ratio.
    Intervals: count distribution (see `count_intervals`) with dispersion estimated from
    the item's own deviations from the scaled profile once it has `min_for_dispersion`
    observations, else `default_dispersion` (2: new items are more uncertain than
    Poisson).
    """

    name = "profile"

    profile: np.ndarray = field(default_factory=lambda: np.zeros(0))
    shrink: float = 2.0
    default_dispersion: float = 2.0
    min_for_dispersion: int = 4

    scale: float = field(default=1.0, init=False)
    age: int = field(default=0, init=False)
    dispersion: float = field(default=2.0, init=False)

    def _extended(self, length: int) -> np.ndarray:
        profile = np.asarray(self.profile, dtype=float)
        if len(profile) == 0:
            raise ValueError("ProfileScaled needs a non-empty reference profile")
        if len(profile) >= length:
            return profile[:length]
        tail = float(profile[-max(1, min(self.m, len(profile))) :].mean())
        return np.concatenate([profile, np.full(length - len(profile), tail)])

    def _fit(self, y: np.ndarray, warm: Mapping[str, Any]) -> None:
        # Ages count from the first sale, as `launch_profile` aligns the reference items;
        # periods listed before anyone bought say nothing about the launch curve.
        sold = np.flatnonzero(y > 0)
        y = y[sold[0] :] if len(sold) else y
        self.age = len(y)
        reference = self._extended(len(y))
        seen = ~np.isnan(y)
        n_seen = int(seen.sum())
        units, expected = float(y[seen].sum()), float(reference[seen].sum())
        ratio = units / expected if expected > 0 else 1.0
        weight = n_seen / (n_seen + self.shrink)
        self.scale = weight * ratio + (1 - weight) * 1.0
        self.dispersion = self.default_dispersion
        fitted = self.scale * reference[seen]
        if n_seen >= self.min_for_dispersion and fitted.mean() > 0:
            errors = y[seen] - fitted
            self.dispersion = max(1.0, float(np.mean(errors**2) / fitted.mean()))

    def _forecast(self, h: int, levels: tuple[float, ...]) -> Forecast:
        mean = self.scale * self._extended(self.age + h)[self.age :]
        return count_intervals(mean, self.dispersion, levels)

    def params(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "age": self.age,
            "dispersion": self.dispersion,
            "shrink": self.shrink,
        }


def as_profile(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """A validated float copy of a reference profile (1-D, finite, non-negative)."""
    profile = np.asarray(values, dtype=float)
    if profile.ndim != 1 or len(profile) == 0:
        raise ValueError("a reference profile must be a non-empty 1-D array")
    if not np.isfinite(profile).all() or (profile < 0).any():
        raise ValueError("a reference profile must be finite and non-negative")
    return profile
