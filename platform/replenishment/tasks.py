"""Celery tasks of the replenishment app (thin: services do the work)."""

from __future__ import annotations

from celery import shared_task

# Web processes never import the Celery app otherwise, and a shared task published
# before it is loaded goes to Celery's default app (no broker): load Keel's first.
import config.celery  # noqa: F401
from replenishment import services
from workers.base import BrandTask

# Brand-local hour of the daily plan: after forecasting's nightly run (02:00) has had
# three hours, before buyers start their day.
PLAN_HOUR = 5


@shared_task(
    base=BrandTask, name="replenishment.daily_plan", time_limit=30 * 60, soft_time_limit=28 * 60
)
def daily_plan(force: bool = False) -> dict | None:
    """Fanned out hourly by beat; plans once a day per brand at PLAN_HOUR (brand time).

    Running twice in that hour is harmless: the plan replaces the day's open rows, and
    drafting skips recommendations already acted on.
    """
    if not force and services.brand_now().hour != PLAN_HOUR:
        return None
    result = services.plan()
    return {
        "day": str(result.day),
        "recommendations": result.recommendations,
        "by_state": result.by_state,
        "transfers": result.transfers,
        "alerts": result.alerts,
        "drafted": result.drafted,
    }
