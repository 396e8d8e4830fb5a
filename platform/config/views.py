"""Brand-level pages that belong to no single app: dashboard and worker health."""

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from accounts.models import ApiKey, Invitation, User
from accounts.roles import has_permission
from audit.models import ActivityEntry
from catalog.models import SKU, Lifecycle, UnmappedListing, UnmappedStatus
from inventory.models import StockBalance, StockStatus, Warehouse


def _require(request: HttpRequest, permission: str) -> None:
    if not has_permission(request.user, permission):
        raise PermissionDenied("Your role does not allow this.")


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    _require(request, "dashboard.view")
    week_ago = timezone.now() - timedelta(days=7)
    tiles = [
        {
            "label": "Active teammates",
            "value": User.objects.filter(is_active=True).count(),
            "url_name": "accounts:team",
        },
        {
            "label": "Pending invitations",
            "value": Invitation.objects.pending().count(),
            "url_name": "accounts:team",
        },
        {
            "label": "Active API keys",
            "value": ApiKey.objects.active().count(),
            "url_name": "accounts:api_keys",
        },
        {
            "label": "Activity, last 7 days",
            "value": ActivityEntry.objects.filter(created_at__gte=week_ago).count(),
            "url_name": "audit:activity",
        },
    ]
    tiles += _stock_tiles(request.user)
    recent = (
        ActivityEntry.objects.all()[:10] if has_permission(request.user, "activity.view") else []
    )
    return render(request, "dashboard.html", {"tiles": tiles, "recent": recent})


def _stock_tiles(user: User) -> list[dict]:
    tiles = []
    if has_permission(user, "catalog.view"):
        tiles += [
            {
                "label": "Active SKUs",
                "value": SKU.objects.filter(status=Lifecycle.ACTIVE).count(),
                "url_name": "catalog:sku_list",
            },
            {
                "label": "Unmapped listings",
                "value": UnmappedListing.objects.filter(status=UnmappedStatus.OPEN).count(),
                "url_name": "catalog:unmapped",
            },
        ]
    if has_permission(user, "stock.view"):
        sellable = StockBalance.objects.filter(
            status=StockStatus.SELLABLE, warehouse__is_active=True
        ).aggregate(units=Sum("quantity"))["units"]
        tiles += [
            {
                "label": "Active warehouses",
                "value": Warehouse.objects.filter(is_active=True).count(),
                "url_name": "inventory:warehouse_list",
            },
            {"label": "Sellable units", "value": sellable or 0, "url_name": "inventory:stock"},
        ]
    return tiles


@login_required
def worker_health(request: HttpRequest) -> HttpResponse:
    from workers.health import snapshot

    _require(request, "workers.view")
    return render(request, "workers/health.html", {"health": snapshot(timeout=1.0)})
