from django.apps import AppConfig


class PurchasingConfig(AppConfig):
    name = "purchasing"
    verbose_name = "Suppliers and purchase orders"
    default_auto_field = "django.db.models.BigAutoField"
