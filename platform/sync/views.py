"""Connections pages and the webhook endpoint.

Pages: the connections list (with installed connectors and plugins that failed to load),
choosing a connector, the add/edit form generated from the connector's settings schema,
a connection's page (status, webhook URL, test / pause / resume / sync now, run history
refreshed live while a run is active) and a run's page with its errors. Views parse input
and call sync.services; credentials are never rendered (password inputs never carry a
value, the page shows only which secret fields are stored).

The webhook endpoint `/hooks/<connection uuid>/` is not a page: no session, no CSRF
(the vendor signs the body instead), an unnamed URL so route-enumerating tests do not
take it for one. It reads the raw body before anything parses it, hands it to
sync.services.receive_webhook and answers with a status and an empty body.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from accounts.roles import has_permission
from accounts.views import RoleRequiredMixin
from connectors.errors import ConfigurationError
from connectors.types import ConnectorKind
from sync import plugins, services
from sync.forms import ConnectionForm, dumps_setting, initial_for
from sync.models import (
    Connection,
    FulfillmentPush,
    PushStatus,
    ReceiptStatus,
    RunTrigger,
    SyncRun,
    WebhookReceipt,
)

RUNS_PER_PAGE = 20
KIND_LABELS = {
    ConnectorKind.CHANNEL: "Sales channels",
    ConnectorKind.THREEPL: "3PLs and warehouses",
    ConnectorKind.CARRIER: "Carriers",
}
# Request headers never stored with a delivery: they are not the vendor's, and a browser
# replaying a URL would bring our own session.
DROPPED_HEADERS = frozenset({"cookie", "authorization"})


def _apply_errors(form: ConnectionForm, exc: ValidationError) -> None:
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc)
        return
    for field, errors in exc.error_dict.items():
        target = field if field in form.fields else None
        for error in errors:
            form.add_error(target, error)


class ConnectionsView(RoleRequiredMixin, View):
    permission = "connections.view"
    template_name = "sync/connections.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        connections = list(Connection.objects.all())
        latest = {}
        for run in (
            SyncRun.objects.filter(connection__in=connections)
            .order_by("connection_id", "-queued_at", "-id")
            .distinct("connection_id")
        ):
            latest[run.connection_id] = run
        infos = plugins.infos()
        rows = [
            {
                "conn": c,
                "info": infos.get(c.connector),
                "last_run": latest.get(c.pk),
            }
            for c in connections
        ]
        pm = plugins.manager()
        return render(
            request,
            self.template_name,
            {
                "rows": rows,
                "plugins": pm.describe(),
                "load_errors": sorted(pm.load_errors.items()),
                "can_manage": has_permission(request.user, "connections.manage"),
            },
        )


class ChooseConnectorView(RoleRequiredMixin, View):
    permission = "connections.manage"
    template_name = "sync/choose_connector.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        groups = []
        for kind, label in KIND_LABELS.items():
            found = services.connector_choices(kind)
            if found:
                groups.append({"label": label, "connectors": found})
        return render(request, self.template_name, {"groups": groups})


class ConnectionCreateView(RoleRequiredMixin, View):
    permission = "connections.manage"
    template_name = "sync/connection_form.html"

    def _info(self, name: str):
        try:
            return plugins.info_for(name)
        except ConfigurationError:
            return None

    def get(self, request: HttpRequest, connector: str) -> HttpResponse:
        info = self._info(connector)
        if info is None:
            return render(request, "sync/choose_connector.html", {"groups": []}, status=404)
        taken = set(Connection.objects.values_list("channel_key", flat=True))
        key, n = info.name, 2
        while key in taken:
            key, n = f"{info.name}-{n}", n + 1
        form = ConnectionForm(
            info,
            initial={
                "display_name": info.display_name,
                "channel_key": key,
                "poll_interval": services.DEFAULT_POLL_SECONDS.get(str(info.kind), 300),
            },
        )
        return render(request, self.template_name, {"form": form, "info": info})

    def post(self, request: HttpRequest, connector: str) -> HttpResponse:
        info = self._info(connector)
        if info is None:
            return render(request, "sync/choose_connector.html", {"groups": []}, status=404)
        form = ConnectionForm(info, request.POST)
        if form.is_valid():
            try:
                conn = services.create_connection(
                    connector=info.name,
                    display_name=form.cleaned_data["display_name"],
                    channel_key=form.cleaned_data["channel_key"],
                    settings=form.settings(),
                    credentials=form.credentials(),
                    warehouse_map=form.cleaned_data.get("warehouse_map") or {},
                    poll_interval=form.cleaned_data["poll_interval"],
                )
            except ValidationError as exc:
                _apply_errors(form, exc)
            else:
                messages.success(
                    request, f"Connected {conn.display_name}. Test it, then sync when ready."
                )
                return redirect("sync:detail", pk=conn.pk)
        return render(request, self.template_name, {"form": form, "info": info}, status=422)


class ConnectionEditView(RoleRequiredMixin, View):
    permission = "connections.manage"
    template_name = "sync/connection_form.html"

    def _form(self, conn: Connection, data=None) -> ConnectionForm:
        info = plugins.info_for(conn.connector)
        return ConnectionForm(
            info,
            data,
            initial=initial_for(conn, info),
            editing=True,
            stored_secrets=frozenset(conn.credential_fields),
        )

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        conn = get_object_or_404(Connection, pk=pk)
        form = self._form(conn)
        return render(request, self.template_name, {"form": form, "info": form.info, "conn": conn})

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        conn = get_object_or_404(Connection, pk=pk)
        form = self._form(conn, request.POST)
        if form.is_valid():
            try:
                services.update_connection(
                    conn,
                    display_name=form.cleaned_data["display_name"],
                    settings=form.settings(),
                    credentials=form.credentials(),
                    warehouse_map=(
                        form.cleaned_data.get("warehouse_map") or {}
                        if "warehouse_map" in form.fields
                        else services.UNSET
                    ),
                    poll_interval=form.cleaned_data["poll_interval"],
                )
            except ValidationError as exc:
                _apply_errors(form, exc)
            else:
                messages.success(request, "Connection saved.")
                return redirect("sync:detail", pk=conn.pk)
        return render(
            request,
            self.template_name,
            {"form": form, "info": form.info, "conn": conn},
            status=422,
        )


def _detail_context(request: HttpRequest, conn: Connection) -> dict:
    info = plugins.infos().get(conn.connector)
    runs = Paginator(conn.runs.all(), RUNS_PER_PAGE).get_page(request.GET.get("page"))
    secrets = info.secret_fields if info else frozenset()
    properties = (info.settings_schema.get("properties") or {}) if info else {}
    settings_rows = [
        {
            "label": (properties.get(name) or {}).get("title") or name,
            "value": dumps_setting(value),
        }
        for name, value in sorted(conn.settings.items())
        if name not in secrets
    ]
    receipts = {
        status: WebhookReceipt.objects.filter(connection=conn, status=status).count()
        for status in ReceiptStatus.values
    }
    return {
        "conn": conn,
        "info": info,
        "runs": runs,
        "any_active": any(r.is_active for r in runs),
        "settings_rows": settings_rows,
        "credential_fields": conn.credential_fields,
        "webhook_url": request.build_absolute_uri(services.webhook_path(conn))
        if services.accepts_webhooks(info)
        else "",
        "receipts": receipts,
        "recent_receipts": WebhookReceipt.objects.filter(connection=conn)
        .defer("body", "headers")
        .order_by("-received_at")[:10],
        "failed_pushes": FulfillmentPush.objects.filter(
            connection=conn, status=PushStatus.FAILED
        ).select_related("fulfillment")[:20],
        "cursors": list(conn.cursors.order_by("stream").values_list("stream", "updated_at")),
        "can_manage": has_permission(request.user, "connections.manage"),
        "can_sync": has_permission(request.user, "connections.sync")
        and bool(info and services.streams_for(info)),
    }


class ConnectionDetailView(RoleRequiredMixin, View):
    permission = "connections.view"
    template_name = "sync/connection_detail.html"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        conn = get_object_or_404(Connection, pk=pk)
        context = _detail_context(request, conn)
        template = self.template_name
        if request.htmx and request.GET.get("fragment") == "runs":
            template += "#runs"
        return render(request, template, context)


class ConnectionActionView(RoleRequiredMixin, View):
    """POST test | pause | resume | sync on a connection."""

    permission = "connections.view"
    ACTIONS = {
        "test": "connections.manage",
        "pause": "connections.manage",
        "resume": "connections.manage",
        "sync": "connections.sync",
    }

    def post(self, request: HttpRequest, pk: int, action: str) -> HttpResponse:
        if action not in self.ACTIONS:
            return HttpResponse(status=404)
        self.require(self.ACTIONS[action])
        conn = get_object_or_404(Connection, pk=pk)
        if action == "test":
            result = services.test_connection(conn)
            (messages.success if result.ok else messages.error)(request, result.message)
        elif action == "pause":
            services.pause_connection(conn)
            messages.success(request, "Paused: no polling or pushing until you resume.")
        elif action == "resume":
            services.resume_connection(conn)
            messages.success(request, "Resumed.")
        else:
            try:
                run, created = services.request_sync(
                    conn, trigger=RunTrigger.MANUAL, requested_by=request.user.email
                )
            except ValidationError as exc:
                messages.error(request, " ".join(exc.messages))
            else:
                messages.success(
                    request,
                    "Sync queued." if created else "A sync is already running; showing it.",
                )
        return redirect(reverse("sync:detail", kwargs={"pk": conn.pk}))


class RunDetailView(RoleRequiredMixin, View):
    permission = "connections.view"
    template_name = "sync/run_detail.html"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        run = get_object_or_404(SyncRun.objects.select_related("connection"), pk=pk)
        template = f"{self.template_name}#run" if request.htmx else self.template_name
        return render(
            request,
            template,
            {"run": run, "conn": run.connection},
        )


@csrf_exempt
def webhook(request: HttpRequest, token) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    # The exact bytes received: the signature covers them, not a re-serialised form.
    body = request.body
    headers = {k: v for k, v in request.headers.items() if k.lower() not in DROPPED_HEADERS}
    outcome = services.receive_webhook(
        token=str(token), headers=headers, body=body, remote=request.META.get("REMOTE_ADDR", "")
    )
    return HttpResponse(status=outcome.status)
