"""Forecast pages: the SKU list, one SKU's chart, runs with live progress, segments.

Reading needs forecasting.view; starting runs, forecasting one SKU now and editing segment
policies need forecasting.manage. The views call forecasting.services only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.safestring import mark_safe
from django.views import View

from accounts.views import RoleRequiredMixin
from catalog.models import SKU
from forecasting import services
from forecasting.chart import ChartData, render_svg
from forecasting.engine.core import COMBINATION
from forecasting.models import (
    SEGMENT_ORDER,
    ForecastRun,
    RunKind,
    SkuForecast,
    SkuSegment,
)

PAGE_SIZE = 50
CHART_HISTORY_DAYS = 182


def _querystring(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


class OverviewView(RoleRequiredMixin, View):
    """Every SKU's latest forecast, searchable, with the last run's state."""

    permission = "forecasting.view"
    template_name = "forecasting/overview.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        q = request.GET.get("q", "").strip()
        segment = request.GET.get("segment", "")
        rows = SkuForecast.objects.select_related("sku", "sku__segment").defer(
            "warm", "lo80", "hi80"
        )
        if q:
            rows = rows.filter(Q(sku__code__icontains=q) | Q(sku__title__icontains=q))
        if segment in {s.value for s in SEGMENT_ORDER}:
            rows = rows.filter(sku__segment__segment=segment)
        page = Paginator(rows.order_by("sku__code"), PAGE_SIZE).get_page(request.GET.get("page"))
        today = services.brand_today()
        page.object_list = [
            (f, services.summarize(f, today=today), getattr(f.sku, "segment", None))
            for f in page.object_list
        ]
        context = {
            "page": page,
            "filters": {"q": q, "segment": segment},
            "segments": SEGMENT_ORDER,
            "run": services.last_run(),
            "querystring": _querystring(request),
            "tab": "forecasts",
        }
        template = self.template_name + ("#results" if request.htmx else "")
        return render(request, template, context)


@dataclass(frozen=True)
class BacktestRow:
    method: str
    rmsse: float | None
    mase: float | None
    members: tuple[str, ...] = ()


def backtest_rows(forecast: SkuForecast) -> list[BacktestRow]:
    """Each candidate's backtest scores, best RMSSE (the score that chooses) first.

    The full scores live in the engine's warm state; `scores` keeps MASE only (the API's
    field), so a forecast without the state shows MASE alone."""
    state = forecast.warm or {}
    full = state.get("scores") or {}
    members = tuple((state.get("params") or {}).get("members") or ())
    rows = [
        BacktestRow(
            method=name,
            rmsse=(full.get(name) or {}).get("rmsse"),
            mase=mase,
            members=members if name == COMBINATION else (),
        )
        for name, mase in forecast.scores.items()
    ]
    return sorted(
        rows,
        key=lambda r: (r.rmsse is None, r.rmsse or 0.0, r.mase is None, r.mase or 0.0),
    )


class SkuForecastView(RoleRequiredMixin, View):
    """One SKU: chart, method and class, backtest scores; "Forecast now" for managers."""

    permission = "forecasting.view"
    template_name = "forecasting/sku.html"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        sku = get_object_or_404(SKU.objects.select_related("product"), pk=pk)
        return render(request, self.template_name, _sku_context(sku))

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        self.require("forecasting.manage")
        sku = get_object_or_404(SKU, pk=pk)
        try:
            services.forecast_one(sku)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, f"{sku.code} forecast again from its latest history.")
        return redirect("forecasting:sku", pk=sku.pk)


def _on_order(sku: SKU) -> list[tuple]:
    """Units on open purchase orders by expected day, all warehouses together."""
    try:
        from purchasing.services import open_quantities
    except ImportError:  # purchasing not installed: nothing on order to show
        return []
    by_day: dict = {}
    for (_sku_id, _warehouse_id), items in open_quantities([sku.pk]).items():
        for when, units in items:
            by_day[when] = by_day.get(when, 0) + units
    return sorted(by_day.items())


def _sku_context(sku: SKU) -> dict:
    today = services.brand_today()
    forecast = SkuForecast.objects.filter(sku=sku).select_related("run").first()
    start = today - timedelta(days=CHART_HISTORY_DAYS)
    history = services.daily_units([sku.pk], start=start, end=today - timedelta(days=1))[sku.pk]
    on_order = _on_order(sku)
    data = ChartData(history_start=start, history=history, on_order=on_order)
    if forecast is not None:
        data.forecast_start = forecast.start
        data.mean, data.lo80, data.hi80 = forecast.mean, forecast.lo80, forecast.hi80
        data.lo95, data.hi95 = forecast.lo95, forecast.hi95
    scores = backtest_rows(forecast) if forecast is not None else []
    segment = SkuSegment.objects.filter(sku=sku).first()
    return {
        "sku": sku,
        "forecast": forecast,
        "summary": services.summarize(forecast, today=today) if forecast else None,
        "chart": mark_safe(render_svg(data, title=f"{sku.code}: demand and forecast")),  # noqa: S308 - built from numbers and dates, title escaped
        "scores": scores,
        "segment": segment,
        "on_order": on_order,
        "stockout_days": sum(1 for v in history if v is None),
        "history_units": int(sum(v for v in history if v)),
        "history_days": len(history),
        "failures": sku_failures(sku),
    }


def sku_failures(sku: SKU):
    from forecasting.models import ForecastFailure

    return ForecastFailure.objects.filter(sku=sku).select_related("run").order_by("-id")[:3]


class RunsView(RoleRequiredMixin, View):
    """Forecast runs, newest first; the open one polls its progress."""

    permission = "forecasting.view"
    template_name = "forecasting/runs.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        page = Paginator(ForecastRun.objects.all(), PAGE_SIZE).get_page(request.GET.get("page"))
        context = {
            "page": page,
            "open_run": services.open_run(),
            "querystring": "",
            "tab": "runs",
        }
        if request.htmx and request.GET.get("fragment") == "progress":
            return render(request, self.template_name + "#progress", context)
        return render(request, self.template_name, context)

    def post(self, request: HttpRequest) -> HttpResponse:
        self.require("forecasting.manage")
        existing = services.open_run()
        run = services.run_forecasts(kind=RunKind.MANUAL)
        if existing is not None and existing.pk == run.pk:
            messages.info(request, f"Run #{run.pk} is already under way.")
        elif run.total == 0:
            messages.info(request, "No SKU has demand history yet: nothing to forecast.")
        else:
            messages.success(request, f"Run #{run.pk} started for {run.total} SKUs.")
        return redirect("forecasting:run", pk=run.pk)


class RunDetailView(RoleRequiredMixin, View):
    permission = "forecasting.view"
    template_name = "forecasting/run_detail.html"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        run = get_object_or_404(ForecastRun, pk=pk)
        failures = run.failures.select_related("sku")[:200]
        context = {"run": run, "failures": failures, "tab": "runs"}
        if request.htmx:
            return render(request, self.template_name + "#run-status", context)
        return render(request, self.template_name, context)


class SegmentPolicyForm(forms.Form):
    review_cadence_days = forms.IntegerField(
        label="Review every (days)", min_value=1, max_value=365
    )
    service_level = forms.DecimalField(
        label="Service level",
        min_value=Decimal("0.5"),
        max_value=Decimal("0.999"),
        decimal_places=3,
        help_text="Share of cycles without a stock-out, 0.5 to 0.999",
    )


class SegmentsView(RoleRequiredMixin, View):
    """SKU counts per segment and each segment's planning policy."""

    permission = "forecasting.view"
    template_name = "forecasting/segments.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, self.template_name, self._context())

    def _context(self, forms_by_segment: dict | None = None) -> dict:
        policies = services.segment_policies()
        counts = services.segment_counts()
        revenue = services.segment_revenue()
        rows = []
        for segment in SEGMENT_ORDER:
            policy = policies.get(segment.value)
            form = (forms_by_segment or {}).get(segment.value) or SegmentPolicyForm(
                prefix=segment.value,
                initial={
                    "review_cadence_days": policy.review_cadence_days if policy else 7,
                    "service_level": policy.service_level if policy else Decimal("0.95"),
                },
            )
            rows.append(
                {
                    "segment": segment,
                    "policy": policy,
                    "count": counts.get(segment.value, 0),
                    "revenue": revenue.get(segment.value, Decimal("0")),
                    "tag": services.segment_tag(segment.value),
                    "form": form,
                }
            )
        computed = SkuSegment.objects.order_by("-computed_at").values_list("computed_at", flat=True)
        return {
            "rows": rows,
            "computed_at": computed.first(),
            "window_days": services.settings().segment_window_days,
            "tab": "segments",
        }

    def post(self, request: HttpRequest) -> HttpResponse:
        self.require("forecasting.manage")
        if "recompute" in request.POST:
            counts = services.recompute_segments()
            messages.success(
                request,
                "Segments recomputed: "
                + ", ".join(f"{count} {name}" for name, count in counts.items())
                + ".",
            )
            return redirect("forecasting:segments")
        segment = request.POST.get("segment", "")
        if segment not in {s.value for s in SEGMENT_ORDER}:
            messages.error(request, "Unknown segment.")
            return redirect("forecasting:segments")
        form = SegmentPolicyForm(request.POST, prefix=segment)
        if form.is_valid():
            try:
                services.update_segment_policy(segment, **form.cleaned_data)
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                messages.success(request, f"{segment.title()} policy saved.")
                return redirect("forecasting:segments")
        response = render(request, self.template_name, self._context({segment: form}))
        response.status_code = 422
        return response
