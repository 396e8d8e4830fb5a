"""Outbox workers: the relay (per brand), the consumer task and the scheduler-side fan-out."""

from __future__ import annotations

from celery import shared_task
from django_tenants.utils import schema_context

from outbox import services
from tenants.models import Brand
from workers.base import BrandTask


@shared_task(base=BrandTask, name=services.RELAY_TASK)
def relay() -> dict[str, int | str | bool]:
    """Publish this brand's due outbox messages (beat every few seconds, and after commits)."""
    result = services.relay()
    return {
        "published": result.published,
        "republished": result.republished,
        "stock_events": result.stock_events,
        "broker_error": result.broker_error,
        "skipped": result.skipped,
    }


@shared_task(base=BrandTask, name=services.CONSUME_TASK)
def consume(message_id: int) -> str:
    """Run one message's handler; a duplicate or re-published task is a no-op."""
    return services.consume(message_id)


@shared_task(base=BrandTask, name="outbox.cleanup")
def cleanup() -> int:
    """Delete consumed messages past retention (hourly fan-out)."""
    return services.cleanup()


@shared_task(name="outbox.fan_out", acks_late=True)
def fan_out(task_name: str, queue: str | None = None) -> int:
    """Publish `task_name` once per brand, in that brand's schema context.

    workers.fan_out does the same but claims every (task, tick, brand) in the cache for
    24 h so a duplicate tick is absorbed; at a tick every few seconds that is ~17,000 keys
    per brand per day. The tasks sent through here (the relay, webhook retries) are
    idempotent and cheap when there is nothing to do, so a duplicate tick needs no claim.
    """
    from config.celery import app

    sent = 0
    for schema_name in Brand.objects.brands().values_list("schema_name", flat=True):
        with schema_context(schema_name):
            app.send_task(task_name, queue=queue)
        sent += 1
    return sent
