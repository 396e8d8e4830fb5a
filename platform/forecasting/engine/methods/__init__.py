"""Forecasting methods sharing the `ForecastMethod` interface, registered by name."""

from __future__ import annotations

from .arima import AutoArima
from .base import DEFAULT_LEVELS, Forecast, ForecastMethod, count_intervals, normal_intervals
from .combo import Combination
from .croston import ADIDA, SBA, TSB, Croston, ses_levels
from .ets import ETS
from .naive import Naive, SeasonalNaive
from .profile import ProfileScaled, as_profile, launch_profile

METHODS: dict[str, type[ForecastMethod]] = {
    cls.name: cls
    for cls in (
        SeasonalNaive,
        Naive,
        ETS,
        AutoArima,
        Croston,
        SBA,
        TSB,
        ADIDA,
        ProfileScaled,
        Combination,
    )
}

__all__ = [
    "ADIDA",
    "DEFAULT_LEVELS",
    "ETS",
    "METHODS",
    "SBA",
    "TSB",
    "AutoArima",
    "Combination",
    "Croston",
    "Forecast",
    "ForecastMethod",
    "Naive",
    "ProfileScaled",
    "SeasonalNaive",
    "as_profile",
    "count_intervals",
    "launch_profile",
    "normal_intervals",
    "ses_levels",
]
