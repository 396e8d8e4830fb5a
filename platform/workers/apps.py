from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "Background workers"

    def ready(self) -> None:
        # Web processes publish tasks too (`.delay()` from a request): load our Celery app
        # so shared tasks bind to it and its broker, not to Celery's unconfigured default.
        import config.celery  # noqa: F401
