from django.apps import AppConfig


class ShippingConfig(AppConfig):
    name = "shipping"
    verbose_name = "Shipping, carriers and freight"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from config.dashboard import Panel, register
        from shipping import approval_subject, dashboard

        approval_subject.register_subject()
        register(
            Panel(
                key="shipping_exceptions",
                title="Shipment exceptions",
                template="shipping/_dashboard_panel.html",
                permission="shipping.view",
                context=dashboard.panel_context,
                order=30,
            )
        )
