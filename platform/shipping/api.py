"""REST API of the shipping app, registered on the brand API router by config.api_urls.

- `/shipping/shipments/` — GET (filters `state`, `ship_type`, `fulfillment_order`); POST
  `{"fulfillment_order", "weight_g"?, "cartons"?, "pallets"?}` creates the fulfillment
  order's shipment (parcel or LTL by the brand's thresholds). On one shipment:
  `POST rate/` quotes every carrier and chooses by lane score, `POST choose/` `{"quote"}`
  overrides the choice, `POST label/` `{"format": "pdf"|"zpl"}` buys the label — 201 with
  the label; 202 with the label in status `purchasing` when the carrier is still being
  asked (always so under an Idempotency-Key, whose transaction ends after the response:
  read `/shipping/labels/{id}/` again); 202 `{"state": "pending", "approval_request": id}`
  when the brand's
  "shipping_label" policy wants approval first (`POST /approval-requests/{id}/approve/`
  then buys it), `GET tracking/` the carrier events, `POST rating/` `{"rating": 1-5}`
  after delivery.
- LTL on one shipment: `POST freight-quote/` (quotes from every freight source, spread
  kept), `POST book/` (201 booked, or 202 with the "freight_booking" approval request when
  quotes vary by more than the policy allows), `POST pod/` (multipart: `document`,
  `signed_by`, `final_total`) completes it.
- `/shipping/labels/` — GET; `POST {id}/void/`; `GET {id}/document/` the file.
- `/shipping/exceptions/` — GET (filters `status`, `kind`); `POST {id}/acknowledge/`,
  `POST {id}/resolve/` `{"resolution"}`, `POST {id}/assign/` `{"owner"}`.
- `/shipping/lanes/` — GET carrier performance per lane (`lane`, `weeks`).

The actor is the API key or the signed-in person, so keys get exactly their scope's rights.
"""

from __future__ import annotations

from django.http import FileResponse, Http404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.routers import BaseRouter

from accounts.models import User
from config.api import IDEMPOTENCY_KEY, QueryFilter, QueryParamFilter, error_responses
from idempotency.services import idempotent
from orders.models import FulfillmentOrder, ShipType
from shipping import freight, services
from shipping.models import (
    ExceptionKind,
    ExceptionStatus,
    FreightBooking,
    Label,
    RateQuote,
    Shipment,
    ShipmentException,
    ShipmentState,
    TrackingEvent,
)


def _actor(request):
    return request.auth if request.auth is not None else request.user


def _person(request):
    return request.user if isinstance(request.user, User) else None


def _choice_filter(lookup: str, choices, what: str) -> QueryFilter:
    return QueryFilter(
        serializers.ChoiceField(choices=choices), lambda qs, v: qs.filter(**{lookup: v}), what
    )


class RateQuoteSerializer(serializers.ModelSerializer):
    connection = serializers.CharField(source="connection.display_name", read_only=True)

    class Meta:
        model = RateQuote
        fields = [
            "id",
            "connection",
            "carrier",
            "service",
            "service_level",
            "amount",
            "currency",
            "estimated_days",
            "expires_at",
            "score",
            "do_not_use",
        ]


class LabelSerializer(serializers.ModelSerializer):
    document_url = serializers.SerializerMethodField()

    class Meta:
        model = Label
        fields = [
            "id",
            "shipment",
            "status",
            "tracking_number",
            "carrier",
            "service",
            "cost",
            "currency",
            "label_format",
            "idempotency_key",
            "approval_request_id",
            "document_url",
            "error",
            "created_at",
            "purchased_at",
            "voided_at",
        ]

    def get_document_url(self, obj: Label) -> str | None:
        if not obj.document:
            return None
        return f"/api/v1/shipping/labels/{obj.pk}/document/"


class TrackingEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrackingEvent
        fields = ["status", "occurred_at", "description", "location", "exception_kind", "source"]


