"""REST endpoints for orders, fulfillment orders, routing decisions and rules.

Business rules live in orders.services: the API hands validated input to the same
functions connectors, CSV and the web UI call, so an order created here is ingested,
reserved and routed exactly like one from a channel. Refusals come back in the one error
format (config.api): a state that refuses the request is 400 with the service's code
(`not_held`, `already_shipped`, `closed`, `not_draft`, `lines_not_covered`, …); stock
taken by another order while a chosen plan is applied is 409 `insufficient_stock` with
`details`.

Decisions:
- POST /orders/ is ingestion: the same (channel, external_id) never makes a second order.
  It answers 201 when the order is new and 200 when it already existed, with `created`
  and `applied` (false for an update no newer than what Keel has) in the body.
  `updated_at` is the channel's update time that orders updates; it defaults to
  `placed_at`, so sending the same order twice without it changes nothing.
- Times in order input must carry a timezone (`naive_datetime` otherwise): a naive time
  would be read as UTC and could reorder a channel's updates.
- Rejecting a fulfillment order answers with its order, because what the client needs to
  see is where the re-route sent the lines (or why the order is now held).
- The `warehouse` filter on orders counts live and shipped fulfillment orders only: a
  cancelled or rejected one is no longer that warehouse's work.
- Rule sets are read with orders.view; drafting, publishing and simulating need
  routing.edit. A draft's rules are checked with the routing engine's own validator here
  so each error names its rule (`rules.2`, code `invalid_rule`); the service checks again.
- Simulating is a POST (it takes a body) but writes nothing, so it takes no
  Idempotency-Key.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db.models import Exists, Model, OuterRef, Prefetch, Q, QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from config.api import (
    IDEMPOTENCY_KEY,
    OptionalEmailField,
    QueryFilter,
    QueryParamFilter,
    error_responses,
)
from idempotency.services import idempotent
from inventory.models import Warehouse
from orders import routing, services
from orders.models import (
    DecisionLayer,
    FulfillmentLine,
    FulfillmentOrder,
    FulfillmentStatus,
    HoldReason,
    Order,
    OrderLine,
    OrderStatus,
    OrderType,
    RoutingDecision,
    Rule,
    RuleSet,
    RuleSetStatus,
    ServiceLevel,
)
from orders.services import LineInput, OrderInput

CURRENCY = r"^[A-Z]{3}$"  # ISO 4217 alphabetic code
COUNTRY = r"^[A-Z]{2}$"  # ISO 3166-1 alpha-2
# What a channel says about its order; orders.services.OrderInput.status.
CHANNEL_STATUSES = [("open", "Open"), ("cancelled", "Cancelled on the channel")]
SIMULATION_MAX = 10_000


def _id_filter(lookup: str, what: str) -> QueryFilter:
    return QueryFilter(
        serializers.IntegerField(min_value=1), lambda qs, v: qs.filter(**{lookup: v}), what
    )


def _choice_filter(lookup: str, choices: list[tuple[str, str]], what: str) -> QueryFilter:
    return QueryFilter(
        serializers.ChoiceField(choices=choices), lambda qs, v: qs.filter(**{lookup: v}), what
    )


def _text(model: type[Model], name: str, help_text: str = "") -> serializers.CharField:
    """Optional text input, as long as the model's column allows."""
    return serializers.CharField(
        max_length=model._meta.get_field(name).max_length,
        required=False,
        allow_blank=True,
        default="",
        help_text=help_text,
    )


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 time that must carry its offset (or Z). For input only."""

    default_error_messages = {
        "naive_datetime": "Include the timezone, e.g. 2026-11-02T15:00:00Z or +01:00.",
    }

    def enforce_timezone(self, value: datetime) -> datetime:
        # DRF would silently read a naive time in the server's zone.
        if timezone.is_naive(value):
            self.fail("naive_datetime")
        return super().enforce_timezone(value)


# --- Read serializers --------------------------------------------------------------------


class OrderLineSerializer(serializers.ModelSerializer):
    sku_code = serializers.CharField(
        source="sku.code", read_only=True, default=None, allow_null=True
    )

    class Meta:
        model = OrderLine
        fields = [
            "id",
            "external_line_id",
            "external_sku",
            "external_listing_id",
            "sku",
            "sku_code",
            "title",
            "quantity",
            "unit_price",
        ]
        read_only_fields = fields
        extra_kwargs = {"sku": {"help_text": "Our SKU; null while the listing is unmapped."}}


class FulfillmentLineSerializer(serializers.ModelSerializer):
    sku_code = serializers.CharField(source="sku.code", read_only=True)

    class Meta:
        model = FulfillmentLine
        fields = ["id", "order_line", "sku", "sku_code", "quantity"]
        read_only_fields = fields


class FulfillmentOrderSerializer(serializers.ModelSerializer):
    order_external_id = serializers.CharField(source="order.external_id", read_only=True)
    warehouse_code = serializers.CharField(source="warehouse.code", read_only=True)
    lines = FulfillmentLineSerializer(many=True, read_only=True)

    class Meta:
        model = FulfillmentOrder
        fields = [
            "id",
            "order",
            "order_external_id",
            "warehouse",
            "warehouse_code",
            "status",
            "ship_type",
            "decision",
            "tracking_number",
            "carrier",
            "lines",
            "created_at",
            "closed_at",
        ]
        read_only_fields = fields
        extra_kwargs = {"decision": {"help_text": "The routing decision that created it."}}


class RoutingDecisionSerializer(serializers.ModelSerializer):
    inputs = serializers.DictField(
        read_only=True,
        help_text="What the decision saw: ship-to, lines, stock per SKU and warehouse, "
        "rule set version, excluded warehouses.",
    )
    candidates = serializers.ListField(
        child=serializers.DictField(),
        read_only=True,
        help_text="Scored plans, best first: warehouses, score, parts, distance_km, plan.",
    )
    chosen = serializers.DictField(
        child=serializers.ListField(child=serializers.IntegerField()),
        read_only=True,
        allow_null=True,
        help_text="The plan taken: warehouse code → order line ids.",
    )

    class Meta:
        model = RoutingDecision
        fields = [
            "id",
            "order",
            "created_at",
            "layer",
            "rule_set_version",
            "rule_name",
            "inputs",
            "candidates",
            "chosen",
            "confidence",
            "explanation",
            "actor_label",
        ]
        read_only_fields = fields


ORDER_FIELDS = [
    "id",
    "channel",
    "external_id",
    "placed_at",
    "channel_updated_at",
    "status",
    "hold_reason",
    "hold_detail",
    "order_type",
    "service_level",
    "is_gift",
    "is_vip",
    "is_repeat_customer",
    "fraud_flag",
    "customer_name",
    "customer_email",
    "ship_name",
    "ship_company",
    "ship_line1",
    "ship_line2",
    "ship_city",
    "ship_state",
    "ship_postal_code",
    "ship_country",
    "ship_phone",
    "currency",
    "total",
    "note",
    "created_at",
    "updated_at",
]


class OrderSerializer(serializers.ModelSerializer):
    customer_email = OptionalEmailField(read_only=True)
    hold_reason = serializers.ChoiceField(
        choices=HoldReason.choices,
        allow_blank=True,
        read_only=True,
        help_text="Why the order is held; empty unless status is held.",
    )

    class Meta:
        model = Order
        fields = ORDER_FIELDS
        read_only_fields = fields


class OrderDetailSerializer(OrderSerializer):
    lines = OrderLineSerializer(many=True, read_only=True)
    fulfillment_orders = FulfillmentOrderSerializer(
        source="fulfillments", many=True, read_only=True
    )
    decisions = RoutingDecisionSerializer(
        many=True, read_only=True, help_text="The routing timeline, oldest first."
    )

    class Meta(OrderSerializer.Meta):
        fields = [*ORDER_FIELDS, "lines", "fulfillment_orders", "decisions"]
        read_only_fields = fields


class OrderIngestSerializer(serializers.Serializer):
    created = serializers.BooleanField(help_text="False when this channel order existed.")
    applied = serializers.BooleanField(
        help_text="False when the body was no newer than what Keel has (or the order is "
        "cancelled, or shipped lines would change): nothing changed."
    )
    messages = serializers.ListField(child=serializers.CharField())
    order = OrderDetailSerializer()


def order_detail_queryset() -> QuerySet[Order]:
    return Order.objects.prefetch_related(
        Prefetch("lines", queryset=OrderLine.objects.select_related("sku")),
        Prefetch("fulfillments", queryset=fulfillment_queryset()),
        "decisions",
    )


def fulfillment_queryset() -> QuerySet[FulfillmentOrder]:
    return FulfillmentOrder.objects.select_related("order", "warehouse").prefetch_related(
        Prefetch("lines", queryset=FulfillmentLine.objects.select_related("sku").order_by("id"))
    )


def _order_response(order: Order, http_status: int = status.HTTP_200_OK) -> Response:
    fresh = order_detail_queryset().get(pk=order.pk)
    return Response(OrderDetailSerializer(fresh).data, status=http_status)


# --- Orders ------------------------------------------------------------------------------


class OrderLineInputSerializer(serializers.Serializer):
    external_line_id = serializers.CharField(
        max_length=255, help_text="The channel's line id, unique within the order."
    )
    external_sku = serializers.CharField(
        max_length=255, help_text="The channel's SKU; listing mappings turn it into ours."
    )
    external_listing_id = _text(OrderLine, "external_listing_id")
    title = serializers.CharField(
        max_length=1000,
        required=False,
        allow_blank=True,
        default="",
        help_text="Kept to its first 255 characters.",
    )
    quantity = serializers.IntegerField(min_value=1, max_value=1_000_000)
    unit_price = serializers.DecimalField(
        max_digits=14,
        decimal_places=2,
        min_value=Decimal("0"),
        help_text='Decimal string in the order currency, e.g. "19.90".',
    )


class OrderCreateSerializer(serializers.Serializer):
    channel = serializers.CharField(
        max_length=100, help_text="Channel or connection name, e.g. shopify-us or wholesale."
    )
    external_id = serializers.CharField(
        max_length=255, help_text="The channel's order id; one order per channel and id."
    )
    placed_at = AwareDateTimeField(help_text="When the customer ordered (with timezone).")
    updated_at = AwareDateTimeField(
        required=False,
        help_text="The channel's last update of this order (with timezone). A body no newer "
        "than the last one applied is ignored. Defaults to placed_at.",
    )
    status = serializers.ChoiceField(
        choices=CHANNEL_STATUSES,
        default="open",
        help_text="cancelled releases the order's stock (or records it cancelled).",
    )
    currency = serializers.RegexField(CURRENCY, help_text="ISO 4217 code, e.g. USD.")
    order_type = serializers.ChoiceField(choices=OrderType.choices, default=OrderType.DTC)
    service_level = serializers.ChoiceField(
        choices=ServiceLevel.choices, default=ServiceLevel.STANDARD
    )
    customer_name = _text(Order, "customer_name")
    customer_email = OptionalEmailField(required=False, default="")
    ship_name = _text(Order, "ship_name")
    ship_company = _text(Order, "ship_company")
    ship_line1 = _text(Order, "ship_line1")
    ship_line2 = _text(Order, "ship_line2")
    ship_city = _text(Order, "ship_city")
    ship_state = _text(Order, "ship_state", "For US addresses the two-letter state code.")
    ship_postal_code = _text(Order, "ship_postal_code")
    ship_country = serializers.RegexField(
        COUNTRY,
        required=False,
        allow_blank=True,
        default="",
        help_text="ISO 3166-1 alpha-2, e.g. US. An incomplete address holds the order.",
    )
    ship_phone = _text(Order, "ship_phone")
    is_gift = serializers.BooleanField(required=False, default=False)
    is_vip = serializers.BooleanField(required=False, default=False)
    is_repeat_customer = serializers.BooleanField(required=False, default=False)
    fraud_flag = serializers.BooleanField(
        required=False, default=False, help_text="Holds the order for a person."
    )
    note = _text(Order, "note")
    total = serializers.DecimalField(
        max_digits=14,
        decimal_places=2,
        min_value=Decimal("0"),
        required=False,
        allow_null=True,
        default=None,
        help_text="Order value; defaults to the sum of the lines.",
    )
    lines = OrderLineInputSerializer(many=True, allow_empty=False)

    def validate_lines(self, lines: list[dict]) -> list[dict]:
        ids = [line["external_line_id"] for line in lines]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise serializers.ValidationError(
                f"Line ids repeat: {', '.join(repeated)}.", code="duplicate_line_id"
            )
        return lines

    def to_input(self) -> OrderInput:
        values = dict(self.validated_data)
        lines = [LineInput(**line) for line in values.pop("lines")]
        values["updated_at"] = values.get("updated_at") or values["placed_at"]
        return OrderInput(lines=lines, **values)


class ReleaseSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=500, help_text="What was checked (logged).")


class AddressSerializer(serializers.Serializer):
    """Only the fields sent change; the result must be a complete, valid address."""

    ship_name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    ship_company = serializers.CharField(max_length=200, required=False, allow_blank=True)
    ship_line1 = serializers.CharField(max_length=200, required=False)
    ship_line2 = serializers.CharField(max_length=200, required=False, allow_blank=True)
    ship_city = serializers.CharField(max_length=100, required=False)
    ship_state = serializers.CharField(max_length=100, required=False, allow_blank=True)
    ship_postal_code = serializers.CharField(max_length=20, required=False)
    ship_country = serializers.CharField(min_length=2, max_length=2, required=False)
    ship_phone = serializers.CharField(max_length=40, required=False, allow_blank=True)


class CancelSerializer(serializers.Serializer):
    reason = serializers.CharField(
        max_length=500, required=False, allow_blank=True, default="", help_text="Logged."
    )


class ChoosePlanSerializer(serializers.Serializer):
    allocations = serializers.DictField(
        child=serializers.ListField(child=serializers.IntegerField(min_value=1), allow_empty=False),
        allow_empty=False,
        help_text='Warehouse code → ids of the order lines it ships, e.g. {"TX": [12, 13]}. '
        "Every line of the order exactly once.",
    )
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


def _placed_filter(lookup: str, what: str) -> QueryFilter:
    return QueryFilter(
        serializers.DateTimeField(),
        lambda qs, v: qs.filter(**{f"placed_at__{lookup}": v}),
        what,
    )


def _with_fulfillment_at(orders: QuerySet[Order], warehouse_id: int) -> QuerySet[Order]:
    live = FulfillmentOrder.objects.filter(order=OuterRef("pk"), warehouse_id=warehouse_id).exclude(
        status__in=[FulfillmentStatus.CANCELLED, FulfillmentStatus.REJECTED]
    )
    return orders.filter(Exists(live))


class OrderViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Orders from every channel. POST ingests one (the same path connectors use); the
    order page's timeline is `decisions`."""

    queryset = Order.objects.all()
    serializer_class = OrderSerializer
    filter_backends = [QueryParamFilter]
    query_filters = {
        "status": _choice_filter("status", OrderStatus.choices, "Order status."),
        "channel": QueryFilter(
            serializers.CharField(max_length=100),
            lambda qs, v: qs.filter(channel=v),
            "Channel or connection name (exact).",
        ),
        "hold_reason": _choice_filter("hold_reason", HoldReason.choices, "Why it is held."),
        "warehouse": QueryFilter(
            serializers.IntegerField(min_value=1),
            _with_fulfillment_at,
            "Warehouse id: orders with an open, sent or shipped fulfillment order there.",
        ),
        "placed_after": _placed_filter("gte", "Placed at or after this time (ISO 8601)."),
        "placed_before": _placed_filter("lt", "Placed before this time (ISO 8601)."),
        "search": QueryFilter(
            serializers.CharField(max_length=100),
            lambda qs, v: qs.filter(
                Q(external_id__icontains=v)
                | Q(customer_name__icontains=v)
                | Q(customer_email__icontains=v)
                | Q(ship_name__icontains=v)
            ),
            "Text in the external id, customer name or email, or ship-to name.",
        ),
    }
    required_permissions = {
        "list": "orders.view",
        "retrieve": "orders.view",
        "create": "orders.create",
        "cancel": "orders.manage",
        "route": "orders.manage",
        "choose_plan": "orders.manage",
        "release_fraud_hold": "orders.manage",
        "correct_address": "orders.manage",
    }

    def get_queryset(self) -> QuerySet[Order]:
        if self.action == "retrieve":
            return order_detail_queryset()
        return Order.objects.all()

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        if self.action == "retrieve":
            return OrderDetailSerializer
        return super().get_serializer_class()

    @extend_schema(
        request=OrderCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            201: OrderIngestSerializer,
            200: OrderIngestSerializer,
            **error_responses(400, 422),
        },
    )
    @idempotent
    def create(self, request) -> Response:
        """Ingest an order: created and routed (201), or applied to the existing order of
        this channel and external id when newer (200)."""
        data = OrderCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = services.ingest_order(data.to_input())
        body = OrderIngestSerializer(
            {
                "created": result.created,
                "applied": result.applied,
                "messages": result.messages,
                "order": order_detail_queryset().get(pk=result.order.pk),
            }
        ).data
        return Response(
            body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        )

    @extend_schema(
        request=CancelSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: OrderDetailSerializer, **error_responses(400, 422)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def cancel(self, request, pk=None) -> Response:
        """Cancel the order and release its stock. Refused once any part has shipped."""
        order = self.get_object()
        data = CancelSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        reason = data.validated_data["reason"]
        services.cancel_order(order, **({"reason": reason} if reason else {}))
        return _order_response(order)

    @extend_schema(
        request=None,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: OrderDetailSerializer, **error_responses(400, 422)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def route(self, request, pk=None) -> Response:
        """Route a held order again (after stock arrived, a SKU was mapped or the address
        fixed); it may be held again, with a new reason."""
        return _order_response(services.route_held_order(self.get_object()))

    @extend_schema(
        request=ChoosePlanSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: OrderDetailSerializer, **error_responses(400, 409, 422)},
    )
    @action(detail=True, methods=["post"], url_path="choose-plan")
    @idempotent
    def choose_plan(self, request, pk=None) -> Response:
        """A person routes a held order: which warehouse ships which lines."""
        order = self.get_object()
        data = ChoosePlanSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.choose_plan(
            order,
            allocations=data.validated_data["allocations"],
            actor=request.user,
            note=data.validated_data["note"],
        )
        return _order_response(order)

    @extend_schema(
        request=ReleaseSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: OrderDetailSerializer, **error_responses(400, 422)},
    )
    @action(detail=True, methods=["post"], url_path="release-fraud-hold")
    @idempotent
    def release_fraud_hold(self, request, pk=None) -> Response:
        """A person checked an order held for the channel's fraud flag: route it."""
        order = self.get_object()  # an unknown id is 404 before any body is judged
        data = ReleaseSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        order = services.release_fraud_hold(
            order, actor=request.user, note=data.validated_data["note"]
        )
        return _order_response(order)

    @extend_schema(
        request=AddressSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: OrderDetailSerializer, **error_responses(400, 422)},
    )
    @action(detail=True, methods=["post"], url_path="correct-address")
    @idempotent
    def correct_address(self, request, pk=None) -> Response:
        """Fix the ship-to of an order held for an invalid address, then route it."""
        order = self.get_object()
        data = AddressSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        order = services.correct_address(order, actor=request.user, **data.validated_data)
        return _order_response(order)


