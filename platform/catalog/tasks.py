"""Celery tasks for CSV imports: they take a job id and call catalog.imports.

Both are safe to run twice (acks_late redelivery): validation re-claims only a job still
uploaded/validating, and the apply locks the job row and leaves once it is applied.
"""

from __future__ import annotations

from celery import shared_task

from catalog import imports
from workers.base import BrandTask


def _retrying(task: BrandTask, exc: Exception) -> bool:
    return isinstance(exc, task.autoretry_for) and task.request.retries < task.max_retries


@shared_task(base=BrandTask, bind=True, name="catalog.validate_import")
def validate_import(self: BrandTask, job_id: int) -> str:
    try:
        return imports.validate_job(job_id).status
    except Exception as exc:
        # A retry will run again; anything else ends the job so the page stops waiting.
        if not _retrying(self, exc):
            imports.fail_job(job_id, exc)
        raise


@shared_task(base=BrandTask, bind=True, name="catalog.apply_import")
def apply_import(self: BrandTask, job_id: int) -> str:
    try:
        return imports.apply_job(job_id).status
    except Exception as exc:
        if not _retrying(self, exc):
            imports.fail_job(job_id, exc)
        raise
