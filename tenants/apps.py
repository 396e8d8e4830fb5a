from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Brands"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the pooler guard (brand isolation vs. transaction-mode poolers).
        import config.checks  # noqa: F401
