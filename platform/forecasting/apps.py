from django.apps import AppConfig


class ForecastingConfig(AppConfig):
    name = "forecasting"
    verbose_name = "Demand history and forecasts"
    default_auto_field = "django.db.models.BigAutoField"
