"""Sync tasks: thin wrappers taking ids; the rules are in sync.services.

All run on the `sync` queue (config.celery routes `sync.*`), are BrandTasks (acks_late,
requeued if their worker dies) and safe to run twice: a finished run, a processed
receipt or an already-published quantity is left alone.
"""

from __future__ import annotations

import os
import socket

from celery import shared_task

from sync import services
from workers.base import BrandTask


def _worker() -> str:
    # Which process holds the run, for the run page and for finding a stuck worker.
    return f"{socket.gethostname()}:{os.getpid()}"


@shared_task(base=BrandTask, name="sync.poll_connections")
def poll_connections() -> dict[str, int]:
    """Per brand, every minute (workers.fan_out): queue the polls that are due."""
    return services.poll_connections()


@shared_task(base=BrandTask, bind=True, name=services.RUN_TASK)
def run_sync(self: BrandTask, run_id: int) -> str:
    outcome = services.execute_run(run_id, worker=_worker())
    if outcome.retry:
        # The countdown is the vendor's Retry-After when it sent one (capped by the
        # service at BrandTask.retry_backoff_max); the service counts and bounds retries.
        raise self.retry(countdown=outcome.countdown, max_retries=None)
    return "done"


@shared_task(base=BrandTask, name=services.WEBHOOK_TASK)
def process_webhook(receipt_id: int) -> str:
    return services.process_receipt(receipt_id)


@shared_task(base=BrandTask, bind=True, name=services.AVAILABLE_TASK)
def push_available(self: BrandTask, connection_id: int) -> str:
    outcome = services.push_available(connection_id)
    if outcome.retry:
        raise self.retry(countdown=outcome.countdown, max_retries=services.MAX_RUN_RETRIES)
    return "done"
