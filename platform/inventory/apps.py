from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "inventory"
    verbose_name = "Warehouses and stock"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Large stock adjustments wait for approval (see inventory.approval_subject).
        from inventory.approval_subject import register_subject

        register_subject()
