"""The Celery app. Tenant context travels in the `_schema_name` task header
(tenant-schemas-celery); see workers.base for the guard that refuses tasks without it."""

from __future__ import annotations

import os

from celery import Task
from kombu import Queue
from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = CeleryApp("keel")
app.config_from_object("django.conf:settings", namespace="CELERY")

from django.conf import settings  # noqa: E402  (settings module is set above)

# Without its own routing key every queue is bound to the default exchange with key
# "default", so a publish by exchange/routing key would be copied into all of them.
app.conf.task_queues = [Queue(name, routing_key=name) for name in settings.CELERY_TASK_QUEUES_NAMES]
app.conf.task_routes = {
    "sync.*": {"queue": "sync"},
    "forecasting.*": {"queue": "forecast"},
    "monitor.*": {"queue": "monitor"},
}
app.conf.broker_transport_options = {
    "visibility_timeout": settings.CELERY_BROKER_VISIBILITY_TIMEOUT,
}
app.conf.beat_scheduler = "workers.beat:LeaderElectedScheduler"
app.conf.beat_schedule = {
    "accounts-cleanup": {
        "task": "workers.fan_out",
        "schedule": 60 * 60,
        "args": ("accounts.cleanup_expired",),
    },
    "inventory-expire-reservations": {
        "task": "workers.fan_out",
        "schedule": 60,
        "args": ("inventory.expire_reservations",),
    },
    # Expiry, escalation, daily digests and lost webhook publishes of approval requests.
    "approvals-sweep": {
        "task": "workers.fan_out",
        "schedule": 5 * 60,
        "args": ("approvals.sweep",),
    },
    # Outbox relay and webhook retries: idempotent and cheap when idle, so they go through
    # outbox.fan_out, which skips workers.fan_out's per-tick dedupe claims (see there).
    "outbox-relay": {
        "task": "outbox.fan_out",
        "schedule": settings.KEEL_OUTBOX_RELAY_SECONDS,
        "args": ("outbox.relay",),
    },
    "webhooks-send-due": {
        "task": "outbox.fan_out",
        "schedule": 10,
        "args": ("webhooks.send_due",),
    },
    "outbox-cleanup": {
        "task": "workers.fan_out",
        "schedule": 60 * 60,
        "args": ("outbox.cleanup",),
    },
    "webhooks-cleanup": {
        "task": "workers.fan_out",
        "schedule": 60 * 60,
        "args": ("webhooks.cleanup",),
    },
    # Connections: queue due polls, re-send lost sync work, push availability.
    "sync-poll-connections": {
        "task": "workers.fan_out",
        "schedule": 60,
        "args": ("sync.poll_connections",),
    },
    # Replenishment: hourly tick, each brand plans once a day at 05:00 brand time.
    "replenishment-daily-plan": {
        "task": "workers.fan_out",
        "schedule": 60 * 60,
        "args": ("replenishment.daily_plan",),
        "kwargs": {"queue": "forecast"},
    },
    # Forecasting: hourly tick, each brand rebuilds demand, re-segments and starts its
    # forecast run once a day from 02:00 brand time (forecasting.services.NIGHTLY_HOUR).
    "forecasting-nightly": {
        "task": "workers.fan_out",
        "schedule": 60 * 60,
        "args": ("forecasting.nightly",),
        "kwargs": {"queue": "forecast"},
    },
    # Purchasing: hourly tick, each brand emails its supplier scorecards on the first of
    # the month from 08:00 brand time, once (purchasing.digest).
    "purchasing-supplier-digest": {
        "task": "workers.fan_out",
        "schedule": 60 * 60,
        "args": ("purchasing.supplier_digest",),
        "kwargs": {"queue": "default"},
    },
    # Shipping: exception monitor (no scan, late, carrier exceptions, escalation) on the
    # monitor queue; carrier tracking polls; label purchases a crash left half-done.
    "shipping-monitor-exceptions": {
        "task": "workers.fan_out",
        "schedule": 15 * 60,
        "args": ("monitor.shipping_exceptions",),
        "kwargs": {"queue": "monitor"},
    },
    "shipping-poll-tracking": {
        "task": "workers.fan_out",
        "schedule": 30 * 60,
        "args": ("shipping.poll_tracking",),
    },
    "shipping-minutely": {
        "task": "workers.fan_out",
        "schedule": 60,
        "args": ("shipping.minutely",),
    },
    "tenants-refill-pool": {
        "task": "tenants.refill_schema_pool",
        "schedule": 5 * 60,
    },
}
# Every installed app's tasks module, so a new app's tasks need no registration here.
app.autodiscover_tasks()


# Head-room for broker round trips and clock skew on top of the worst case below.
VISIBILITY_MARGIN_SECONDS = 300


def longest_countdown(task: Task) -> float:
    """The longest a task can sit reserved before it starts: its autoretry countdown."""
    if not getattr(task, "autoretry_for", ()):
        return 0
    countdown = (getattr(task, "retry_kwargs", None) or {}).get("countdown")
    if countdown is not None:
        return countdown
    if getattr(task, "retry_backoff", False):
        return task.retry_backoff_max
    return task.default_retry_delay


def check_visibility(visibility_timeout: float | None = None) -> list[str]:
    """Tasks that Redis could redeliver while they still wait or run, one line each.

    With acks_late a reserved task stays unacknowledged through its retry countdown and
    its run; once that outlasts the visibility timeout Redis hands it to another worker
    and the task runs twice (celery/kombu#337).
    """
    if visibility_timeout is None:
        visibility_timeout = app.conf.broker_transport_options["visibility_timeout"]
    # Autodiscovery is lazy: outside a worker or beat the registry lacks our tasks until
    # the loader runs the discovery they run at start-up.
    app.loader.import_default_modules()
    problems = []
    for name, task in sorted(app.tasks.items()):
        if name.startswith("celery."):
            continue
        hard_limit = task.time_limit or app.conf.task_time_limit
        if not hard_limit:
            problems.append(f"{name}: no hard time limit, so no visibility timeout is enough")
            continue
        needed = longest_countdown(task) + hard_limit + VISIBILITY_MARGIN_SECONDS
        if visibility_timeout < needed:
            problems.append(
                f"{name}: visibility_timeout {visibility_timeout}s < {needed}s "
                f"(countdown {longest_countdown(task)}s + time limit {hard_limit}s "
                f"+ margin {VISIBILITY_MARGIN_SECONDS}s)"
            )
    return problems
