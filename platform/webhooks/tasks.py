from celery import shared_task

from webhooks import services
from workers.base import BrandTask


@shared_task(base=BrandTask, name=services.DELIVER_TASK)
def deliver(delivery_id: int, attempt: int) -> str:
    """Attempt number `attempt` of a delivery; a no-op when that attempt already happened."""
    delivery = services.attempt_delivery(delivery_id, attempt)
    return delivery.status if delivery is not None else "busy"


@shared_task(base=BrandTask, name="webhooks.send_due")
def send_due() -> int:
    """Queue the brand's due retries (beat, every few seconds)."""
    return services.send_due()


@shared_task(base=BrandTask, name="webhooks.cleanup")
def cleanup() -> int:
    """Delete finished deliveries past retention (hourly fan-out)."""
    return services.cleanup()
