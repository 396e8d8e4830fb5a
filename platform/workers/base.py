"""Tenant-aware task base: a brand task without a brand refuses to run.

tenant-schemas-celery switches the connection to the schema named in the task's
`_schema_name` header before the task runs, and silently uses `public` when the header
is missing. For brand work that default is a bug waiting to write rows into the wrong
schema, so BrandTask raises TenantContextMissing instead.
"""

from __future__ import annotations

from django.db import OperationalError, connection
from redis.exceptions import RedisError
from tenant_schemas_celery.app import get_schema_name_from_task
from tenant_schemas_celery.task import TenantTask

from audit.context import Actor, reset_actor, set_actor
from audit.models import ActorType

PUBLIC = "public"


class TenantContextMissing(RuntimeError):
    """A brand task arrived without a brand schema in its headers."""


class BrandTask(TenantTask):
    abstract = True
    acks_late = True
    reject_on_worker_lost = True
    # Transient infrastructure failures only; business errors must surface, not loop.
    autoretry_for = (ConnectionError, TimeoutError, RedisError, OperationalError)
    retry_backoff = True
    retry_backoff_max = 600
    retry_jitter = True
    max_retries = 5

    def __call__(self, *args, **kwargs):
        schema = get_schema_name_from_task(self, kwargs)
        if not schema or schema == PUBLIC or connection.schema_name != schema:
            raise TenantContextMissing(
                f"Task {self.name} needs a brand: publish it inside the brand's schema "
                f"context (got {schema!r})."
            )
        token = set_actor(Actor(ActorType.SYSTEM, self.name, f"task {self.name}"))
        try:
            return super().__call__(*args, **kwargs)
        finally:
            reset_actor(token)
