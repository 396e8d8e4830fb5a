"""REST API of the forecasting app, registered on the brand API router by config.api_urls.

- `/forecasts/`: every SKU's latest forecast (filters `sku`, `segment`, `method`);
  `/forecasts/{sku_id}/` one SKU's, with the daily mean and 80 % / 95 % bounds.
- `/demand-history/{sku_id}/?start=&end=`: units sold and returned per day (all channels
  and warehouses) with stock-out days flagged, plus totals per channel.
- `/forecast-runs/`: runs, newest first; `POST` starts one (forecasting.manage). Only one
  run is in flight at a time: a start while one runs answers 200 with that run instead of
  201 with a new one, so retries never queue a second run (Idempotency-Key honoured too).
- `/segments/`: SKU counts, revenue and planning policy per segment; `PATCH
  /segments/{segment}/` changes the review cadence or service level (forecasting.manage).
Reading needs forecasting.view, like the pages.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import F, Sum
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import ErrorDetail
from rest_framework.response import Response
from rest_framework.routers import BaseRouter

from catalog.models import SKU
from config.api import IDEMPOTENCY_KEY, QueryFilter, QueryParamFilter, error_responses
from forecasting import history_import, services
from forecasting.models import (
    SEGMENT_ORDER,
    DemandDay,
    ForecastRun,
    RunKind,
    Segment,
    SkuForecast,
)
from idempotency.services import idempotent

MAX_HISTORY_DAYS = 1100


class IntervalSerializer(serializers.Serializer):
    lower = serializers.ListField(child=serializers.FloatField())
    upper = serializers.ListField(child=serializers.FloatField())


class ForecastSerializer(serializers.ModelSerializer):
    sku_code = serializers.CharField(source="sku.code", read_only=True)
    segment = serializers.SerializerMethodField()
    next_28 = serializers.SerializerMethodField(help_text="Units expected over the next 28 days")
    lo95_28 = serializers.SerializerMethodField()
    hi95_28 = serializers.SerializerMethodField()
    intervals = serializers.SerializerMethodField(
        help_text='Daily bounds by level: {"80": {"lower": [...], "upper": [...]}, "95": ...}'
    )

    backtest = serializers.SerializerMethodField(
        help_text='Each candidate\'s backtest scores: {"ets": {"rmsse": 0.71, "mase": 0.75}, ...}. '
        "The engine chooses by RMSSE; `scores` repeats the MASE alone."
    )

    class Meta:
        model = SkuForecast
        fields = [
            "sku",
            "sku_code",
            "segment",
            "run",
            "generated_at",
            "start",
            "horizon",
            "method",
            "demand_class",
            "daily_mean",
            "daily_std",
            "next_28",
            "lo95_28",
            "hi95_28",
            "mean",
            "intervals",
            "scores",
            "backtest",
            "warm_started",
            "launch_profile",
        ]
        read_only_fields = fields

    def _summary(self, obj: SkuForecast) -> services.ForecastSummary:
        cache = self.context.setdefault("summaries", {})
        if obj.pk not in cache:
            cache[obj.pk] = services.summarize(obj)
        return cache[obj.pk]

    def get_segment(self, obj: SkuForecast) -> str:
        segment = getattr(obj.sku, "segment", None)
        return segment.segment if segment is not None else Segment.TAIL.value

    def get_next_28(self, obj: SkuForecast) -> float:
        return round(self._summary(obj).next_28, 3)

    def get_lo95_28(self, obj: SkuForecast) -> float:
        return round(self._summary(obj).lo95_28, 3)

    def get_hi95_28(self, obj: SkuForecast) -> float:
        return round(self._summary(obj).hi95_28, 3)

    @extend_schema_field(serializers.DictField(child=serializers.DictField()))
    def get_backtest(self, obj: SkuForecast) -> dict[str, dict[str, float | None]]:
        full = getattr(obj, "backtest_scores", None) or {}
        return {
            name: {"rmsse": (full.get(name) or {}).get("rmsse"), "mase": mase}
            for name, mase in obj.scores.items()
        }

    @extend_schema_field(serializers.DictField(child=IntervalSerializer()))
    def get_intervals(self, obj: SkuForecast) -> dict[str, dict[str, list[float]]]:
        return {
            "80": {"lower": obj.lo80, "upper": obj.hi80},
            "95": {"lower": obj.lo95, "upper": obj.hi95},
        }


class ForecastViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Latest forecast per SKU; retrieve by SKU id."""

    serializer_class = ForecastSerializer
    lookup_field = "sku_id"
    lookup_url_kwarg = "sku_id"
    lookup_value_regex = r"\d+"
    filter_backends = [QueryParamFilter]
    query_filters = {
        "sku": QueryFilter(
            serializers.CharField(max_length=64),
            lambda qs, v: qs.filter(sku__code__iexact=v),
            "SKU code.",
        ),
        "segment": QueryFilter(
            serializers.ChoiceField(choices=Segment.choices),
            lambda qs, v: (
                qs.filter(sku__segment__segment=v)
                if v != Segment.TAIL
                else qs.exclude(sku__segment__segment__in=[s for s in Segment.values if s != v])
            ),
            "Segment (SKUs never segmented count as tail).",
        ),
        "method": QueryFilter(
            serializers.CharField(max_length=40),
            lambda qs, v: qs.filter(method=v),
            "Chosen method, e.g. ets, croston_tsb.",
        ),
    }
    required_permissions = {"list": "forecasting.view", "retrieve": "forecasting.view"}

    def get_queryset(self):
        # Only the scores of the (large) warm state travel: the backtest field reads them.
        return (
            SkuForecast.objects.select_related("sku", "sku__segment")
            .defer("warm")
            .annotate(backtest_scores=F("warm__scores"))
        )


