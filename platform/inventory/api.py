"""REST endpoints for warehouses and stock. Business rules live in inventory.services.

Every stock change goes through the services (receive, adjust, change_status,
record_return, ship_transfer, receive_transfer, reserve, release), so the API moves stock
exactly like the UI, imports and workers do. Refusals come back in the one error format:
insufficient stock is 409 `insufficient_stock` with `details`; other refusals are 400.

Decisions:
- POST /movements/ writes one operation and answers 201 with its ledger rows (a status
  change writes two). Transfers and reservations have their own endpoints because they
  are documents with a life of their own (receive, release).
- `available` on a stock level is available-to-promise for sellable rows of active
  warehouses (quantity − reserved − the warehouse's safety buffer, never below 0), 0 for
  sellable rows of inactive warehouses and null for other statuses, which are never
  promised.
- Receiving a transfer without `lines` receives the rest of every line.
- An adjustment goes through the brand's approval policy (inventory.services.
  request_adjustment): above the threshold it answers 202 with the waiting request and
  posts only when approved; `POST /approval-requests/{id}/approve/` decides it.
"""

from __future__ import annotations

import datetime
import re
import zoneinfo

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Case, F, IntegerField, Q, Value, When
from django.db.models.functions import Greatest
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from approvals.models import ApprovalRequest, RequestState
from catalog.models import SKU
from config.api import IDEMPOTENCY_KEY, QueryFilter, QueryParamFilter, error_responses
from idempotency.services import idempotent
from inventory import services
from inventory.models import (
    Capability,
    MovementKind,
    ReasonCode,
    Reservation,
    ReservationKind,
    ReservationStatus,
    StockBalance,
    StockMovement,
    StockStatus,
    Transfer,
    TransferStatus,
    Warehouse,
    WarehouseKind,
)
from inventory.services import (
    WAREHOUSE_FIELDS,
    Reference,
    ReserveLine,
    create_warehouse,
    update_warehouse,
)

SELLABLE = StockStatus.SELLABLE


def _id_filter(lookup: str, what: str) -> QueryFilter:
    return QueryFilter(
        serializers.IntegerField(min_value=1), lambda qs, v: qs.filter(**{lookup: v}), what
    )


def _choice_filter(lookup: str, choices, what: str) -> QueryFilter:
    return QueryFilter(
        serializers.ChoiceField(choices=choices), lambda qs, v: qs.filter(**{lookup: v}), what
    )


# --- Warehouses ------------------------------------------------------------------------

# Hours and minutes, optionally seconds (a fraction is accepted and dropped). No offset:
# a cutoff is a time of day in the warehouse's own timezone.
LOCAL_TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?$"


@extend_schema_field(
    {"type": "string", "pattern": LOCAL_TIME_PATTERN, "example": "16:30:00"},
)
class LocalTimeField(serializers.TimeField):
    """A wall-clock time of day, written and read as HH:MM:SS.

    Documented with a pattern rather than `format: time`: JSON Schema's `time` is RFC 3339
    full-time, which requires an offset, and a warehouse cutoff has none (clients that
    checked formats rejected every "16:30:00" we sent). Offsets are refused on input, not
    silently dropped, for the same reason.
    """

    default_error_messages = {
        "invalid": "Write a time of day as HH:MM or HH:MM:SS, without a UTC offset.",
    }

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("format", "%H:%M:%S")
        super().__init__(**kwargs)

    def to_internal_value(self, value: object) -> datetime.time:
        if not isinstance(value, str) or not re.fullmatch(LOCAL_TIME_PATTERN, value):
            self.fail("invalid", format="HH:MM[:SS]")
        return datetime.time.fromisoformat(value).replace(microsecond=0)


