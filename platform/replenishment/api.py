"""REST API of the replenishment app, registered on the brand API router by config.api_urls.

- `/replenishment/recommendations/` — GET (filters `day`, `state`, `status`, `warehouse`,
  `supplier`, `sku`); `POST {id}/create-po/` drafts and submits a PO for one;
  `POST create-pos/` with `{"ids": [...]}` drafts one PO per supplier × warehouse;
  `POST {id}/pull-forward/`, `POST {id}/slow-down/` (`po`, `option`: delay | shrink |
  cancel), `POST {id}/dismiss/` (`reason`).
- `/replenishment/transfer-suggestions/` — GET (filters `status`, `day`, `sku`);
  `POST {id}/accept/` ships the transfer, `POST {id}/dismiss/`.
- `/replenishment/settings/current/` — GET, PATCH.

The actor is the API key or the signed-in person, so keys get exactly their scope's rights.
"""

from __future__ import annotations

from decimal import Decimal

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.routers import BaseRouter

from config.api import IDEMPOTENCY_KEY, QueryFilter, QueryParamFilter, error_responses
from idempotency.services import idempotent
from inventory.models import WarehouseKind
from purchasing.models import PurchaseOrder
from replenishment import services
from replenishment.models import (
    Recommendation,
    RecommendationStatus,
    ReplenishmentSettings,
    State,
    TransferStatus,
    TransferSuggestion,
)


def _actor(request):
    return request.auth if request.auth is not None else request.user


def _id_filter(lookup: str, what: str) -> QueryFilter:
    return QueryFilter(
        serializers.IntegerField(min_value=1), lambda qs, v: qs.filter(**{lookup: v}), what
    )


def _choice_filter(lookup: str, choices, what: str) -> QueryFilter:
    return QueryFilter(
        serializers.ChoiceField(choices=choices), lambda qs, v: qs.filter(**{lookup: v}), what
    )


def _day_filter() -> QueryFilter:
    return QueryFilter(serializers.DateField(), lambda qs, v: qs.filter(day=v), "Plan day.")


class RecommendationSerializer(serializers.ModelSerializer):
    sku_code = serializers.CharField(source="sku.code", read_only=True)
    warehouse_code = serializers.CharField(source="warehouse.code", read_only=True)
    supplier_code = serializers.CharField(source="supplier.code", read_only=True, default=None)
    purchase_order_number = serializers.CharField(
        source="purchase_order.number", read_only=True, default=None
    )

    class Meta:
        model = Recommendation
        fields = [
            "id",
            "day",
            "sku",
            "sku_code",
            "warehouse",
            "warehouse_code",
            "state",
            "reason",
            "segment",
            "forecast_method",
            "daily_mean",
            "daily_std",
            "velocity_7",
            "velocity_28",
            "lead_time_mean",
            "lead_time_std",
            "lead_time_source",
            "lead_time_samples",
            "service_level",
            "review_period_days",
            "safety_stock",
            "reorder_point",
            "order_up_to",
            "available",
            "on_order",
            "backorders",
            "next_receipt_on",
            "projected_stockout_on",
            "suggested_quantity",
            "supplier",
            "supplier_code",
            "moq",
            "case_pack",
            "unit_cost",
            "currency",
            "action",
            "proposal",
            "status",
            "purchase_order",
            "purchase_order_number",
            "acted_at",
            "acted_by_label",
            "outcome",
        ]
        read_only_fields = fields


class PurchaseOrderRefSerializer(serializers.ModelSerializer):
    class Meta:
        model = PurchaseOrder
        fields = ["id", "number", "state", "supplier", "warehouse", "expected_on"]
        read_only_fields = fields


class CreatePOsSerializer(serializers.Serializer):
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), allow_empty=False, max_length=1000
    )


class SlowDownSerializer(serializers.Serializer):
    po = serializers.IntegerField(min_value=1)
    option = serializers.ChoiceField(choices=["delay", "shrink", "cancel"])


class DismissSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class RecommendationViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """The daily plan's rows: one per SKU × warehouse × day, with every number used."""

    queryset = Recommendation.objects.select_related(
        "sku", "warehouse", "supplier", "purchase_order"
    ).order_by("-id")
    serializer_class = RecommendationSerializer
    filter_backends = [QueryParamFilter]
    query_filters = {
        "day": _day_filter(),
        "state": _choice_filter("state", State.choices, "State."),
        "status": _choice_filter("status", RecommendationStatus.choices, "Status."),
        "warehouse": _id_filter("warehouse_id", "Warehouse id."),
        "supplier": _id_filter("supplier_id", "Supplier id."),
        "sku": _id_filter("sku_id", "SKU id."),
    }
    required_permissions = {
        "list": "forecasting.view",
        "retrieve": "forecasting.view",
        "create_po": "purchasing.draft",
        "create_pos": "purchasing.draft",
        "pull_forward": "purchasing.draft",
        "slow_down": "purchasing.draft",
        "dismiss": "forecasting.manage",
    }

    def _answer(self, rec: Recommendation, http_status=status.HTTP_200_OK) -> Response:
        fresh = self.get_queryset().get(pk=rec.pk)
        return Response(RecommendationSerializer(fresh).data, status=http_status)

    @extend_schema(
        request=None,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: PurchaseOrderRefSerializer, **error_responses(400, 404, 422)},
    )
    @action(detail=True, methods=["post"], url_path="create-po")
    @idempotent
    def create_po(self, request, pk=None) -> Response:
        """Draft and submit a PO for this recommendation (approvals decide what happens)."""
        rec = self.get_object()
        pos = services.create_draft_pos([rec], actor=_actor(request))
        if not pos:
            raise services.ReplenishmentError(
                "Nothing to order here (already acted on, no supplier or no quantity).",
                code="nothing_to_order",
            )
        return Response(PurchaseOrderRefSerializer(pos[0]).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=CreatePOsSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: PurchaseOrderRefSerializer(many=True), **error_responses(400, 422)},
    )
    # Not a list: no pagination or list filters (the schema would promise a page).
    @action(
        detail=False,
        methods=["post"],
        url_path="create-pos",
        pagination_class=None,
        filter_backends=[],
    )
    @idempotent
    def create_pos(self, request) -> Response:
        """One PO per supplier × warehouse for the listed recommendations."""
        data = CreatePOsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        pos = services.create_draft_pos(data.validated_data["ids"], actor=_actor(request))
        return Response(
            PurchaseOrderRefSerializer(pos, many=True).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(
        request=None,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: RecommendationSerializer, **error_responses(400, 404, 422)},
    )
    @action(detail=True, methods=["post"], url_path="pull-forward")
    @idempotent
    def pull_forward(self, request, pk=None) -> Response:
        rec = self.get_object()
        services.pull_forward(rec, actor=_actor(request))
        return self._answer(rec)

    @extend_schema(
        request=SlowDownSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: RecommendationSerializer, **error_responses(400, 404, 422)},
    )
    @action(detail=True, methods=["post"], url_path="slow-down")
    @idempotent
    def slow_down(self, request, pk=None) -> Response:
        rec = self.get_object()
        data = SlowDownSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.apply_slowdown(
            rec,
            po_id=data.validated_data["po"],
            option=data.validated_data["option"],
            actor=_actor(request),
        )
        return self._answer(rec)

    @extend_schema(
        request=DismissSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: RecommendationSerializer, **error_responses(400, 404, 422)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def dismiss(self, request, pk=None) -> Response:
        rec = self.get_object()
        data = DismissSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.dismiss(rec, actor=_actor(request), reason=data.validated_data["reason"])
        return self._answer(rec)


class TransferSuggestionSerializer(serializers.ModelSerializer):
    sku_code = serializers.CharField(source="sku.code", read_only=True)
    from_warehouse_code = serializers.CharField(source="from_warehouse.code", read_only=True)
    to_warehouse_code = serializers.CharField(source="to_warehouse.code", read_only=True)

    class Meta:
        model = TransferSuggestion
        fields = [
            "id",
            "day",
            "sku",
            "sku_code",
            "from_warehouse",
            "from_warehouse_code",
            "to_warehouse",
            "to_warehouse_code",
            "quantity",
            "reason",
            "status",
            "transfer",
            "decided_at",
            "decided_by_label",
        ]
        read_only_fields = fields


class TransferSuggestionViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Moves from a long warehouse to a short one; accepting ships an inventory transfer."""

    queryset = TransferSuggestion.objects.select_related(
        "sku", "from_warehouse", "to_warehouse"
    ).order_by("-id")
    serializer_class = TransferSuggestionSerializer
    filter_backends = [QueryParamFilter]
    query_filters = {
        "day": _day_filter(),
        "status": _choice_filter("status", TransferStatus.choices, "Status."),
        "sku": _id_filter("sku_id", "SKU id."),
    }
    required_permissions = {
        "list": "forecasting.view",
        "retrieve": "forecasting.view",
        "accept": "stock.move",
        "dismiss": "forecasting.manage",
    }

    def _answer(self, suggestion: TransferSuggestion) -> Response:
        fresh = self.get_queryset().get(pk=suggestion.pk)
        return Response(TransferSuggestionSerializer(fresh).data)

    @extend_schema(
        request=None,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: TransferSuggestionSerializer, **error_responses(400, 404, 409, 422)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def accept(self, request, pk=None) -> Response:
        suggestion = self.get_object()
        services.accept_transfer(suggestion, actor=_actor(request))
        return self._answer(suggestion)

    @extend_schema(
        request=None,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: TransferSuggestionSerializer, **error_responses(400, 404, 422)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def dismiss(self, request, pk=None) -> Response:
        suggestion = self.get_object()
        services.dismiss_transfer(suggestion, actor=_actor(request))
        return self._answer(suggestion)


class SettingsSerializer(serializers.ModelSerializer):
    accelerate_threshold = serializers.DecimalField(
        max_digits=4, decimal_places=3, min_value=Decimal("0.001"), max_value=Decimal("5")
    )
    brake_threshold = serializers.DecimalField(
        max_digits=4,
        decimal_places=3,
        min_value=Decimal("0.001"),
        max_value=Decimal("0.999"),
    )
    transfer_warehouse_kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=WarehouseKind.choices), required=False
    )

    class Meta:
        model = ReplenishmentSettings
        fields = [
            "accelerate_threshold",
            "brake_threshold",
            "default_review_period_days",
            "auto_draft_pos",
            "transfers_enabled",
            "transfer_min_quantity",
            "transfer_warehouse_kinds",
            "updated_at",
        ]
        read_only_fields = ["updated_at"]


class SettingsViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The brand's replenishment settings: one object, at `current`."""

    serializer_class = SettingsSerializer
    http_method_names = ["get", "patch", "head", "options"]
    required_permissions = {"retrieve": "forecasting.view", "partial_update": "forecasting.manage"}

    def get_queryset(self):
        return ReplenishmentSettings.objects.all()

    def get_object(self):
        # Any id routes here (so authentication answers first, as everywhere), but only
        # `current` names the object.
        if self.kwargs.get(self.lookup_field) != "current":
            raise Http404
        row = ReplenishmentSettings.current()
        self.check_object_permissions(self.request, row)
        return row

    @extend_schema(responses={200: SettingsSerializer, **error_responses(400, 403)})
    def partial_update(self, request, pk=None) -> Response:
        data = SettingsSerializer(self.get_object(), data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        row = services.update_settings(actor=_actor(request), **data.validated_data)
        return Response(SettingsSerializer(row).data)


def register(router: BaseRouter) -> None:
    """Add this app's viewsets to the brand API router."""
    router.register(
        "replenishment/recommendations", RecommendationViewSet, basename="recommendation"
    )
    router.register(
        "replenishment/transfer-suggestions",
        TransferSuggestionViewSet,
        basename="transfersuggestion",
    )
    router.register("replenishment/settings", SettingsViewSet, basename="replenishmentsettings")