class DemandDaySerializer(serializers.Serializer):
    day = serializers.DateField()
    units = serializers.IntegerField()
    returned = serializers.IntegerField()
    stockout = serializers.BooleanField(help_text="No sellable stock anywhere: demand unknown")


class DemandHistorySerializer(serializers.Serializer):
    sku = serializers.IntegerField()
    sku_code = serializers.CharField()
    start = serializers.DateField()
    end = serializers.DateField()
    units = serializers.IntegerField()
    returned = serializers.IntegerField()
    stockout_days = serializers.IntegerField()
    channels = serializers.DictField(child=serializers.IntegerField(), help_text="Units by channel")
    days = DemandDaySerializer(many=True)


class HistoryQuery(serializers.Serializer):
    start = serializers.DateField(required=False)
    end = serializers.DateField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        end = attrs.get("end") or services.brand_today() - timedelta(days=1)
        start = attrs.get("start") or end - timedelta(days=89)
        if start > end:
            raise serializers.ValidationError({"start": "Must not be after end."}, code="invalid")
        if (end - start).days >= MAX_HISTORY_DAYS:
            raise serializers.ValidationError(
                {"start": f"At most {MAX_HISTORY_DAYS} days at a time."}, code="too_long"
            )
        return {"start": start, "end": end}


class DemandHistoryViewSet(viewsets.GenericViewSet):
    """Daily demand history of one SKU (default: the last 90 complete days)."""

    serializer_class = DemandHistorySerializer
    lookup_url_kwarg = "sku_id"
    lookup_value_regex = r"\d+"
    required_permissions = {"retrieve": "forecasting.view"}
    pagination_class = None

    def get_queryset(self):
        return SKU.objects.all()

    @extend_schema(
        parameters=[
            OpenApiParameter("start", str, description="First day (YYYY-MM-DD)"),
            OpenApiParameter("end", str, description="Last day (default yesterday)"),
        ],
        responses={200: DemandHistorySerializer, **error_responses(400, 403, 404)},
    )
    def retrieve(self, request, sku_id: str | None = None) -> Response:
        sku = get_object_or_404(SKU, pk=sku_id)
        query = HistoryQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        start, end = query.validated_data["start"], query.validated_data["end"]
        days = services.demand_days(sku.pk, start=start, end=end)
        channels = dict(
            DemandDay.objects.filter(sku=sku, day__gte=start, day__lte=end)
            .values("channel")
            .annotate(units=Sum("units"))
            .values_list("channel", "units")
        )
        body = {
            "sku": sku.pk,
            "sku_code": sku.code,
            "start": start,
            "end": end,
            "units": sum(d["units"] for d in days),
            "returned": sum(d["returned"] for d in days),
            "stockout_days": sum(1 for d in days if d["stockout"]),
            "channels": {k or "": int(v or 0) for k, v in channels.items()},
            "days": days,
        }
        return Response(DemandHistorySerializer(body).data)


