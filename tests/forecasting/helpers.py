"""Helpers for the forecasting app's tests: demand rows and forecasts written directly."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
from django.utils import timezone

from forecasting.models import DemandDay, SkuForecast, StockoutDay


def put_demand(sku, start: date, units, *, channel: str = "shop", warehouse=None) -> None:
    """One DemandDay row per day from `start` with the given units (zeros skipped)."""
    DemandDay.objects.bulk_create(
        [
            DemandDay(
                sku=sku,
                channel=channel,
                warehouse=warehouse,
                day=start + timedelta(days=i),
                units=int(u),
            )
            for i, u in enumerate(units)
            if u
        ]
    )


def put_stockouts(sku, days) -> None:
    StockoutDay.objects.bulk_create([StockoutDay(sku=sku, day=d) for d in days])


def put_forecast(sku, *, start: date, mean, spread: float = 1.0, method="ets") -> SkuForecast:
    mean = [float(v) for v in mean]
    half95 = 1.959963984540054 * spread
    half80 = 1.2815515655446004 * spread
    return SkuForecast.objects.create(
        sku=sku,
        generated_at=timezone.now(),
        start=start,
        horizon=len(mean),
        method=method,
        demand_class="smooth",
        mean=mean,
        lo80=[max(0.0, v - half80) for v in mean],
        hi80=[v + half80 for v in mean],
        lo95=[max(0.0, v - half95) for v in mean],
        hi95=[v + half95 for v in mean],
        scores={"seasonal_naive": 1.0, method: 0.8},
        daily_mean=float(np.mean(mean)),
        daily_std=spread,
    )


def smooth_history(days: int, *, level: float = 20.0, seed: int = 1) -> np.ndarray:
    """Weekly-seasonal Poisson demand, reproducible."""
    rng = np.random.default_rng(seed)
    weekday = np.array([1.0, 0.9, 0.9, 1.0, 1.2, 1.4, 0.6])
    return rng.poisson(level * weekday[np.arange(days) % 7])


def intermittent_history(days: int, *, rate: float = 0.1, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.where(rng.random(days) < rate, rng.integers(1, 4, days), 0)
