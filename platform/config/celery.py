"""The Celery app. Tenant context travels in the `_schema_name` task header
(tenant-schemas-celery); see workers.base for the guard that refuses tasks without it."""

import os

from kombu import Queue
from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = CeleryApp("keel")
app.config_from_object("django.conf:settings", namespace="CELERY")

from django.conf import settings  # noqa: E402  (settings module is set above)

app.conf.task_queues = [Queue(name) for name in settings.CELERY_TASK_QUEUES_NAMES]
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
}
app.autodiscover_tasks(["accounts", "workers"])
