"""REST API of the purchasing app, registered on the brand API router by config.api_urls.

Endpoints: /suppliers/ (CRUD; delete only refuses when POs name it), /supplier-skus/,
/purchase-orders/ (list, retrieve, create a draft, PATCH lines, actions submit, receive,
cancel, reschedule, close; /pdf/ downloads the document). Business rules live in
purchasing.services, so the API behaves exactly like the pages.

Decisions:
- POSTs honour `Idempotency-Key`; `receive` also passes the key to the service as the
  receipt's operation key, so a retry after the idempotency window still posts once.
- A state that refuses an action (submitting a sent PO, receiving a draft) is 409 with
  the service's code; bad input is 400 with field errors.
"""

from __future__ import annotations

from typing import Any

from django.db.models import CharField, OuterRef, Subquery
from django.db.models.functions import Cast
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.routers import BaseRouter

from approvals.models import ApprovalRequest
from catalog.models import SKU
from config.api import IDEMPOTENCY_KEY, QueryFilter, QueryParamFilter, error_responses
from idempotency.services import idempotent
from inventory.models import Warehouse
from purchasing import services
from purchasing.documents import po_pdf
from purchasing.models import (
    POState,
    PurchaseOrder,
    PurchaseOrderLine,
    Receipt,
    ReceiptLine,
    ReceiptReason,
    Supplier,
    SupplierSKU,
)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"
    default_detail = "The purchase order's state does not allow this now."


def _call(function, *args: Any, **kwargs: Any) -> Any:
    try:
        return function(*args, **kwargs)
    except services.PurchasingConflict as exc:
        raise Conflict(" ".join(exc.messages), code=exc.code) from exc


# --- Suppliers ------------------------------------------------------------------------------