class WarehouseSerializer(serializers.ModelSerializer):
    country = serializers.RegexField(
        r"^[A-Z]{2}$", required=False, help_text="ISO 3166-1 alpha-2, e.g. US."
    )
    timezone = serializers.CharField(
        max_length=64, required=False, help_text="IANA timezone, e.g. America/Chicago."
    )
    capabilities = serializers.ListField(
        child=serializers.ChoiceField(choices=Capability.choices), required=False
    )
    cutoff_time = LocalTimeField(
        required=False,
        allow_null=True,
        help_text="Daily order cutoff in the warehouse's timezone, HH:MM:SS.",
    )
    latitude = serializers.DecimalField(
        max_digits=9,
        decimal_places=6,
        min_value=-90,
        max_value=90,
        required=False,
        allow_null=True,
    )
    longitude = serializers.DecimalField(
        max_digits=9,
        decimal_places=6,
        min_value=-180,
        max_value=180,
        required=False,
        allow_null=True,
    )

    class Meta:
        model = Warehouse
        fields = ["id", *WAREHOUSE_FIELDS, "created_at"]
        read_only_fields = ["id", "created_at"]

    def validate_code(self, value: str) -> str:
        taken = Warehouse.objects.filter(code__iexact=value)
        if self.instance is not None:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise serializers.ValidationError("Another warehouse has this code.", code="unique")
        return value

    def validate_timezone(self, value: str) -> str:
        if value not in zoneinfo.available_timezones():
            raise serializers.ValidationError("Unknown IANA timezone.", code="invalid_timezone")
        return value

    def validate_capabilities(self, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class WarehouseViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Warehouses. They are never deleted: PATCH `is_active: false` retires one."""

    queryset = Warehouse.objects.all()
    serializer_class = WarehouseSerializer
    http_method_names = ["get", "post", "patch", "head", "options"]
    filter_backends = [QueryParamFilter]
    query_filters = {
        "is_active": QueryFilter(
            serializers.BooleanField(), lambda qs, v: qs.filter(is_active=v), "Active or not."
        ),
        "kind": _choice_filter("kind", WarehouseKind.choices, "Warehouse kind."),
    }
    required_permissions = {
        "list": "stock.view",
        "retrieve": "stock.view",
        "create": "warehouses.edit",
        "partial_update": "warehouses.edit",
    }

    @extend_schema(
        parameters=[IDEMPOTENCY_KEY],
        responses={201: WarehouseSerializer, **error_responses(400, 422)},
    )
    @idempotent
    def create(self, request, *args, **kwargs) -> Response:
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer) -> None:
        serializer.instance = create_warehouse(**serializer.validated_data)

    def perform_update(self, serializer) -> None:
        serializer.instance = update_warehouse(serializer.instance, **serializer.validated_data)


# --- Stock levels ----------------------------------------------------------------------


def balances_with_available():
    """StockBalance rows annotated with `available` as inventory.services.atp defines it."""
    return StockBalance.objects.select_related("sku", "warehouse").annotate(
        available=Case(
            When(
                status=SELLABLE,
                warehouse__is_active=True,
                then=Greatest(
                    F("quantity") - F("reserved") - F("warehouse__safety_buffer"), Value(0)
                ),
            ),
            When(status=SELLABLE, then=Value(0)),
            default=None,
            output_field=IntegerField(),
        )
    )


class StockLevelSerializer(serializers.ModelSerializer):
    sku_code = serializers.CharField(source="sku.code", read_only=True)
    warehouse_code = serializers.CharField(source="warehouse.code", read_only=True)
    available = serializers.IntegerField(
        read_only=True,
        allow_null=True,
        help_text="Available to promise (sellable rows only; null for other statuses).",
    )

    class Meta:
        model = StockBalance
        fields = [
            "id",
            "sku",
            "sku_code",
            "warehouse",
            "warehouse_code",
            "status",
            "quantity",
            "reserved",
            "available",
            "updated_at",
        ]
        read_only_fields = fields


class StockLevelViewSet(viewsets.ReadOnlyModelViewSet):
    """Stock per SKU × warehouse × status. Change it through movements, transfers and
    reservations."""

    serializer_class = StockLevelSerializer
    filter_backends = [QueryParamFilter]
    query_filters = {
        "sku": _id_filter("sku_id", "SKU id."),
        "sku_code": QueryFilter(
            serializers.CharField(max_length=64),
            lambda qs, v: qs.filter(sku__code__iexact=v),
            "SKU code (case-insensitive).",
        ),
        "warehouse": _id_filter("warehouse_id", "Warehouse id."),
        "status": _choice_filter("status", StockStatus.choices, "Stock status."),
        "below": QueryFilter(
            serializers.IntegerField(),
            lambda qs, v: qs.filter(available__lt=v),
            "Sellable rows whose available-to-promise is below this number.",
        ),
    }
    required_permissions = {"list": "stock.view", "retrieve": "stock.view"}

    def get_queryset(self):
        return balances_with_available()


# --- Movements -------------------------------------------------------------------------


class MovementSerializer(serializers.ModelSerializer):
    sku_code = serializers.CharField(source="sku.code", read_only=True)
    warehouse_code = serializers.CharField(source="warehouse.code", read_only=True)

    class Meta:
        model = StockMovement
        fields = [
            "id",
            "operation_id",
            "created_at",
            "kind",
            "sku",
            "sku_code",
            "warehouse",
            "warehouse_code",
            "status",
            "quantity",
            "balance_after",
            "reason_code",
            "reference_type",
            "reference_id",
            "note",
            "actor_label",
        ]
        read_only_fields = fields


class OperationSerializer(serializers.Serializer):
    operation_id = serializers.UUIDField()
    movements = MovementSerializer(many=True)


class PendingAdjustmentSerializer(serializers.Serializer):
    """An adjustment waiting for approval: nothing is in the ledger yet."""

    adjustment_request = serializers.IntegerField(source="pk")
    state = serializers.CharField(help_text="pending until approved, then posted.")
    sku = serializers.IntegerField(source="sku_id")
    warehouse = serializers.IntegerField(source="warehouse_id")
    status = serializers.CharField()
    delta = serializers.IntegerField()
    value = serializers.DecimalField(max_digits=16, decimal_places=4, allow_null=True)
    currency = serializers.CharField()
    approval_request = serializers.SerializerMethodField(
        help_text="Id of the approval request (see /api/v1/approval-requests/)."
    )

    def get_approval_request(self, obj) -> int | None:
        return (
            ApprovalRequest.objects.for_subject(services.STOCK_ADJUSTMENT, obj.pk)
            .filter(state=RequestState.PENDING)
            .values_list("pk", flat=True)
            .first()
        )


# Which body fields each kind takes: (required, optional). Anything else is refused so a
# client never believes a field it sent (say `delta` on a receipt) had an effect.
MOVEMENT_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    MovementKind.RECEIPT: ({"quantity"}, {"status", "reference_type", "reference_id", "note"}),
    MovementKind.ADJUSTMENT: ({"delta", "reason_code"}, {"status", "note"}),
    MovementKind.RETURN: ({"quantity"}, {"status", "reference_type", "reference_id", "note"}),
    MovementKind.STATUS_CHANGE: ({"quantity", "from_status", "to_status"}, {"note"}),
}
_ALWAYS = {"kind", "sku", "warehouse"}
MOVEMENT_REQUEST_KINDS = [(k, MovementKind(k).label) for k in MOVEMENT_FIELDS]


class MovementCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=MOVEMENT_REQUEST_KINDS,
        help_text="receipt and return take quantity; adjustment takes delta and "
        "reason_code; status_change takes quantity, from_status and to_status.",
    )
    sku = serializers.PrimaryKeyRelatedField(queryset=SKU.objects.all())
    warehouse = serializers.PrimaryKeyRelatedField(queryset=Warehouse.objects.all())
    quantity = serializers.IntegerField(required=False, help_text="Units, above zero.")
    delta = serializers.IntegerField(required=False, help_text="Signed units (adjustment).")
    status = serializers.ChoiceField(
        choices=StockStatus.choices, required=False, help_text="Default sellable."
    )
    reason_code = serializers.ChoiceField(choices=ReasonCode.choices, required=False)
    from_status = serializers.ChoiceField(choices=StockStatus.choices, required=False)
    to_status = serializers.ChoiceField(choices=StockStatus.choices, required=False)
    reference_type = serializers.CharField(max_length=50, required=False)
    reference_id = serializers.CharField(max_length=64, required=False)
    note = serializers.CharField(max_length=500, required=False, allow_blank=True)

    def validate(self, attrs: dict) -> dict:
        required, optional = MOVEMENT_FIELDS[attrs["kind"]]
        errors = {}
        for name in sorted(required - set(attrs)):
            errors[name] = serializers.ErrorDetail(
                f"Required for a {attrs['kind']}.", code="required"
            )
        for name in sorted(set(attrs) - required - optional - _ALWAYS):
            errors[name] = serializers.ErrorDetail(
                f"Not used by a {attrs['kind']}.", code="not_allowed"
            )
        # A reference is a (type, id) pair; half of one identifies nothing.
        for name, other in (("reference_type", "reference_id"), ("reference_id", "reference_type")):
            if name in attrs and other not in attrs and other not in errors:
                errors[other] = serializers.ErrorDetail(f"Required with {name}.", code="required")
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


def apply_movement(
    data: dict, *, requested_by: object = None
) -> services.Operation | services.AdjustmentOutcome:
    """Hand a validated movement request to the service for its kind. Adjustments go
    through the approval policy and may come back waiting instead of posted."""
    kind, sku, warehouse = data["kind"], data["sku"], data["warehouse"]
    note = data.get("note", "")
    reference = Reference(data.get("reference_type", ""), data.get("reference_id", ""))
    stock_status = data.get("status", SELLABLE)
    if kind == MovementKind.RECEIPT:
        return services.receive(
            sku=sku,
            warehouse=warehouse,
            quantity=data["quantity"],
            status=stock_status,
            reference=reference,
            note=note,
        )
    if kind == MovementKind.RETURN:
        return services.record_return(
            sku=sku,
            warehouse=warehouse,
            quantity=data["quantity"],
            status=stock_status,
            reference=reference,
            note=note,
        )
    if kind == MovementKind.ADJUSTMENT:
        return services.request_adjustment(
            sku=sku,
            warehouse=warehouse,
            delta=data["delta"],
            reason_code=data["reason_code"],
            status=stock_status,
            note=note,
            requested_by=requested_by,
        )
    return services.change_status(
        sku=sku,
        warehouse=warehouse,
        quantity=data["quantity"],
        from_status=data["from_status"],
        to_status=data["to_status"],
        note=note,
    )


class MovementViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The stock ledger, newest first. Rows are never changed or deleted."""

    queryset = StockMovement.objects.select_related("sku", "warehouse")
    serializer_class = MovementSerializer
    filter_backends = [QueryParamFilter]
    query_filters = {
        "sku": _id_filter("sku_id", "SKU id."),
        "warehouse": _id_filter("warehouse_id", "Warehouse id."),
        "kind": _choice_filter("kind", MovementKind.choices, "Movement kind."),
        "since": QueryFilter(
            serializers.DateTimeField(),
            lambda qs, v: qs.filter(created_at__gte=v),
            "Written at or after this time (ISO 8601).",
        ),
        "operation_id": QueryFilter(
            serializers.UUIDField(),
            lambda qs, v: qs.filter(operation_id=v),
            "Movements of one operation.",
        ),
    }
    required_permissions = {
        "list": "stock.view",
        "retrieve": "stock.view",
        "create": "stock.move",
    }

    @extend_schema(
        request=MovementCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            201: OperationSerializer,
            202: PendingAdjustmentSerializer,
            **error_responses(400, 409, 422),
        },
    )
    @idempotent
    def create(self, request) -> Response:
        """Record a receipt, adjustment, return or status change. Honours Idempotency-Key.

        An adjustment the brand's approval policy holds back answers 202 with the waiting
        request instead of ledger rows; it posts when approved.
        """
        data = MovementCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        person = request.user if request.auth is None else None
        result = apply_movement(data.validated_data, requested_by=person)
        if isinstance(result, services.AdjustmentOutcome):
            if result.pending:
                return Response(
                    PendingAdjustmentSerializer(result.request).data,
                    status=status.HTTP_202_ACCEPTED,
                )
            result = result.operation
        operation = result
        for movement in operation.movements:
            # The service wrote these rows for exactly this SKU and warehouse.
            movement.sku = data.validated_data["sku"]
            movement.warehouse = data.validated_data["warehouse"]
        body = OperationSerializer(
            {"operation_id": operation.operation_id, "movements": operation.movements}
        ).data
        return Response(body, status=status.HTTP_201_CREATED)


