"""Replenishment pages: the board (recommendations grouped by state, transfer suggestions),
one-click actions (HTMX swaps the row), and the settings page. Services do the work."""

from __future__ import annotations

import contextlib
from datetime import date

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django_htmx.http import HttpResponseClientRedirect

from accounts.views import RoleRequiredMixin
from inventory.models import Warehouse, WarehouseKind
from purchasing.models import Supplier
from replenishment import services
from replenishment.models import (
    Recommendation,
    RecommendationStatus,
    ReplenishmentSettings,
    State,
    TransferStatus,
    TransferSuggestion,
)

STATE_ORDER = [State.ACCELERATE, State.BRAKE, State.ESCALATE, State.HEALTHY]
GROUP_LIMIT = 50
PAGE_SIZE = 50


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _next(request: HttpRequest) -> str:
    """Where to go back to: the posted `next` when it is a page of this site."""
    url = request.POST.get("next", "")
    if url and url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()}):
        return url
    return reverse("replenishment:board")


def _latest_day() -> date | None:
    return Recommendation.objects.order_by("-day").values_list("day", flat=True).first()


def _messages_of(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def _filtered(params, day: date):
    rows = Recommendation.objects.filter(day=day).select_related(
        "sku", "warehouse", "supplier", "purchase_order"
    )
    q = params.get("q", "").strip()
    if q:
        rows = rows.filter(Q(sku__code__icontains=q) | Q(sku__title__icontains=q))
    if _int(params.get("warehouse")):
        rows = rows.filter(warehouse_id=_int(params.get("warehouse")))
    if _int(params.get("supplier")):
        rows = rows.filter(supplier_id=_int(params.get("supplier")))
    if params.get("status") in RecommendationStatus.values:
        rows = rows.filter(status=params["status"])
    return rows.order_by("supplier__code", "sku__code", "warehouse__priority")


def _orderable(rows) -> dict[tuple[str, int], int]:
    """(state, supplier id) → open rows with a quantity: what a group's button would order."""
    counts = (
        rows.filter(
            status=RecommendationStatus.OPEN, suggested_quantity__gt=0, supplier__isnull=False
        )
        .order_by()  # the board's ordering would split the GROUP BY into single rows
        .values_list("state", "supplier_id")
        .annotate(n=Count("id"))
    )
    return {(state, supplier): n for state, supplier, n in counts}


def _supplier_groups(rows: list[Recommendation], orderable: dict) -> list[dict]:
    """Rows by supplier, each with how many open rows a 'Create draft POs' click orders."""
    groups: dict[int | None, dict] = {}
    for row in rows:
        group = groups.setdefault(
            row.supplier_id,
            {
                "supplier": row.supplier,
                "rows": [],
                "orderable": orderable.get((row.state, row.supplier_id), 0),
            },
        )
        group["rows"].append(row)
    return sorted(
        groups.values(), key=lambda g: (g["supplier"] is None, g["supplier"] and g["supplier"].code)
    )


class BoardView(RoleRequiredMixin, View):
    """Today's plan: one section per state, rows grouped by supplier inside it."""

    permission = "forecasting.view"
    template_name = "replenishment/board.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        params = request.GET
        day = _latest_day()
        with contextlib.suppress(ValueError):
            if params.get("day"):
                day = date.fromisoformat(params["day"])
        state = params.get("state") if params.get("state") in State.values else ""
        sections = []
        counts = {}
        if day is not None:
            rows = _filtered(params, day)
            orderable = _orderable(rows)
            counts = dict(
                rows.order_by()
                .values_list("state")
                .annotate(n=Count("id"))
                .values_list("state", "n")
            )
            for value in [state] if state else STATE_ORDER:
                subset = rows.filter(state=value)
                if state:
                    page = Paginator(subset, PAGE_SIZE).get_page(params.get("page"))
                    shown, more = list(page.object_list), 0
                else:
                    page = None
                    shown = list(subset[:GROUP_LIMIT])
                    more = max(0, counts.get(value, 0) - len(shown))
                sections.append(
                    {
                        "state": value,
                        "label": State(value).label,
                        "count": counts.get(value, 0),
                        "groups": _supplier_groups(shown, orderable),
                        "more": more,
                        "page": page,
                    }
                )
        transfers = (
            TransferSuggestion.objects.filter(status=TransferStatus.OPEN)
            .select_related("sku", "from_warehouse", "to_warehouse")
            .order_by("-day", "sku__code")[:50]
        )
        query = request.GET.copy()
        query.pop("page", None)
        context = {
            "day": day,
            "state": state,
            "sections": sections,
            "tiles": [(s, State(s).label, counts.get(s, 0)) for s in STATE_ORDER],
            "transfers": transfers,
            "filters": {
                "q": params.get("q", "").strip(),
                "warehouse": _int(params.get("warehouse")),
                "supplier": _int(params.get("supplier")),
                "status": params.get("status", ""),
            },
            "warehouses": Warehouse.objects.filter(is_active=True),
            "suppliers": Supplier.objects.filter(is_active=True),
            "statuses": RecommendationStatus.choices,
            "querystring": query.urlencode(),
            "tab": "board",
        }
        return render(request, self.template_name, context)


def _row_response(request: HttpRequest, rec: Recommendation, note: str, error: str = ""):
    """htmx: the row again (with the outcome) plus its supplier group's header out of band,
    so the group's button counts what is left. Otherwise back to the board with a message."""
    if request.htmx:
        rec = Recommendation.objects.select_related(
            "sku", "warehouse", "supplier", "purchase_order"
        ).get(pk=rec.pk)
        row = render_to_string(
            "replenishment/board.html#rec-row",
            {"row": rec, "note": note, "error": error},
            request=request,
        )
        same_day = Recommendation.objects.filter(day=rec.day, supplier=rec.supplier_id)
        group = {
            "supplier": rec.supplier,
            "orderable": _orderable(same_day).get((rec.state, rec.supplier_id), 0),
        }
        head = render_to_string(
            "replenishment/board.html#group-head",
            {
                "group": group,
                "group_state": rec.state,
                "day": rec.day,
                "oob": True,
                "next_url": request.htmx.current_url_abs_path or reverse("replenishment:board"),
            },
            request=request,
        )
        return HttpResponse(row + head)
    if error:
        messages.error(request, error)
    else:
        messages.success(request, note)
    return redirect(_next(request))


class RecommendationActionView(RoleRequiredMixin, View):
    """POST create-po | pull-forward | slow-down | dismiss on one recommendation."""

    permission = "forecasting.view"

    def post(self, request: HttpRequest, pk: int, action: str) -> HttpResponse:
        rec = get_object_or_404(Recommendation, pk=pk)
        try:
            if action == "create-po":
                self.require("purchasing.draft")
                pos = services.create_draft_pos([rec], actor=request.user)
                if not pos:
                    raise services.ReplenishmentError(
                        "Nothing to order here (already acted on, no supplier or no quantity).",
                        code="nothing_to_order",
                    )
                po = pos[0]
                note = f"{po.number} created: {po.get_state_display().lower()}."
            elif action == "pull-forward":
                self.require("purchasing.draft")
                po = services.pull_forward(rec, actor=request.user)
                note = f"{po.number} now expected {po.expected_on:%d %b %Y}."
            elif action == "slow-down":
                self.require("purchasing.draft")
                po = services.apply_slowdown(
                    rec,
                    po_id=_int(request.POST.get("po")) or 0,
                    option=request.POST.get("option", ""),
                    actor=request.user,
                )
                note = (
                    f"{po.number}: {po.get_state_display().lower()}, "
                    f"expected {po.expected_on:%d %b %Y}."
                )
            elif action == "dismiss":
                self.require("forecasting.manage")
                services.dismiss(rec, actor=request.user, reason=request.POST.get("reason", ""))
                note = "Dismissed."
            else:
                return HttpResponse(status=404)
        except ValidationError as exc:
            return _row_response(request, rec, "", _messages_of(exc))
        return _row_response(request, rec, note)


class SupplierCreatePOsView(RoleRequiredMixin, View):
    """POST: draft POs for every open, orderable row of one supplier on one day."""

    permission = "purchasing.draft"

    def post(self, request: HttpRequest, supplier_id: int) -> HttpResponse:
        supplier = get_object_or_404(Supplier, pk=supplier_id)
        day = _latest_day()
        with contextlib.suppress(ValueError):
            day = date.fromisoformat(request.POST.get("day", ""))
        rows = Recommendation.objects.filter(
            day=day, supplier=supplier, status=RecommendationStatus.OPEN, suggested_quantity__gt=0
        )
        state = request.POST.get("state")
        if state in State.values:
            rows = rows.filter(state=state)
        try:
            pos = services.create_draft_pos(rows, actor=request.user)
        except ValidationError as exc:
            messages.error(request, _messages_of(exc))
        else:
            if pos:
                messages.success(
                    request,
                    "Created "
                    + ", ".join(f"{po.number} ({po.get_state_display().lower()})" for po in pos)
                    + ".",
                )
            else:
                messages.info(request, f"Nothing left to order from {supplier.code}.")
        url = _next(request)
        return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


class PlanNowView(RoleRequiredMixin, View):
    permission = "forecasting.manage"

    def post(self, request: HttpRequest) -> HttpResponse:
        result = services.plan()
        by_state = ", ".join(
            f"{result.by_state.get(s, 0)} {State(s).label.lower()}" for s in STATE_ORDER
        )
        messages.success(
            request,
            f"Planned {result.recommendations} SKU × warehouse rows for {result.day:%d %b}: "
            f"{by_state}; {result.transfers} transfer suggestions.",
        )
        return redirect("replenishment:board")


class TransferActionView(RoleRequiredMixin, View):
    permission = "forecasting.view"

    def post(self, request: HttpRequest, pk: int, action: str) -> HttpResponse:
        suggestion = get_object_or_404(TransferSuggestion, pk=pk)
        try:
            if action == "accept":
                self.require("stock.move")
                suggestion = services.accept_transfer(suggestion, actor=request.user)
                messages.success(
                    request,
                    f"{suggestion.quantity} × {suggestion.sku.code} in transit from "
                    f"{suggestion.from_warehouse.code} to {suggestion.to_warehouse.code}.",
                )
            elif action == "dismiss":
                self.require("forecasting.manage")
                services.dismiss_transfer(suggestion, actor=request.user)
                messages.success(request, "Transfer suggestion dismissed.")
            else:
                return HttpResponse(status=404)
        except ValidationError as exc:
            messages.error(request, _messages_of(exc))
        return redirect("replenishment:board")


class SettingsForm(forms.Form):
    accelerate_threshold = forms.DecimalField(
        label="Accelerate threshold (%)",
        min_value=1,
        max_value=500,
        decimal_places=1,
        help_text="7-day sales above the 28-day average by more than this: accelerate.",
    )
    brake_threshold = forms.DecimalField(
        label="Brake threshold (%)",
        min_value=1,
        max_value=99,
        decimal_places=1,
        help_text="7-day sales below the 28-day average by more than this: brake.",
    )
    default_review_period_days = forms.IntegerField(
        label="Default review period (days)",
        min_value=1,
        max_value=365,
        help_text="Used for SKUs whose segment has no review cadence.",
    )
    auto_draft_pos = forms.BooleanField(
        label="Draft and submit POs automatically every morning",
        required=False,
        help_text="Healthy and accelerating SKUs only; approvals still apply.",
    )
    transfers_enabled = forms.BooleanField(label="Suggest transfers", required=False)
    transfer_min_quantity = forms.IntegerField(
        label="Smallest transfer (units)", min_value=1, max_value=100000
    )
    transfer_warehouse_kinds = forms.MultipleChoiceField(
        label="Warehouses that may send each other stock",
        choices=WarehouseKind.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )


class SettingsView(RoleRequiredMixin, View):
    permission = "forecasting.view"
    template_name = "replenishment/settings.html"

    def initial(self, row: ReplenishmentSettings) -> dict:
        return {
            "accelerate_threshold": row.accelerate_threshold * 100,
            "brake_threshold": row.brake_threshold * 100,
            "default_review_period_days": row.default_review_period_days,
            "auto_draft_pos": row.auto_draft_pos,
            "transfers_enabled": row.transfers_enabled,
            "transfer_min_quantity": row.transfer_min_quantity,
            "transfer_warehouse_kinds": row.transfer_warehouse_kinds,
        }

    def render(self, form: SettingsForm, status: int = 200) -> HttpResponse:
        return render(
            self.request, self.template_name, {"form": form, "tab": "settings"}, status=status
        )

    def get(self, request: HttpRequest) -> HttpResponse:
        form = SettingsForm(initial=self.initial(ReplenishmentSettings.current()))
        return self.render(form)

    def post(self, request: HttpRequest) -> HttpResponse:
        self.require("forecasting.manage")
        form = SettingsForm(request.POST)
        if not form.is_valid():
            return self.render(form, status=422)
        data = dict(form.cleaned_data)
        data["accelerate_threshold"] = data["accelerate_threshold"] / 100
        data["brake_threshold"] = data["brake_threshold"] / 100
        try:
            services.update_settings(actor=request.user, **data)
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):
                for name, errors in exc.error_dict.items():
                    form.add_error(name if name in form.fields else None, errors)
            else:
                form.add_error(None, exc)
            return self.render(form, status=422)
        messages.success(request, "Replenishment settings saved.")
        return redirect("replenishment:settings")
