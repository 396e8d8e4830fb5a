"""Purchasing tasks: thin brand tasks calling purchasing services."""

from __future__ import annotations

from celery import shared_task

# Web processes never import the Celery app otherwise, and a shared task published
# before it is loaded goes to Celery's default app (no broker): load Keel's first.
import config.celery  # noqa: F401
from purchasing import digest
from workers.base import BrandTask


@shared_task(base=BrandTask, name="purchasing.supplier_digest")
def supplier_digest() -> int:
    """The monthly supplier scorecard email, when due for this brand (ticked hourly)."""
    return digest.send_digest()
