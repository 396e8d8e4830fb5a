from django.apps import AppConfig


class PurchasingConfig(AppConfig):
    name = "purchasing"
    verbose_name = "Suppliers and purchase orders"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Purchase orders wait for approval (see purchasing.approval_subject).
        from config.dashboard import Panel, register
        from purchasing.approval_subject import register_subject

        register_subject()
        register(
            Panel(
                key="purchase_orders",
                title="Purchase orders",
                template="purchasing/_dashboard_panel.html",
                permission="purchasing.view",
                context=dashboard_context,
                order=30,
            )
        )


def dashboard_context(user) -> dict | None:
    """Overdue and waiting POs (one query); hidden when nothing needs a look."""
    from django.db.models import Count, Q

    from purchasing.models import POState, PurchaseOrder
    from purchasing.services import brand_today

    today = brand_today()
    counts = PurchaseOrder.objects.aggregate(
        overdue=Count(
            "pk",
            filter=Q(state__in=[POState.SENT, POState.PARTIALLY_RECEIVED], expected_on__lt=today),
        ),
        waiting=Count("pk", filter=Q(state=POState.PENDING_APPROVAL)),
        drafts=Count("pk", filter=Q(state=POState.DRAFT)),
    )
    if not any(counts.values()):
        return None
    return counts