# --- Transfers -------------------------------------------------------------------------


class TransferLineSerializer(serializers.Serializer):
    sku = serializers.IntegerField(source="sku_id")
    sku_code = serializers.CharField(source="sku.code")
    quantity = serializers.IntegerField()
    received_quantity = serializers.IntegerField()


class TransferSerializer(serializers.ModelSerializer):
    source_code = serializers.CharField(source="source.code", read_only=True)
    destination_code = serializers.CharField(source="destination.code", read_only=True)
    lines = TransferLineSerializer(many=True, read_only=True)

    class Meta:
        model = Transfer
        fields = [
            "id",
            "reference",
            "source",
            "source_code",
            "destination",
            "destination_code",
            "status",
            "note",
            "lines",
            "created_at",
            "received_at",
        ]
        read_only_fields = fields


class LineInputSerializer(serializers.Serializer):
    sku = serializers.PrimaryKeyRelatedField(queryset=SKU.objects.all())
    quantity = serializers.IntegerField(min_value=1)


class TransferCreateSerializer(serializers.Serializer):
    source = serializers.PrimaryKeyRelatedField(queryset=Warehouse.objects.all())
    destination = serializers.PrimaryKeyRelatedField(queryset=Warehouse.objects.all())
    lines = LineInputSerializer(many=True, allow_empty=False)
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class TransferReceiveSerializer(serializers.Serializer):
    lines = LineInputSerializer(
        many=True,
        required=False,
        help_text="Units received now per SKU; omit to receive the rest of every line.",
    )
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class TransferViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Stock moving between two warehouses: shipped (in transit at the destination), then
    received into the destination's sellable stock, in one go or in parts."""

    queryset = Transfer.objects.select_related("source", "destination").prefetch_related(
        "lines__sku"
    )
    serializer_class = TransferSerializer
    filter_backends = [QueryParamFilter]
    query_filters = {
        "status": _choice_filter("status", TransferStatus.choices, "Transfer status."),
        "warehouse": QueryFilter(
            serializers.IntegerField(min_value=1),
            lambda qs, v: qs.filter(Q(source_id=v) | Q(destination_id=v)),
            "Warehouse id, as source or destination.",
        ),
    }
    required_permissions = {
        "list": "stock.view",
        "retrieve": "stock.view",
        "create": "stock.move",
        "receive": "stock.move",
    }

    def _detail(self, transfer: Transfer, http_status: int = status.HTTP_200_OK) -> Response:
        fresh = self.get_queryset().get(pk=transfer.pk)
        return Response(TransferSerializer(fresh).data, status=http_status)

    @extend_schema(
        request=TransferCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: TransferSerializer, **error_responses(400, 409, 422)},
    )
    @idempotent
    def create(self, request) -> Response:
        """Ship stock from source (sellable) into transit to destination."""
        data = TransferCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        transfer = services.ship_transfer(
            source=data.validated_data["source"],
            destination=data.validated_data["destination"],
            lines=[(line["sku"], line["quantity"]) for line in data.validated_data["lines"]],
            note=data.validated_data["note"],
        )
        return self._detail(transfer, status.HTTP_201_CREATED)

    @extend_schema(
        request=TransferReceiveSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: TransferSerializer, **error_responses(400, 409, 422)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def receive(self, request, pk=None) -> Response:
        """Receive in-transit stock into the destination's sellable stock."""
        transfer = self.get_object()
        data = TransferReceiveSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        quantities: dict[int, int] = {}
        for line in data.validated_data.get("lines", []):
            quantities[line["sku"].pk] = quantities.get(line["sku"].pk, 0) + line["quantity"]
        transfer = services.receive_transfer(
            transfer=transfer, quantities=quantities or None, note=data.validated_data["note"]
        )
        return self._detail(transfer)


# --- Reservations ----------------------------------------------------------------------


class ReservationSerializer(serializers.ModelSerializer):
    sku_code = serializers.CharField(source="sku.code", read_only=True)
    warehouse_code = serializers.CharField(source="warehouse.code", read_only=True)

    class Meta:
        model = Reservation
        fields = [
            "id",
            "kind",
            "status",
            "sku",
            "sku_code",
            "warehouse",
            "warehouse_code",
            "quantity",
            "bundle_sku",
            "reference_type",
            "reference_id",
            "note",
            "expires_at",
            "created_at",
            "closed_at",
        ]
        read_only_fields = fields


class ReserveLineSerializer(serializers.Serializer):
    sku = serializers.PrimaryKeyRelatedField(
        queryset=SKU.objects.all(), help_text="A stocked SKU or a bundle (reserves components)."
    )
    warehouse = serializers.PrimaryKeyRelatedField(queryset=Warehouse.objects.all())
    quantity = serializers.IntegerField(min_value=1)


class ReservationCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ReservationKind.choices)
    reference_type = serializers.CharField(
        max_length=50, help_text="What holds the stock, e.g. customer, channel, order_line."
    )
    reference_id = serializers.CharField(max_length=64)
    lines = ReserveLineSerializer(many=True, allow_empty=False)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class ReservationListSerializer(serializers.Serializer):
    reservations = ReservationSerializer(many=True)


class ReservationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Typed reservations (order line, manual hold, channel buffer) tied to a reference."""

    queryset = Reservation.objects.select_related("sku", "warehouse")
    serializer_class = ReservationSerializer
    filter_backends = [QueryParamFilter]
    query_filters = {
        "reference": QueryFilter(
            serializers.CharField(max_length=64),
            lambda qs, v: qs.filter(reference_id=v),
            "Reference id (exact).",
        ),
        "reference_type": QueryFilter(
            serializers.CharField(max_length=50),
            lambda qs, v: qs.filter(reference_type=v),
            "Reference type (exact).",
        ),
        "status": _choice_filter("status", ReservationStatus.choices, "Reservation status."),
        "kind": _choice_filter("kind", ReservationKind.choices, "Reservation kind."),
        "sku": _id_filter("sku_id", "SKU id."),
        "warehouse": _id_filter("warehouse_id", "Warehouse id."),
    }
    required_permissions = {
        "list": "stock.view",
        "retrieve": "stock.view",
        "create": "stock.reserve",
        "release": "stock.reserve",
    }

    @extend_schema(
        request=ReservationCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: ReservationListSerializer, **error_responses(400, 409, 422)},
    )
    @idempotent
    def create(self, request) -> Response:
        """Reserve every line or none. Bundles reserve their components."""
        data = ReservationCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        created = self._reserve(values)
        rows = self.get_queryset().filter(pk__in=[r.pk for r in created]).order_by("id")
        body = ReservationListSerializer({"reservations": rows}).data
        return Response(body, status=status.HTTP_201_CREATED)

    @staticmethod
    def _reserve(values: dict) -> list[Reservation]:
        return services.reserve(
            lines=[
                ReserveLine(ln["sku"], ln["warehouse"], ln["quantity"]) for ln in values["lines"]
            ],
            kind=values["kind"],
            reference=Reference(values["reference_type"], values["reference_id"]),
            expires_at=values["expires_at"],
            note=values["note"],
        )

    @extend_schema(
        request=None,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: ReservationSerializer, **error_responses(400, 422)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def release(self, request, pk=None) -> Response:
        """Give the reserved units back to available stock."""
        reservation = self.get_object()
        if not services.release(ids=[reservation.pk]):
            reservation.refresh_from_db(fields=["status"])
            raise DjangoValidationError(
                f"This reservation is already {reservation.get_status_display().lower()}.",
                code="reservation_not_active",
            )
        return Response(ReservationSerializer(self.get_queryset().get(pk=reservation.pk)).data)
