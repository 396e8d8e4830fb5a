from django.apps import AppConfig


class ReplenishmentConfig(AppConfig):
    name = "replenishment"
    verbose_name = "Replenishment"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from config.dashboard import Panel, register

        register(
            Panel(
                key="replenishment_exceptions",
                title="Replenishment exceptions",
                template="replenishment/_dashboard_panel.html",
                permission="forecasting.view",
                context=dashboard_context,
                order=20,
            )
        )


def dashboard_context(user) -> dict | None:
    """The newest plan's stored exceptions (two queries); hidden when there are none."""
    from replenishment.services import latest_alerts

    day, alerts, count = latest_alerts(limit=8)
    if not alerts:
        return None
    return {"day": day, "alerts": alerts, "count": count}
