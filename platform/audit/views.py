from datetime import datetime, time, timedelta

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views import View

from accounts.views import RoleRequiredMixin
from audit.models import ActivityEntry, ActorType


def _day(value: str, *, end: bool = False):
    try:
        day = datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        return None
    moment = datetime.combine(day, time.min)
    if end:
        moment = moment + timedelta(days=1)
    return timezone.make_aware(moment, timezone.get_current_timezone())


def _actors() -> list[tuple[str, str]]:
    """("<type>:<id>", label) for every person and key that appears in the log."""
    rows = (
        ActivityEntry.objects.exclude(actor_id="")
        .order_by("actor_type", "actor_id")
        .values_list("actor_type", "actor_id", "actor_label")
        .distinct("actor_type", "actor_id")
    )
    return sorted(
        ((f"{kind}:{ident}", label or f"{kind} {ident}") for kind, ident, label in rows),
        key=lambda item: item[1].lower(),
    )


class ActivityView(RoleRequiredMixin, View):
    permission = "activity.view"
    template_name = "audit/activity.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        params = request.GET
        filters = {
            "actor_type": params.get("actor_type", ""),
            "actor": params.get("actor", ""),
            "action": params.get("action", "").strip(),
            "object_type": params.get("object_type", ""),
            "since": params.get("since", ""),
            "until": params.get("until", ""),
        }
        # "actor" names one person or key as "<actor_type>:<id>"; it narrows actor_type.
        actor_type, _, actor_id = filters["actor"].partition(":")
        if actor_type not in ActorType.values or not actor_id:
            actor_type, actor_id = filters["actor_type"], ""
        entries = ActivityEntry.objects.search(
            actor_type=actor_type if actor_type in ActorType.values else "",
            actor_id=actor_id,
            action=filters["action"],
            object_type=filters["object_type"],
            since=_day(filters["since"]),
            until=_day(filters["until"], end=True),
        )
        page = Paginator(entries, 50).get_page(params.get("page"))
        query = params.copy()
        query.pop("page", None)
        context = {
            "page": page,
            "filters": filters,
            "actor_types": ActorType.choices,
            "actors": _actors(),
            "object_types": ActivityEntry.objects.order_by()
            .values_list("object_type", flat=True)
            .distinct(),
            "querystring": query.urlencode(),
        }
        template = self.template_name + ("#results" if request.htmx else "")
        return render(request, template, context)