class ForecastRunSerializer(serializers.ModelSerializer):
    percent = serializers.IntegerField(read_only=True)

    class Meta:
        model = ForecastRun
        fields = [
            "id",
            "kind",
            "state",
            "total",
            "done",
            "failed",
            "warm_started",
            "percent",
            "chunks",
            "created_at",
            "started_at",
            "finished_at",
            "error",
            "requested_by_label",
        ]
        read_only_fields = fields


class ForecastRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Forecast runs, newest first."""

    serializer_class = ForecastRunSerializer
    queryset = ForecastRun.objects.all()
    required_permissions = {
        "list": "forecasting.view",
        "retrieve": "forecasting.view",
        "create": "forecasting.manage",
    }

    @extend_schema(
        request=None,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            201: ForecastRunSerializer,
            200: ForecastRunSerializer,
            **error_responses(403, 422),
        },
    )
    @idempotent
    def create(self, request) -> Response:
        """Start a manual run over every SKU with history, or get the run in flight."""
        before = services.open_run()
        run = services.run_forecasts(kind=RunKind.MANUAL)
        joined = before is not None and before.pk == run.pk
        return Response(
            ForecastRunSerializer(run).data,
            status=status.HTTP_200_OK if joined else status.HTTP_201_CREATED,
        )


class SegmentSerializer(serializers.Serializer):
    segment = serializers.ChoiceField(choices=Segment.choices, read_only=True)
    tag = serializers.CharField(read_only=True, help_text="SKU tag approval policies match")
    sku_count = serializers.IntegerField(read_only=True)
    trailing_revenue = serializers.DecimalField(max_digits=18, decimal_places=2, read_only=True)
    review_cadence_days = serializers.IntegerField(min_value=1, max_value=365)
    service_level = serializers.DecimalField(
        max_digits=4, decimal_places=3, min_value=Decimal("0.5"), max_value=Decimal("0.999")
    )


def _segment_rows() -> list[dict[str, Any]]:
    policies = services.segment_policies()
    counts = services.segment_counts()
    revenue = services.segment_revenue()
    rows = []
    for segment in SEGMENT_ORDER:
        policy = policies.get(segment.value)
        if policy is None:
            continue
        rows.append(
            {
                "segment": segment.value,
                "tag": services.segment_tag(segment.value),
                "sku_count": counts.get(segment.value, 0),
                "trailing_revenue": revenue.get(segment.value, Decimal("0")),
                "review_cadence_days": policy.review_cadence_days,
                "service_level": policy.service_level,
            }
        )
    return rows


class SegmentViewSet(viewsets.GenericViewSet):
    """The four revenue segments and their planning policies."""

    serializer_class = SegmentSerializer
    pagination_class = None
    lookup_url_kwarg = "segment"
    # A group, so the schema pattern anchors every choice (^(?:a|b)$, not ^a|b$).
    lookup_value_regex = "(?:" + "|".join(Segment.values) + ")"
    required_permissions = {
        "list": "forecasting.view",
        "retrieve": "forecasting.view",
        "partial_update": "forecasting.manage",
    }

    def get_queryset(self):
        return ForecastRun.objects.none()  # rows come from services; no model queryset

    @extend_schema(responses={200: SegmentSerializer(many=True)})
    def list(self, request) -> Response:
        return Response(SegmentSerializer(_segment_rows(), many=True).data)

    @extend_schema(responses={200: SegmentSerializer, **error_responses(403, 404)})
    def retrieve(self, request, segment: str | None = None) -> Response:
        return Response(SegmentSerializer(self._row(segment)).data)

    @extend_schema(
        request=SegmentSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: SegmentSerializer, **error_responses(400, 403, 404)},
    )
    @idempotent
    def partial_update(self, request, segment: str | None = None) -> Response:
        row = self._row(segment)
        data = SegmentSerializer(row, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        values = {**row, **data.validated_data}
        services.update_segment_policy(
            row["segment"],
            review_cadence_days=values["review_cadence_days"],
            service_level=values["service_level"],
        )
        return Response(SegmentSerializer(self._row(segment)).data)

    def _row(self, segment: str | None) -> dict[str, Any]:
        for row in _segment_rows():
            if row["segment"] == segment:
                return row
        raise Http404("No such segment.")


MAX_HISTORY_ROWS = 10_000


class SalesHistoryRowSerializer(serializers.Serializer):
    """One day of one SKU's pre-Keel sales (the CSV import's columns; see README)."""

    date = serializers.CharField(help_text="YYYY-MM-DD, brand-local, before today")
    sku = serializers.CharField(help_text="An existing SKU code")
    units = serializers.IntegerField(help_text="Units sold that day, 0 or more")
    channel = serializers.CharField(required=False, allow_blank=True, default="")
    warehouse = serializers.CharField(required=False, allow_blank=True, default="")
    revenue = serializers.CharField(
        required=False, allow_blank=True, default="", help_text='Decimal as text, e.g. "418.60"'
    )
    stockout = serializers.BooleanField(required=False, default=False)


class SalesHistoryRequestSerializer(serializers.Serializer):
    rows = serializers.ListField(
        child=serializers.DictField(), min_length=1, max_length=MAX_HISTORY_ROWS
    )


class SalesHistoryResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    units = serializers.IntegerField()
    demand_rows = serializers.IntegerField(help_text="Demand-history rows rebuilt")
    first_day = serializers.DateField(required=False)
    last_day = serializers.DateField(required=False)


def _as_cells(row: dict[str, Any]) -> dict[str, str]:
    """The JSON row as the CSV import's cells (text), so both go through one set of rules."""
    cells = {k: "" if v is None else str(v) for k, v in row.items()}
    if isinstance(row.get("stockout"), bool):
        cells["stockout"] = "yes" if row["stockout"] else "no"
    return cells