class ShipmentSerializer(serializers.ModelSerializer):
    # Plain strings in the schema: "state" and "ship_type" enums of other apps share the
    # field names (see ShipmentState, ShipType for the values).
    state = serializers.CharField(read_only=True, help_text="ShipmentState value.")
    ship_type = serializers.CharField(read_only=True, help_text="parcel or ltl.")
    quotes = serializers.SerializerMethodField()
    labels = LabelSerializer(many=True, read_only=True)
    fulfillment_order = serializers.IntegerField(source="fulfillment_id", read_only=True)

    class Meta:
        model = Shipment
        fields = [
            "id",
            "reference",
            "fulfillment_order",
            "ship_type",
            "ship_type_reason",
            "state",
            "warehouse",
            "lane",
            "weight_g",
            "cartons",
            "pallets",
            "dest_name",
            "dest_city",
            "dest_state",
            "dest_postal",
            "dest_country",
            "chosen_quote",
            "choice_reason",
            "choice_table",
            "choice_inputs",
            "carrier",
            "service",
            "tracking_number",
            "promised_days",
            "label_purchased_at",
            "shipped_at",
            "last_scan_at",
            "delivered_at",
            "quotes",
            "labels",
            "created_at",
        ]

    def get_quotes(self, obj: Shipment) -> list[dict]:
        quotes = obj.quotes.filter(labels__isnull=True) | obj.quotes.filter(
            pk=obj.chosen_quote_id or 0
        )
        return RateQuoteSerializer(quotes.distinct().select_related("connection"), many=True).data


class ShipmentCreateSerializer(serializers.Serializer):
    fulfillment_order = serializers.PrimaryKeyRelatedField(queryset=FulfillmentOrder.objects.all())
    weight_g = serializers.IntegerField(min_value=0, required=False)
    cartons = serializers.IntegerField(min_value=1, required=False)
    pallets = serializers.IntegerField(min_value=0, required=False)


class ChooseSerializer(serializers.Serializer):
    quote = serializers.IntegerField(min_value=1)


class LabelRequestSerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=["pdf", "zpl"], default="pdf")


class PendingLabelSerializer(serializers.Serializer):
    state = serializers.CharField()
    approval_request = serializers.IntegerField()
    explanation = serializers.CharField()


class RatingSerializer(serializers.Serializer):
    rating = serializers.IntegerField(min_value=1, max_value=5)


class BookingSerializer(serializers.ModelSerializer):
    class Meta:
        model = FreightBooking
        fields = [
            "id",
            "shipment",
            "status",
            "bol_number",
            "pro_number",
            "pickup_window_start",
            "pickup_window_end",
            "quoted_total",
            "final_total",
            "currency",
            "approval_request_id",
            "pod_signed_by",
            "error",
            "booked_at",
            "delivered_at",
        ]


class PodSerializer(serializers.Serializer):
    document = serializers.FileField()
    signed_by = serializers.CharField(required=False, allow_blank=True, max_length=200)
    final_total = serializers.DecimalField(
        max_digits=12, decimal_places=2, required=False, min_value=0
    )


class ShipmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Shipments of fulfillment orders: rates, the scored choice, labels, tracking."""

    queryset = Shipment.objects.select_related("warehouse").prefetch_related("labels")
    serializer_class = ShipmentSerializer
    filter_backends = [QueryParamFilter]
    query_filters = {
        "state": _choice_filter("state", ShipmentState.choices, "Shipment state."),
        "ship_type": _choice_filter("ship_type", ShipType.choices, "parcel or ltl."),
        "fulfillment_order": QueryFilter(
            serializers.IntegerField(min_value=1),
            lambda qs, v: qs.filter(fulfillment_id=v),
            "Fulfillment order id.",
        ),
    }
    required_permissions = {
        "list": "shipping.view",
        "retrieve": "shipping.view",
        "tracking": "shipping.view",
        "create": "shipping.operate",
        "rate": "shipping.operate",
        "choose": "shipping.operate",
        "label": "shipping.operate",
        "rating": "shipping.operate",
        "freight_quote": "shipping.operate",
        "book": "shipping.operate",
        "pod": "shipping.operate",
    }

    def _detail(self, shipment: Shipment, http_status: int = status.HTTP_200_OK) -> Response:
        fresh = self.get_queryset().get(pk=shipment.pk)
        return Response(ShipmentSerializer(fresh).data, status=http_status)

    @extend_schema(
        request=ShipmentCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: ShipmentSerializer, **error_responses(400, 403)},
    )
    @idempotent
    def create(self, request) -> Response:
        data = ShipmentCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        shipment = services.create_shipment(
            values["fulfillment_order"],
            actor=_actor(request),
            weight_g=values.get("weight_g"),
            cartons=values.get("cartons"),
            pallets=values.get("pallets"),
        )
        return self._detail(shipment, status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: ShipmentSerializer, **error_responses(400, 403)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def rate(self, request, pk=None) -> Response:
        """Quote every connected carrier and choose by the lane-scored composite."""
        shipment = services.rate_shipment(self.get_object(), actor=_actor(request))
        return self._detail(shipment)

    @extend_schema(
        request=ChooseSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: ShipmentSerializer, **error_responses(400, 403)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def choose(self, request, pk=None) -> Response:
        shipment = self.get_object()
        data = ChooseSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        quote = RateQuote.objects.filter(pk=data.validated_data["quote"], shipment=shipment).first()
        if quote is None:
            raise serializers.ValidationError({"quote": ["Not a rate of this shipment."]})
        return self._detail(services.choose_quote(shipment, quote, actor=_actor(request)))

    @extend_schema(
        request=LabelRequestSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            201: LabelSerializer,
            202: PendingLabelSerializer,
            **error_responses(400, 403, 502),
        },
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def label(self, request, pk=None) -> Response:
        """Buy the chosen rate's label; 202 with the approval request when one is needed."""
        shipment = self.get_object()
        data = LabelRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = services.request_label(
            shipment, actor=_actor(request), label_format=data.validated_data["format"]
        )
        if result.state == "pending":
            return Response(
                {
                    "state": "pending",
                    "approval_request": result.approval.pk,
                    "explanation": result.approval.explanation,
                },
                status=status.HTTP_202_ACCEPTED,
            )
        label = Label.objects.get(pk=result.label.pk)
        if label.status == "failed":
            return Response(
                {"error": {"code": "carrier_refused", "message": label.error}},
                status=status.HTTP_502_BAD_GATEWAY,
            )
        code = status.HTTP_201_CREATED if label.status == "purchased" else status.HTTP_202_ACCEPTED
        return Response(LabelSerializer(label).data, status=code)

    @extend_schema(responses={200: TrackingEventSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def tracking(self, request, pk=None) -> Response:
        shipment = self.get_object()
        return Response(TrackingEventSerializer(shipment.events.all(), many=True).data)

    @extend_schema(
        request=RatingSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: ShipmentSerializer, **error_responses(400, 403)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def rating(self, request, pk=None) -> Response:
        shipment = self.get_object()
        data = RatingSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.rate_delivery(shipment, data.validated_data["rating"], actor=_actor(request))
        return self._detail(shipment)

    @extend_schema(
        request=None,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: ShipmentSerializer, **error_responses(400, 403)},
    )
    @action(detail=True, methods=["post"], url_path="freight-quote")
    @idempotent
    def freight_quote(self, request, pk=None) -> Response:
        """LTL: quotes from every freight source; the cheapest chosen, the spread kept."""
        return self._detail(freight.quote_freight(self.get_object(), actor=_actor(request)))

    @extend_schema(
        request=None,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: BookingSerializer, 202: PendingLabelSerializer, **error_responses(400)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def book(self, request, pk=None) -> Response:
        """LTL: book the chosen quote; 202 with the approval request when quotes vary by
        more than the "freight_booking" policy allows."""
        result = freight.request_booking(self.get_object(), actor=_actor(request))
        if result["state"] == "pending":
            return Response(
                {
                    "state": "pending",
                    "approval_request": result["approval"].pk,
                    "explanation": result["approval"].explanation,
                },
                status=status.HTTP_202_ACCEPTED,
            )
        booking = FreightBooking.objects.get(pk=result["booking"].pk)
        code = status.HTTP_201_CREATED if booking.status == "booked" else status.HTTP_202_ACCEPTED
        return Response(BookingSerializer(booking).data, status=code)

    @extend_schema(
        request={"multipart/form-data": PodSerializer},
        responses={200: BookingSerializer, **error_responses(400, 403)},
    )
    @action(detail=True, methods=["post"], parser_classes=[MultiPartParser, FormParser])
    def pod(self, request, pk=None) -> Response:
        """LTL: upload the signed proof of delivery; completes the shipment."""
        shipment = self.get_object()
        data = PodSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["document"]
        booking = freight.upload_pod(
            shipment,
            content=upload.read(),
            filename=upload.name,
            signed_by=data.validated_data.get("signed_by", ""),
            final_total=data.validated_data.get("final_total"),
            actor=_actor(request),
        )
        return Response(BookingSerializer(booking).data)


class VoidSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=300, default="")


class LabelViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Label.objects.all()
    serializer_class = LabelSerializer
    filter_backends = [QueryParamFilter]
    query_filters = {
        "shipment": QueryFilter(
            serializers.IntegerField(min_value=1),
            lambda qs, v: qs.filter(shipment_id=v),
            "Shipment id.",
        ),
    }
    required_permissions = {
        "list": "shipping.view",
        "retrieve": "shipping.view",
        "document": "shipping.view",
        "void": "shipping.operate",
    }

    @extend_schema(
        request=VoidSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: LabelSerializer, **error_responses(400, 403)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def void(self, request, pk=None) -> Response:
        label = self.get_object()
        data = VoidSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        label = services.void_label(
            label, actor=_actor(request), reason=data.validated_data["reason"]
        )
        return Response(LabelSerializer(label).data)

    @extend_schema(responses={(200, "application/pdf"): bytes})
    @action(detail=True, methods=["get"])
    def document(self, request, pk=None):
        label = self.get_object()
        if not label.document:
            raise Http404
        return FileResponse(
            label.document.open("rb"),
            content_type="application/pdf" if label.label_format == "pdf" else "text/plain",
        )


class ExceptionSerializer(serializers.ModelSerializer):
    owner = serializers.EmailField(source="owner.email", read_only=True, default=None)

    class Meta:
        model = ShipmentException
        fields = [
            "id",
            "shipment",
            "kind",
            "detail",
            "suggested_action",
            "status",
            "owner",
            "opened_at",
            "escalated_at",
            "acknowledged_at",
            "resolved_at",
            "resolution",
        ]


class ExceptionResolveSerializer(serializers.Serializer):
    resolution = serializers.CharField(max_length=500)


class AssignSerializer(serializers.Serializer):
    owner = serializers.IntegerField(min_value=1, allow_null=True)


class ExceptionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = ShipmentException.objects.select_related("owner")
    serializer_class = ExceptionSerializer
    filter_backends = [QueryParamFilter]
    query_filters = {
        "status": _choice_filter("status", ExceptionStatus.choices, "Exception status."),
        "kind": _choice_filter("kind", ExceptionKind.choices, "Exception kind."),
    }
    required_permissions = {
        "list": "shipping.view",
        "retrieve": "shipping.view",
        "acknowledge": "shipping.exceptions",
        "resolve": "shipping.exceptions",
        "assign": "shipping.exceptions",
    }

    @extend_schema(request=None, responses={200: ExceptionSerializer, **error_responses(400)})
    @action(detail=True, methods=["post"])
    @idempotent
    def acknowledge(self, request, pk=None) -> Response:
        exc = services.acknowledge_exception(self.get_object(), actor=_actor(request))
        return Response(ExceptionSerializer(exc).data)

    @extend_schema(request=ExceptionResolveSerializer, responses={200: ExceptionSerializer})
    @action(detail=True, methods=["post"])
    @idempotent
    def resolve(self, request, pk=None) -> Response:
        exc = self.get_object()
        data = ExceptionResolveSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        exc = services.resolve_exception(
            exc, actor=_actor(request), resolution=data.validated_data["resolution"]
        )
        return Response(ExceptionSerializer(exc).data)

    @extend_schema(request=AssignSerializer, responses={200: ExceptionSerializer})
    @action(detail=True, methods=["post"])
    @idempotent
    def assign(self, request, pk=None) -> Response:
        exc = self.get_object()
        data = AssignSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        owner = None
        if data.validated_data["owner"] is not None:
            owner = User.objects.filter(pk=data.validated_data["owner"]).first()
            if owner is None:
                raise serializers.ValidationError({"owner": ["No such person."]})
        exc = services.assign_exception(exc, owner, actor=_actor(request))
        return Response(ExceptionSerializer(exc).data)


class LaneSerializer(serializers.Serializer):
    lane = serializers.CharField()
    carrier = serializers.CharField()
    service = serializers.CharField()
    deliveries = serializers.IntegerField()
    on_time = serializers.FloatField(allow_null=True)
    damage = serializers.FloatField()
    variance = serializers.FloatField(allow_null=True)
    rating = serializers.FloatField(allow_null=True)
    reliability = serializers.FloatField()
    do_not_use = serializers.BooleanField()


class LaneViewSet(viewsets.ViewSet):
    """Carrier performance per lane over the brand's history window."""

    required_permissions = {"list": "shipping.view"}

    @extend_schema(responses={200: LaneSerializer(many=True)})
    def list(self, request) -> Response:
        try:
            weeks = int(request.query_params.get("weeks") or 0) or None
        except ValueError:
            raise serializers.ValidationError({"weeks": ["A whole number of weeks."]}) from None
        rows = services.carrier_performance(weeks=weeks, lane=request.query_params.get("lane", ""))
        return Response(LaneSerializer(rows, many=True).data)


def register(router: BaseRouter) -> None:
    """Add this app's viewsets to the brand API router."""
    router.register("shipping/shipments", ShipmentViewSet, basename="shipment")
    router.register("shipping/labels", LabelViewSet, basename="shippinglabel")
    router.register("shipping/exceptions", ExceptionViewSet, basename="shipmentexception")
    router.register("shipping/lanes", LaneViewSet, basename="shippinglane")
