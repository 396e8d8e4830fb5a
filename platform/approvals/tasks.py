"""Approvals tasks: thin wrappers that take ids and call approvals.services.

All are brand tasks (they refuse to run without a brand) and safe to run twice: the sweep
re-checks each request under its lock, `notify` only reads, and a delivered webhook is
never sent again.
"""

from __future__ import annotations

from celery import shared_task

# Web processes never import the Celery app otherwise, and a shared task published
# before it is loaded goes to Celery's default app (no broker): load Keel's first.
import config.celery  # noqa: F401
from approvals import services
from workers.base import BrandTask


@shared_task(base=BrandTask, name="approvals.sweep")
def sweep() -> dict[str, int]:
    """Expire, escalate, send due digests, re-publish lost webhook tasks (every 5 min)."""
    return services.sweep()


@shared_task(base=BrandTask, name="approvals.notify")
def notify(request_id: int, event: str) -> int:
    return services.notify(request_id, event)


@shared_task(
    base=BrandTask,
    bind=True,
    name="approvals.deliver_webhook",
    autoretry_for=(*BrandTask.autoretry_for, services.WebhookFailed),
    retry_backoff=5,
    retry_backoff_max=600,
    max_retries=8,
)
def deliver_webhook(self: BrandTask, delivery_id: int) -> bool:
    """POST one delivery; retried with backoff (5 s … 10 min, ~20 min in all), then
    marked failed and logged."""
    try:
        return services.deliver_webhook(delivery_id)
    except services.WebhookFailed:
        if self.request.retries >= self.max_retries:
            services.give_up_webhook(delivery_id)
            return False
        raise
