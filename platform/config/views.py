"""Brand-level pages that belong to no single app: dashboard and worker health."""

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from accounts.models import ApiKey, Invitation, User
from accounts.roles import has_permission
from audit.models import ActivityEntry


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
    recent = (
        ActivityEntry.objects.all()[:10] if has_permission(request.user, "activity.view") else []
    )
    return render(request, "dashboard.html", {"tiles": tiles, "recent": recent})


@login_required
def worker_health(request: HttpRequest) -> HttpResponse:
    from workers.health import snapshot

    _require(request, "workers.view")
    return render(request, "workers/health.html", {"health": snapshot(timeout=1.0)})
