"""Forecasting methods sharing the `ForecastMethod` interface, registered by name."""

from __future__ import annotations

from .arima import AutoArima
from .base import DEFAULT_LEVELS, Forecast, ForecastMethod, count_intervals, normal_intervals
from .croston import SBA, TSB, Croston, ses_levels
from .ets import ETS
from .naive import SeasonalNaive
from .profile import ProfileScaled, as_profile, launch_profile

METHODS: dict[str, type[ForecastMethod]] = {
    cls.name: cls for cls in (SeasonalNaive, ETS, AutoArima, Croston, SBA, TSB, ProfileScaled)
}

__all__ = [
    "DEFAULT_LEVELS",
    "ETS",
    "METHODS",
    "SBA",
    "TSB",
    "AutoArima",
    "Croston",
    "Forecast",
    "ForecastMethod",
    "ProfileScaled",
    "SeasonalNaive",
    "as_profile",
    "count_intervals",
    "launch_profile",
    "normal_intervals",
    "ses_levels",
]
