from celery import shared_task

from tenants.services import refill_pool


@shared_task(name="tenants.refill_schema_pool", acks_late=True)
def refill_schema_pool() -> int:
    """Runs in the public schema: top up the pool of pre-cloned brand schemas."""
    return refill_pool()
