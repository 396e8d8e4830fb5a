from celery import shared_task

from inventory.services import expire_reservations
from workers.base import BrandTask


@shared_task(base=BrandTask, name="inventory.expire_reservations")
def expire_reservations_task() -> int:
    """Release a brand's reservations whose expiry passed (fanned out every minute)."""
    return expire_reservations()
