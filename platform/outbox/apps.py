from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class OutboxConfig(AppConfig):
    name = "outbox"
    verbose_name = "Outbox"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Every process (web, worker, beat, manage.py) must know the same topics and event
        # subscriptions: the web process decides what to enqueue, workers consume it. Apps
        # register theirs in `<app>/handlers.py`, imported here.
        autodiscover_modules("handlers")
