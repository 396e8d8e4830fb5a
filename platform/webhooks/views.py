"""Webhook pages: endpoints, the one-time secret, an endpoint's delivery log, a delivery.

A new or rotated signing secret is rendered in the response to that POST only (with
Cache-Control: no-store) and is never retrievable again, like API keys.
"""

from __future__ import annotations

from datetime import date

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Max, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views import View

from accounts.views import RoleRequiredMixin
from catalog.forms import apply_service_error
from outbox.events import EVENT_TYPES
from webhooks import services
from webhooks.forms import EndpointForm
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from webhooks.services import IssuedSecret

PAGE_SIZE = 50
PERMISSION = "webhooks.manage"


def _secret_page(request: HttpRequest, issued: IssuedSecret, *, created: bool) -> HttpResponse:
    response = render(
        request,
        "webhooks/secret.html",
        {"endpoint": issued.endpoint, "secret": issued.secret, "created": created},
    )
    response["Cache-Control"] = "no-store"
    return response


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


class EndpointListView(RoleRequiredMixin, View):
    permission = PERMISSION
    template_name = "webhooks/endpoints.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        endpoints = WebhookEndpoint.objects.annotate(
            retrying=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.PENDING)),
            failed=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.FAILED)),
            last_delivery=Max("deliveries__last_attempt_at"),
        ).order_by("id")
        return render(request, self.template_name, {"endpoints": endpoints})


class EndpointCreateView(RoleRequiredMixin, View):
    permission = PERMISSION
    template_name = "webhooks/endpoint_form.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, self.template_name, {"form": EndpointForm()})

    def post(self, request: HttpRequest) -> HttpResponse:
        form = EndpointForm(request.POST)
        if form.is_valid():
            try:
                issued = services.create_endpoint(actor=request.user, **form.cleaned_data)
            except ValidationError as exc:
                apply_service_error(form, exc)
            else:
                return _secret_page(request, issued, created=True)
        return render(request, self.template_name, {"form": form}, status=422)


class EndpointEditView(RoleRequiredMixin, View):
    permission = PERMISSION
    template_name = "webhooks/endpoint_form.html"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        endpoint = get_object_or_404(WebhookEndpoint, pk=pk)
        form = EndpointForm(
            initial={name: getattr(endpoint, name) for name in EndpointForm.base_fields}
        )
        return render(request, self.template_name, {"form": form, "endpoint": endpoint})

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        endpoint = get_object_or_404(WebhookEndpoint, pk=pk)
        form = EndpointForm(request.POST)
        if form.is_valid():
            try:
                services.update_endpoint(endpoint, **form.cleaned_data)
            except ValidationError as exc:
                apply_service_error(form, exc)
            else:
                messages.success(request, "Endpoint saved.")
                return redirect("webhooks:endpoint", pk=endpoint.pk)
        return render(request, self.template_name, {"form": form, "endpoint": endpoint}, status=422)


class EndpointDeleteView(RoleRequiredMixin, View):
    permission = PERMISSION

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        endpoint = get_object_or_404(WebhookEndpoint, pk=pk)
        services.delete_endpoint(endpoint)
        messages.info(request, f"Endpoint {endpoint} deleted; its pending retries stopped.")
        return redirect("webhooks:endpoints")


class RotateSecretView(RoleRequiredMixin, View):
    permission = PERMISSION

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        endpoint = get_object_or_404(WebhookEndpoint, pk=pk)
        return _secret_page(request, services.rotate_secret(endpoint), created=False)


class SendTestView(RoleRequiredMixin, View):
    permission = PERMISSION

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        endpoint = get_object_or_404(WebhookEndpoint, pk=pk)
        delivery = services.send_test_event(endpoint)
        if delivery.status == DeliveryStatus.SUCCEEDED:
            messages.success(
                request,
                f"Test event delivered: HTTP {delivery.status_code} in {delivery.duration_ms} ms.",
            )
        else:
            outcome = f"HTTP {delivery.status_code}" if delivery.status_code else delivery.error
            messages.error(request, f"Test event not delivered: {outcome}.")
        return redirect("webhooks:endpoint", pk=endpoint.pk)


class EndpointDetailView(RoleRequiredMixin, View):
    """The endpoint's settings and its delivery log, filterable."""

    permission = PERMISSION
    template_name = "webhooks/endpoint.html"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        endpoint = get_object_or_404(WebhookEndpoint, pk=pk)
        params = request.GET
        filters = {
            "status": params.get("status", "")
            if params.get("status") in DeliveryStatus.values
            else "",
            "event_type": params.get("event_type", "").strip(),
            "q": params.get("q", "").strip(),
            "since": _date(params.get("since")),
            "until": _date(params.get("until")),
        }
        rows = endpoint.deliveries.defer("payload").order_by("-id")
        if filters["status"]:
            rows = rows.filter(status=filters["status"])
        if filters["event_type"]:
            rows = rows.filter(event_type=filters["event_type"])
        if filters["q"]:
            rows = rows.filter(event_id__icontains=filters["q"])
        if filters["since"]:
            rows = rows.filter(created_at__date__gte=filters["since"])
        if filters["until"]:
            rows = rows.filter(created_at__date__lte=filters["until"])
        query = params.copy()
        query.pop("page", None)
        context = {
            "endpoint": endpoint,
            "page": Paginator(rows, PAGE_SIZE).get_page(params.get("page")),
            "filters": filters,
            "filtered": any(filters.values()),
            "querystring": query.urlencode(),
        }
        if request.htmx and not request.htmx.history_restore_request:
            return render(request, self.template_name + "#deliveries", context)
        context.update(
            {
                "statuses": DeliveryStatus.choices,
                "event_types": [*EVENT_TYPES, services.TEST_EVENT],
            }
        )
        return render(request, self.template_name, context)


class DeliveryDetailView(RoleRequiredMixin, View):
    permission = PERMISSION
    template_name = "webhooks/delivery.html"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        delivery = get_object_or_404(
            WebhookDelivery.objects.select_related("endpoint", "replay_of"), pk=pk
        )
        return render(
            request,
            self.template_name,
            {
                "delivery": delivery,
                "body": services.signing.encode(delivery.payload).decode(),
                "replays": delivery.replays.order_by("-id"),
            },
        )


class ReplayView(RoleRequiredMixin, View):
    permission = PERMISSION

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        delivery = get_object_or_404(WebhookDelivery, pk=pk)
        again = services.replay(delivery)
        messages.success(
            request, f"Event {delivery.event_id} queued again as delivery #{again.pk}."
        )
        return redirect("webhooks:delivery", pk=again.pk)
