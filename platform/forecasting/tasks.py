"""Celery tasks of the forecasting app (forecast queue; thin: services do the work)."""

from __future__ import annotations

from celery import shared_task

from forecasting import services
from workers.base import BrandTask


@shared_task(
    base=BrandTask, name="forecasting.nightly", time_limit=30 * 60, soft_time_limit=28 * 60
)
def nightly_task() -> int | None:
    """Fanned out hourly by beat; runs once a day per brand from its night on.

    "From" rather than "at" the hour: a daylight-saving jump can skip the hour, and a
    night whose run failed to start is retried the next hour (nightly() runs once a day).
    """
    if services.brand_now().hour < services.NIGHTLY_HOUR:
        return None
    run = services.nightly()
    return run.pk if run is not None else None


@shared_task(base=BrandTask, name="forecasting.start_run")
def start_run_task(kind: str = "manual") -> int:
    return services.run_forecasts(kind=kind).pk


@shared_task(base=BrandTask, name="forecasting.forecast_chunk")
def forecast_chunk(run_id: int, index: int) -> bool:
    """Forecast one chunk of a run; a redelivered chunk is a no-op."""
    return services.run_chunk(run_id, index)
