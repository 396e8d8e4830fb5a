"""REST endpoints for partner webhooks. Business rules live in webhooks.services.

Decisions:
- Everything here needs `webhooks.manage` (Owner, Admin). API keys never hold it, not even
  write keys: a leaked key must not be able to add a receiver and siphon every event.
- The signing secret is in the 201 answer to POST /webhook-endpoints/ only (no-store);
  creating is therefore not @idempotent, since a replay would need the stored secret.
- POST /webhook-deliveries/{id}/replay/ makes a new delivery of the same event (same
  event id) and answers 201 with it; it honours Idempotency-Key.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from config.api import IDEMPOTENCY_KEY, QueryFilter, QueryParamFilter, error_responses
from idempotency.services import idempotent
from outbox.events import EVENT_TYPES
from webhooks import services
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint

PERMISSION = "webhooks.manage"


class WebhookEndpointSerializer(serializers.ModelSerializer):
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=list(EVENT_TYPES)),
        allow_empty=False,
        help_text="Domain events this endpoint receives.",
    )
    is_active = serializers.BooleanField(required=False, default=True)
    description = serializers.CharField(
        max_length=200, required=False, allow_blank=True, default=""
    )

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "description",
            "event_types",
            "is_active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(
        read_only=True, help_text="The signing secret. Shown in this response only."
    )

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "endpoint",
            "event_id",
            "event_type",
            "status",
            "attempts",
            "max_attempts",
            "status_code",
            "response_excerpt",
            "duration_ms",
            "error",
            "next_attempt_at",
            "last_attempt_at",
            "delivered_at",
            "created_at",
            "replay_of",
            "payload",
        ]
        read_only_fields = fields


class WebhookEndpointViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Partner webhook endpoints. POST returns the signing secret once."""

    queryset = WebhookEndpoint.objects.order_by("id")
    serializer_class = WebhookEndpointSerializer
    required_permissions = dict.fromkeys(
        ("list", "retrieve", "create", "update", "partial_update", "destroy"), PERMISSION
    )

    @extend_schema(
        request=WebhookEndpointSerializer,
        responses={201: WebhookEndpointCreatedSerializer, **error_responses(400, 403)},
    )
    def create(self, request):
        data = WebhookEndpointSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        issued = services.create_endpoint(actor=request.user, **data.validated_data)
        body = WebhookEndpointSerializer(issued.endpoint).data | {"secret": issued.secret}
        response = Response(body, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response

    def perform_update(self, serializer):
        serializer.instance = services.update_endpoint(
            serializer.instance, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.delete_endpoint(instance)


class WebhookDeliveryViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Every attempt-tracked delivery of an event to an endpoint, newest first."""

    queryset = WebhookDelivery.objects.all()
    serializer_class = WebhookDeliverySerializer
    filter_backends = [QueryParamFilter]
    query_filters = {
        "endpoint": QueryFilter(
            serializers.IntegerField(min_value=1),
            lambda qs, v: qs.filter(endpoint_id=v),
            "Endpoint id.",
        ),
        "status": QueryFilter(
            serializers.ChoiceField(choices=DeliveryStatus.choices),
            lambda qs, v: qs.filter(status=v),
            "pending (retrying), succeeded or failed.",
        ),
        "event_type": QueryFilter(
            serializers.CharField(max_length=64),
            lambda qs, v: qs.filter(event_type=v),
            "Event type, e.g. order.created.",
        ),
        "event_id": QueryFilter(
            serializers.CharField(max_length=64),
            lambda qs, v: qs.filter(event_id=v),
            "Event id (evt_…): the original delivery and its replays.",
        ),
    }
    required_permissions = dict.fromkeys(("list", "retrieve", "replay"), PERMISSION)

    @extend_schema(
        request=None,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: WebhookDeliverySerializer, **error_responses(403, 404)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def replay(self, request, pk=None):
        again = services.replay(self.get_object())
        return Response(WebhookDeliverySerializer(again).data, status=status.HTTP_201_CREATED)
