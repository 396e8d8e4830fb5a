"""Scheduler-side tasks that run in the public schema and fan work out to brands."""

from __future__ import annotations

from celery import shared_task
from django.core.cache import cache
from django_tenants.utils import schema_context

from tenants.models import Brand

FAN_OUT_DEDUP_SECONDS = 55


@shared_task(name="workers.fan_out", acks_late=True)
def fan_out(task_name: str, window: str | None = None, queue: str | None = None) -> int:
    """Publish `task_name` once per brand, each inside that brand's schema context.

    `window` (the beat tick, e.g. "2026-11-22T23:00") makes a repeated fan-out for the
    same tick a no-op, so a second scheduler or a redelivered message does not
    double-enqueue brand work.
    """
    from config.celery import app

    sent = 0
    for schema_name in Brand.objects.brands().values_list("schema_name", flat=True):
        # Claimed per brand, not once for the whole run: a fan-out cut short (worker
        # killed mid-loop) is redelivered under acks_late and must still reach the
        # brands it had not got to, where a single claim would skip them all.
        claim = f"fanout:{task_name}:{window}:{schema_name}"
        if window is not None and not cache.add(claim, 1, 24 * 3600):
            continue
        with schema_context(schema_name):
            app.send_task(task_name, queue=queue)
        sent += 1
    return sent