class SalesHistoryViewSet(viewsets.GenericViewSet):
    """Import pre-Keel daily sales, as the Imports page's sales-history CSV does."""

    serializer_class = SalesHistoryRequestSerializer
    pagination_class = None
    required_permissions = {"create": "forecasting.manage"}

    @extend_schema(
        request=SalesHistoryRequestSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: SalesHistoryResultSerializer, **error_responses(400, 403)},
    )
    @idempotent
    def create(self, request) -> Response:
        """Upsert up to 10,000 rows `{date, sku, units, channel?, warehouse?, revenue?,
        stockout?}` all-or-nothing. Every bad row is reported as `rows.<index>.<field>`
        with the CSV import's codes (`unknown_sku`, `overlaps_orders`, …); nothing is
        written then. Each row is that day's total, so sending it again changes nothing.
        Demand history and segments are updated before the answer."""
        body = SalesHistoryRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        errors: dict[str, dict[str, list]] = {}
        records = []
        for index, raw in enumerate(body.validated_data["rows"]):
            unknown = sorted(set(raw) - set(history_import.COLUMNS))
            row = SalesHistoryRowSerializer(data=raw)
            if unknown:
                message = f"Unknown fields: {', '.join(unknown)}."
                errors[str(index)] = {unknown[0]: [ErrorDetail(message, "unknown_field")]}
            elif not row.is_valid():
                errors[str(index)] = row.errors
            else:
                records.append((index, _as_cells(raw)))
        plan = history_import.plan_records([cells for _, cells in records])
        for problem in plan.problems:
            index = str(records[problem.line][0])
            errors.setdefault(index, {}).setdefault(problem.column or "row", []).append(
                ErrorDetail(problem.message, problem.code)
            )
        if errors:
            raise serializers.ValidationError({"rows": errors}, code="invalid_rows")
        with transaction.atomic():
            result = history_import.write_sales(plan.rows)
        return Response(SalesHistoryResultSerializer(result).data)


def register(router: BaseRouter) -> None:
    """Add this app's viewsets to the brand API router."""
    router.register("forecasts", ForecastViewSet, basename="forecast")
    router.register("demand-history", DemandHistoryViewSet, basename="demandhistory")
    router.register("forecast-runs", ForecastRunViewSet, basename="forecastrun")
    router.register("segments", SegmentViewSet, basename="segment")
    router.register("sales-history", SalesHistoryViewSet, basename="saleshistory")