class SupplierSerializer(serializers.ModelSerializer):
    class Meta:
        model = Supplier
        fields = ["id", *services.SUPPLIER_FIELDS, "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        # The service checks the code case-insensitively and answers with a field error.
        validators: list = []
        extra_kwargs = {"code": {"validators": []}}


class SupplierViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Suppliers. Delete one only when no purchase order names it; else deactivate it."""

    queryset = Supplier.objects.all().order_by("id")
    serializer_class = SupplierSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    filter_backends = [QueryParamFilter]
    query_filters = {
        "is_active": QueryFilter(
            serializers.BooleanField(), lambda qs, v: qs.filter(is_active=v), "Active or not."
        ),
        "code": QueryFilter(
            serializers.CharField(max_length=32),
            lambda qs, v: qs.filter(code__iexact=v),
            "Supplier code (case-insensitive).",
        ),
    }
    required_permissions = {
        "list": "purchasing.view",
        "retrieve": "purchasing.view",
        "create": "suppliers.edit",
        "partial_update": "suppliers.edit",
        "destroy": "suppliers.edit",
    }

    @extend_schema(
        parameters=[IDEMPOTENCY_KEY],
        responses={201: SupplierSerializer, **error_responses(400, 403, 422)},
    )
    @idempotent
    def create(self, request, *args, **kwargs) -> Response:
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer) -> None:
        serializer.instance = services.create_supplier(
            actor=self.request.auth or self.request.user, **serializer.validated_data
        )

    def perform_update(self, serializer) -> None:
        serializer.instance = services.update_supplier(
            serializer.instance,
            actor=self.request.auth or self.request.user,
            **serializer.validated_data,
        )

    def perform_destroy(self, instance: Supplier) -> None:
        _call(services.delete_supplier, instance, actor=self.request.auth or self.request.user)


class SupplierSKUSerializer(serializers.ModelSerializer):
    supplier = serializers.PrimaryKeyRelatedField(queryset=Supplier.objects.all())
    sku = serializers.PrimaryKeyRelatedField(queryset=SKU.objects.all())
    sku_code = serializers.CharField(source="sku.code", read_only=True)
    currency = serializers.CharField(max_length=3, required=False)

    class Meta:
        model = SupplierSKU
        fields = [
            "id",
            "supplier",
            "sku",
            "sku_code",
            *services.SUPPLIER_SKU_FIELDS,
            "updated_at",
        ]
        read_only_fields = ["id", "sku_code", "updated_at"]
        validators: list = []


class SupplierSKUViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """A supplier's price-list entry for one SKU. POST creates or updates the
    (supplier, SKU) row; `is_preferred: true` takes the preference from any other."""

    queryset = SupplierSKU.objects.select_related("sku", "supplier").order_by("id")
    serializer_class = SupplierSKUSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    filter_backends = [QueryParamFilter]
    query_filters = {
        "supplier": QueryFilter(
            serializers.IntegerField(), lambda qs, v: qs.filter(supplier_id=v), "Supplier id."
        ),
        "sku": QueryFilter(
            serializers.IntegerField(), lambda qs, v: qs.filter(sku_id=v), "SKU id."
        ),
        "is_preferred": QueryFilter(
            serializers.BooleanField(), lambda qs, v: qs.filter(is_preferred=v), "Preferred."
        ),
    }
    required_permissions = {
        "list": "purchasing.view",
        "retrieve": "purchasing.view",
        "create": "suppliers.edit",
        "partial_update": "suppliers.edit",
        "destroy": "suppliers.edit",
    }

    @extend_schema(
        parameters=[IDEMPOTENCY_KEY],
        responses={201: SupplierSKUSerializer, **error_responses(400, 403, 409, 422)},
    )
    @idempotent
    def create(self, request, *args, **kwargs) -> Response:
        return super().create(request, *args, **kwargs)

    def _save(self, serializer, supplier: Supplier, sku: SKU) -> None:
        data = {k: v for k, v in serializer.validated_data.items() if k not in ("supplier", "sku")}
        serializer.instance = _call(
            services.save_supplier_sku,
            supplier=supplier,
            sku=sku,
            actor=self.request.auth or self.request.user,
            **data,
        )

    def perform_create(self, serializer) -> None:
        data = serializer.validated_data
        self._save(serializer, data["supplier"], data["sku"])

    def perform_update(self, serializer) -> None:
        row = serializer.instance
        self._save(serializer, row.supplier, row.sku)

    def perform_destroy(self, instance: SupplierSKU) -> None:
        services.delete_supplier_sku(instance, actor=self.request.auth or self.request.user)


# --- Purchase orders --------------------------------------------------------------------------


class LineSerializer(serializers.ModelSerializer):
    sku_code = serializers.CharField(source="sku.code", read_only=True)
    line_total = serializers.DecimalField(max_digits=18, decimal_places=4, read_only=True)
    outstanding = serializers.IntegerField(read_only=True)

    class Meta:
        model = PurchaseOrderLine
        fields = [
            "id",
            "sku",
            "sku_code",
            "quantity",
            "unit_cost",
            "line_total",
            "received_quantity",
            "outstanding",
            "closed_short",
        ]
        read_only_fields = fields


@extend_schema_field(
    {
        "type": "string",
        "enum": POState.values,
        "description": " · ".join(f"`{v}` {label}" for v, label in POState.choices),
    }
)
class POStateField(serializers.ChoiceField):
    """Inline enum in the schema: a shared `StateEnum` component would collide with the
    approvals request states (drf-spectacular then invents hashed names)."""

    def __init__(self, **kwargs):
        super().__init__(choices=POState.choices, **kwargs)


class PurchaseOrderSerializer(serializers.ModelSerializer):
    state = POStateField(read_only=True)
    lines = LineSerializer(many=True, read_only=True)
    total = serializers.SerializerMethodField()
    supplier_code = serializers.CharField(source="supplier.code", read_only=True)
    warehouse_code = serializers.CharField(source="warehouse.code", read_only=True)
    approval_request = serializers.SerializerMethodField(
        help_text="The newest approval request of this PO (id), if any."
    )

    class Meta:
        model = PurchaseOrder
        fields = [
            "id",
            "number",
            "state",
            "supplier",
            "supplier_code",
            "warehouse",
            "warehouse_code",
            "currency",
            "expected_on",
            "source",
            "note",
            "version",
            "total",
            "lines",
            "approval_request",
            "created_by_label",
            "created_at",
            "submitted_at",
            "approved_at",
            "sent_at",
            "closed_at",
            "rejection_reason",
            "cancel_reason",
        ]
        read_only_fields = fields

    def get_total(self, po: PurchaseOrder) -> str:
        return str(sum((line.line_total for line in po.lines.all()), 0))

    def get_approval_request(self, po: PurchaseOrder) -> int | None:
        if hasattr(po, "latest_request_id"):
            return po.latest_request_id
        request = services.current_request(po)
        return request.pk if request else None


class DraftLineInput(serializers.Serializer):
    sku = serializers.PrimaryKeyRelatedField(queryset=SKU.objects.all())
    quantity = serializers.IntegerField(min_value=1)
    unit_cost = serializers.DecimalField(
        max_digits=14, decimal_places=4, min_value=0, required=False, allow_null=True
    )


class DraftInput(serializers.Serializer):
    supplier = serializers.PrimaryKeyRelatedField(queryset=Supplier.objects.all())
    warehouse = serializers.PrimaryKeyRelatedField(queryset=Warehouse.objects.all())
    lines = DraftLineInput(many=True, allow_empty=False)
    expected_on = serializers.DateField(required=False, allow_null=True)
    note = serializers.CharField(required=False, allow_blank=True, default="")


class LinesInput(serializers.Serializer):
    lines = DraftLineInput(many=True, allow_empty=False)


class ReceiveLineInput(serializers.Serializer):
    line = serializers.IntegerField(help_text="Purchase order line id.")
    quantity = serializers.IntegerField(min_value=0)
    reason = serializers.ChoiceField(choices=ReceiptReason.choices, required=False, default="")


class ReceiveInput(serializers.Serializer):
    lines = ReceiveLineInput(many=True, allow_empty=False)
    note = serializers.CharField(required=False, allow_blank=True, default="")


class ReceiptLineSerializer(serializers.ModelSerializer):
    class Meta:
        model = ReceiptLine
        fields = ["line", "quantity", "reason"]


class ReceiptSerializer(serializers.ModelSerializer):
    lines = ReceiptLineSerializer(many=True, read_only=True)
    purchase_order_state = serializers.CharField(source="purchase_order.state", read_only=True)

    class Meta:
        model = Receipt
        fields = [
            "id",
            "purchase_order",
            "purchase_order_state",
            "received_at",
            "received_by_label",
            "note",
            "lines",
        ]
        read_only_fields = fields


class ReasonInput(serializers.Serializer):
    reason = serializers.CharField(max_length=500)


class RescheduleInput(serializers.Serializer):
    expected_on = serializers.DateField()
    reason = serializers.CharField(max_length=500)


def _draft_lines(items: list[dict]) -> list[services.DraftLine]:
    return [
        services.DraftLine(item["sku"], item["quantity"], item.get("unit_cost")) for item in items
    ]


class PurchaseOrderViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Purchase orders. Create drafts, change their lines (PATCH), submit them for
    approval, receive what arrives, cancel, reschedule or close short."""

    queryset = (
        PurchaseOrder.objects.select_related("supplier", "warehouse")
        .prefetch_related("lines__sku")
        .annotate(
            # The newest approval request, in the same query (no lookup per listed PO).
            latest_request_id=Subquery(
                ApprovalRequest.objects.filter(
                    subject_type=services.PURCHASE_ORDER,
                    subject_id=Cast(OuterRef("pk"), CharField()),
                )
                .order_by("-id")
                .values("id")[:1]
            )
        )
        .order_by("-id")
    )
    serializer_class = PurchaseOrderSerializer
    http_method_names = ["get", "post", "patch", "head", "options"]
    filter_backends = [QueryParamFilter]
    query_filters = {
        "state": QueryFilter(
            POStateField(),
            lambda qs, v: qs.filter(state=v),
            "PO state.",
        ),
        "supplier": QueryFilter(
            serializers.IntegerField(), lambda qs, v: qs.filter(supplier_id=v), "Supplier id."
        ),
        "warehouse": QueryFilter(
            serializers.IntegerField(), lambda qs, v: qs.filter(warehouse_id=v), "Warehouse id."
        ),
    }
    required_permissions = {
        "list": "purchasing.view",
        "retrieve": "purchasing.view",
        "pdf": "purchasing.view",
        "create": "purchasing.draft",
        "partial_update": "purchasing.draft",
        "submit": "purchasing.draft",
        "cancel": "purchasing.draft",
        "reschedule": "purchasing.draft",
        "receive": "purchasing.receive",
        "close": "purchasing.receive",
    }

    def _actor(self):
        return self.request.auth or self.request.user

    def _respond(self, po: PurchaseOrder, code: int = status.HTTP_200_OK) -> Response:
        po = self.get_queryset().get(pk=po.pk)
        return Response(PurchaseOrderSerializer(po).data, status=code)

    def _change(self, input_class: type[serializers.Serializer], service) -> Response:
        """The shape every state-changing action shares: this PO, the validated body as the
        service's keyword arguments, the PO as it is afterwards."""
        po = self.get_object()
        data = input_class(data=self.request.data)
        data.is_valid(raise_exception=True)
        return self._respond(_call(service, po, actor=self._actor(), **data.validated_data))

    @extend_schema(
        request=DraftInput,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: PurchaseOrderSerializer, **error_responses(400, 403, 422)},
    )
    @idempotent
    def create(self, request, *args, **kwargs) -> Response:
        data = DraftInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        po = services.create_draft(
            supplier=values["supplier"],
            warehouse=values["warehouse"],
            lines=_draft_lines(values["lines"]),
            actor=self._actor(),
            note=values["note"],
            expected_on=values.get("expected_on"),
        )
        return self._respond(po, status.HTTP_201_CREATED)

    @extend_schema(
        request=LinesInput,
        responses={200: PurchaseOrderSerializer, **error_responses(400, 403, 404, 409)},
    )
    def partial_update(self, request, *args, **kwargs) -> Response:
        """Replace the lines. Behind approval, a higher total asks for approval again."""
        po = self.get_object()
        data = LinesInput(data=request.data)
        data.is_valid(raise_exception=True)
        po = _call(
            services.update_lines,
            po,
            lines=_draft_lines(data.validated_data["lines"]),
            actor=self._actor(),
        )
        return self._respond(po)

    @extend_schema(
        request=None,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: PurchaseOrderSerializer, **error_responses(400, 403, 404, 409, 422)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def submit(self, request, pk: str | None = None) -> Response:
        """draft → pending_approval, or straight to sent when no approval is needed."""
        po = _call(services.submit, self.get_object(), actor=self._actor())
        return self._respond(po)

    @extend_schema(
        request=ReceiveInput,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: ReceiptSerializer, **error_responses(400, 403, 404, 409, 422)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def receive(self, request, pk: str | None = None) -> Response:
        """Post what arrived; over/under quantities need a reason."""
        po = self.get_object()
        data = ReceiveInput(data=request.data)
        data.is_valid(raise_exception=True)
        lines = data.validated_data["lines"]
        key = request.headers.get("Idempotency-Key")
        receipt = _call(
            services.receive,
            po,
            quantities={item["line"]: item["quantity"] for item in lines},
            reasons={item["line"]: item["reason"] for item in lines if item["reason"]},
            actor=self._actor(),
            note=data.validated_data["note"],
            operation_key=f"api:{key}" if key else None,
        )
        return Response(ReceiptSerializer(receipt).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=ReasonInput,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: PurchaseOrderSerializer, **error_responses(400, 403, 404, 409, 422)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def cancel(self, request, pk: str | None = None) -> Response:
        return self._change(ReasonInput, services.cancel)

    @extend_schema(
        request=RescheduleInput,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: PurchaseOrderSerializer, **error_responses(400, 403, 404, 409, 422)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def reschedule(self, request, pk: str | None = None) -> Response:
        return self._change(RescheduleInput, services.reschedule)

    @extend_schema(
        request=ReasonInput,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: PurchaseOrderSerializer, **error_responses(400, 403, 404, 409, 422)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def close(self, request, pk: str | None = None) -> Response:
        """Close a partially received PO short."""
        return self._change(ReasonInput, services.close)

    @extend_schema(
        responses={
            (200, "application/pdf"): OpenApiResponse(description="The PO document."),
            **error_responses(403, 404),
        }
    )
    @action(detail=True, methods=["get"])
    def pdf(self, request, pk: str | None = None) -> HttpResponse:
        po = self.get_object()
        response = HttpResponse(po_pdf(po), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{po.number}.pdf"'
        return response


def register(router: BaseRouter) -> None:
    """Add this app's viewsets to the brand API router."""
    router.register("suppliers", SupplierViewSet, basename="supplier")
    router.register("supplier-skus", SupplierSKUViewSet, basename="suppliersku")
    router.register("purchase-orders", PurchaseOrderViewSet, basename="purchaseorder")