# --- Fulfillment orders ------------------------------------------------------------------


class RejectSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, help_text="Why the warehouse cannot ship it.")


class ShipSerializer(serializers.Serializer):
    tracking_number = serializers.CharField(
        max_length=100, required=False, allow_blank=True, default=""
    )
    carrier = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")


class FulfillmentOrderViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """What each warehouse ships for an order, with the stock it holds reserved."""

    serializer_class = FulfillmentOrderSerializer
    filter_backends = [QueryParamFilter]
    query_filters = {
        "status": _choice_filter("status", FulfillmentStatus.choices, "Fulfillment status."),
        "warehouse": _id_filter("warehouse_id", "Warehouse id."),
        "order": _id_filter("order_id", "Order id."),
    }
    required_permissions = {
        "list": "orders.view",
        "retrieve": "orders.view",
        "reject": "orders.manage",
        "ship": "orders.manage",
    }

    def get_queryset(self) -> QuerySet[FulfillmentOrder]:
        return fulfillment_queryset()

    @extend_schema(
        request=RejectSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: OrderDetailSerializer, **error_responses(400, 422)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def reject(self, request, pk=None) -> Response:
        """The warehouse cannot ship this: release its stock and re-route the order without
        that warehouse. Answers with the order as re-routed (or held)."""
        fulfillment = self.get_object()
        data = RejectSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        order = services.reject_fulfillment(fulfillment, reason=data.validated_data["reason"])
        return _order_response(order)

    @extend_schema(
        request=ShipSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: FulfillmentOrderSerializer, **error_responses(400, 422)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def ship(self, request, pk=None) -> Response:
        """Mark it shipped: its reservations are consumed and the order moves to partially
        fulfilled or fulfilled."""
        fulfillment = self.get_object()
        data = ShipSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.mark_shipped(fulfillment, **data.validated_data)
        return Response(FulfillmentOrderSerializer(self.get_queryset().get(pk=fulfillment.pk)).data)


# --- Routing decisions -------------------------------------------------------------------


class RoutingDecisionViewSet(viewsets.ReadOnlyModelViewSet):
    """Every routing decision with the inputs it saw, its result and its explanation."""

    queryset = RoutingDecision.objects.all()
    serializer_class = RoutingDecisionSerializer
    filter_backends = [QueryParamFilter]
    query_filters = {
        "order": _id_filter("order_id", "Order id."),
        "layer": _choice_filter("layer", DecisionLayer.choices, "Which layer decided."),
    }
    required_permissions = {"list": "orders.view", "retrieve": "orders.view"}


# --- Rules -------------------------------------------------------------------------------

RULE_VOCABULARY = (
    "Conditions (all must hold): "
    + ", ".join(sorted(routing.CONDITION_KEYS))
    + ". Actions: "
    + ", ".join(sorted(routing.ACTION_KEYS))
    + "."
)


class RuleSerializer(serializers.ModelSerializer):
    conditions = serializers.DictField(read_only=True)
    actions = serializers.DictField(read_only=True)

    class Meta:
        model = Rule
        fields = ["id", "position", "name", "conditions", "actions", "is_active"]
        read_only_fields = fields


class RuleSetSerializer(serializers.ModelSerializer):
    rules = RuleSerializer(many=True, read_only=True, help_text="In order; first match wins.")

    class Meta:
        model = RuleSet
        fields = [
            "id",
            "version",
            "status",
            "note",
            "created_by",
            "created_at",
            "published_at",
            "rules",
        ]
        read_only_fields = fields


class RuleInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    conditions = serializers.DictField(
        required=False,
        default=dict,
        help_text='e.g. {"state_in": ["CA", "NV"]}. No conditions: matches every order.',
    )
    actions = serializers.DictField(help_text='e.g. {"ship_from": "WEST"}.')
    is_active = serializers.BooleanField(required=False, default=True)

    def validate(self, attrs: dict) -> dict:
        # Per rule rather than on the list, so one rule's missing name does not hide
        # another rule's unknown warehouse. The codes are read once per request.
        codes = self.context.get("warehouse_codes")
        if codes is None:
            codes = set(Warehouse.objects.values_list("code", flat=True))
            self.context["warehouse_codes"] = codes
        problems = routing.validate_rule(attrs["conditions"], attrs["actions"], codes)
        if problems:
            raise serializers.ValidationError(
                [serializers.ErrorDetail(p, code="invalid_rule") for p in problems]
            )
        return attrs


class RuleSetCreateSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    rules = RuleInputSerializer(
        many=True, help_text=f"In order; the first rule that matches decides. {RULE_VOCABULARY}"
    )


class SimulateSerializer(serializers.Serializer):
    last = serializers.IntegerField(
        min_value=1,
        max_value=SIMULATION_MAX,
        default=500,
        help_text="How many of the most recent orders (cancelled ones excluded) to replay.",
    )
    changed_only = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Return only rows whose routing would change; the counts cover all.",
    )


class SimulationRowSerializer(serializers.Serializer):
    order = serializers.IntegerField(source="order_id")
    external_id = serializers.CharField()
    current = serializers.CharField(
        help_text='What the published rules decide today, e.g. "rules: WEST" or '
        '"hold: insufficient_stock".'
    )
    proposed = serializers.CharField(help_text="What this rule set would decide.")
    changed = serializers.BooleanField()
    explanation = serializers.CharField(help_text="Why this rule set decides that.")


class SimulationSerializer(serializers.Serializer):
    rule_set = serializers.IntegerField()
    version = serializers.IntegerField()
    compared_with_version = serializers.IntegerField(
        allow_null=True, help_text="The published version; null when none is (no rules)."
    )
    orders = serializers.IntegerField(help_text="Orders replayed.")
    changed = serializers.IntegerField(help_text="Orders whose routing would change.")
    rows = SimulationRowSerializer(many=True)


class RuleSetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Versioned routing rule sets (layer 1). One is published; drafts can be simulated
    against recent orders and then published."""

    queryset = RuleSet.objects.prefetch_related(
        Prefetch("rules", queryset=Rule.objects.order_by("position"))
    )
    serializer_class = RuleSetSerializer
    filter_backends = [QueryParamFilter]
    query_filters = {
        "status": _choice_filter("status", RuleSetStatus.choices, "Rule set status."),
    }
    required_permissions = {
        "list": "orders.view",
        "retrieve": "orders.view",
        "create": "routing.edit",
        "publish": "routing.edit",
        "simulate": "routing.edit",
    }

    def _detail(self, rule_set: RuleSet, http_status: int = status.HTTP_200_OK) -> Response:
        fresh = self.get_queryset().get(pk=rule_set.pk)
        return Response(RuleSetSerializer(fresh).data, status=http_status)

    @extend_schema(
        request=RuleSetCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: RuleSetSerializer, **error_responses(400, 422)},
    )
    @idempotent
    def create(self, request) -> Response:
        """Save a new draft version. Nothing routes by it until it is published."""
        data = RuleSetCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rule_set = services.draft_rule_set(
            actor=request.user,
            rules=data.validated_data["rules"],
            note=data.validated_data["note"],
        )
        return self._detail(rule_set, status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: RuleSetSerializer, **error_responses(400, 422)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def publish(self, request, pk=None) -> Response:
        """Route new orders by this draft; the previously published set is archived."""
        return self._detail(services.publish_rule_set(self.get_object()))

    @extend_schema(
        request=SimulateSerializer,
        responses={200: SimulationSerializer, **error_responses(400)},
    )
    @action(detail=True, methods=["post"])
    def simulate(self, request, pk=None) -> Response:
        """What this rule set would decide for recent orders, beside what the published
        set decides, with today's stock for both. Writes nothing."""
        rule_set = self.get_object()
        data = SimulateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rows = services.simulate(rule_set, last=data.validated_data["last"])
        changed = [row for row in rows if row.changed]
        published = (
            RuleSet.objects.filter(status=RuleSetStatus.PUBLISHED)
            .values_list("version", flat=True)
            .first()
        )
        body = SimulationSerializer(
            {
                "rule_set": rule_set.pk,
                "version": rule_set.version,
                "compared_with_version": published,
                "orders": len(rows),
                "changed": len(changed),
                "rows": changed if data.validated_data["changed_only"] else rows,
            }
        ).data
        return Response(body)
