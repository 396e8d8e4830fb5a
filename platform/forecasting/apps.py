from django.apps import AppConfig


class ForecastingConfig(AppConfig):
    name = "forecasting"
    verbose_name = "Demand history and forecasts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from config.dashboard import Panel, register

        register(
            Panel(
                key="forecast_run",
                title="Forecasts",
                template="forecasting/_dashboard_panel.html",
                permission="forecasting.view",
                context=dashboard_context,
                order=30,
            )
        )


def dashboard_context(user) -> dict | None:
    """The last run while it runs or when SKUs failed in it (one query); else hidden."""
    from forecasting.services import last_run

    run = last_run()
    if run is None or not (run.is_open or run.failed or run.state == "failed"):
        return None
    return {"run": run}
