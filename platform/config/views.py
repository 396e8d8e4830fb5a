"""Brand-level pages that belong to no single app: dashboard and worker health."""

from datetime import datetime, time, timedelta

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, OuterRef, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from accounts.models import ApiKey, Invitation, User
from accounts.roles import has_permission
from audit.models import ActivityEntry
from catalog.models import SKU, Lifecycle, UnmappedListing, UnmappedStatus
from config.dashboard import panels_for
from inventory.models import StockBalance, StockStatus, Warehouse
from orders.models import DecisionLayer, HoldReason, Order, OrderStatus, RoutingDecision


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
    tiles += _order_tiles(request.user)
    recent = (
        ActivityEntry.objects.all()[:10] if has_permission(request.user, "activity.view") else []
    )
    return render(
        request,
        "dashboard.html",
        {"tiles": tiles, "recent": recent, "panels": panels_for(request.user)},
    )


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


def _order_tiles(user: User) -> list[dict]:
    if not has_permission(user, "orders.view"):
        return []
    # Days are the brand's (the middleware activated its timezone).
    today = datetime.combine(timezone.localdate(), time.min, tzinfo=timezone.get_current_timezone())
    held_url = "orders:review" if has_permission(user, "orders.manage") else "orders:list"
    tiles = [
        {
            "label": "Orders today",
            "value": Order.objects.filter(
                placed_at__gte=today, placed_at__lt=today + timedelta(days=1)
            ).count(),
            "url_name": "orders:list",
        }
    ]
    held = dict(
        Order.objects.needs_review()
        .order_by()
        .values_list("hold_reason")
        .annotate(n=Count("id"))
        .values_list("hold_reason", "n")
    )
    tiles += [
        {"label": f"Held: {label[0].lower()}{label[1:]}", "value": n, "url_name": held_url}
        for label, n in sorted(
            ((HoldReason(value).label, n) for value, n in held.items()), key=lambda t: -t[1]
        )
    ] or [{"label": "Held orders", "value": 0, "url_name": held_url}]
    # Share of the week's orders that rules or scoring settled without a person.
    now = timezone.now()
    week = Order.objects.filter(placed_at__gte=now - timedelta(days=7), placed_at__lte=now).exclude(
        status=OrderStatus.CANCELLED
    )
    total = week.count()
    automatic = week.filter(
        Exists(
            RoutingDecision.objects.filter(
                order=OuterRef("pk"), layer__in=[DecisionLayer.RULES, DecisionLayer.SCORING]
            )
        )
    ).count()
    tiles.append(
        {
            "label": "Routed automatically, 7 days",
            "value": f"{round(100 * automatic / total)}%" if total else "—",
            "url_name": "orders:list",
        }
    )
    return tiles


@login_required
def worker_health(request: HttpRequest) -> HttpResponse:
    from workers.health import snapshot

    _require(request, "workers.view")
    return render(request, "workers/health.html", {"health": snapshot(timeout=1.0)})
