"""Test-only Celery tasks, loaded into a real worker with `-I tests.workers.celery_tasks`.

They write through the same service the product uses (audit.services.record) so a row
lands in whatever schema the worker's connection is in; the test then looks for it in
every schema. The worker has no result backend, so failures are reported through Redis.
"""

from __future__ import annotations

import json

import redis
from celery import shared_task
from celery.signals import task_failure
from django.conf import settings
from django.db import connection

from audit.services import record
from workers.base import BrandTask

RECORD = "tests.workers.record_schema"
RECORD_FANOUT = "tests.workers.record_fanout"
FLAKY = "tests.workers.flaky_record"
FANOUT_ACTION = "test.fanout"
FAILURES_KEY = "keel:test:task_failures"


@shared_task(base=BrandTask, name=RECORD)
def record_schema(action: str, marker: str, expected: str) -> str:
    record(
        action,
        changes={"marker": marker, "expected": expected, "seen": connection.schema_name},
    )
    return connection.schema_name


@shared_task(base=BrandTask, name=RECORD_FANOUT)
def record_fanout() -> str:
    # fan_out publishes without arguments, so the row itself says where it ran.
    record(FANOUT_ACTION, changes={"seen": connection.schema_name})
    return connection.schema_name


@shared_task(base=BrandTask, name=FLAKY, bind=True)
def flaky_record(self, action: str, marker: str) -> str:
    # ConnectionError is in BrandTask.autoretry_for: the first attempt goes back to the
    # broker as a retry, which must still carry the brand.
    if self.request.retries == 0:
        raise ConnectionError("first attempt fails on purpose")
    record(
        action,
        changes={
            "marker": marker,
            "seen": connection.schema_name,
            "retries": self.request.retries,
        },
    )
    return connection.schema_name


def _report_failure(sender=None, task_id=None, exception=None, **kwargs) -> None:
    if getattr(sender, "name", None) not in (RECORD, RECORD_FANOUT, FLAKY):
        return
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.rpush(
        FAILURES_KEY,
        json.dumps(
            {
                "task_id": task_id,
                "exception": type(exception).__name__,
                "message": str(exception),
                "schema": connection.schema_name,
            }
        ),
    )


# Connected without `sender`: shared_task hands out proxies, not the registered objects.
task_failure.connect(_report_failure, weak=False)
