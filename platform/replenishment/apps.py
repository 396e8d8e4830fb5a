from django.apps import AppConfig


class ReplenishmentConfig(AppConfig):
    name = "replenishment"
    verbose_name = "Replenishment"
    default_auto_field = "django.db.models.BigAutoField"
