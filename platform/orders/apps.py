from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"
    verbose_name = "Orders and routing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # When a person maps a listing, orders held for it are routed again.
        from catalog.services import REPROCESSORS
        from orders.services import reprocess_held_order

        REPROCESSORS["order"] = reprocess_held_order
