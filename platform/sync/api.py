"""REST endpoints for connections, sync runs and the installed connectors.

Decisions:
- Credentials are write-only: a connection's body lists `credential_fields` (the names of
  the secrets stored), never a value, not even masked.
- Creating and editing connections needs `connections.manage`, which API keys never hold:
  a key that could repoint a connection's API URL could send its token elsewhere. Keys
  with the write scope may trigger syncs (`connections.sync`); both scopes may read.
- POST `connections/{id}/sync/` answers 202 with the queued run, or 200 with the run
  already in progress (one run per connection at a time).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from config.api import IDEMPOTENCY_KEY, QueryFilter, QueryParamFilter, error_responses
from idempotency.services import idempotent
from sync import plugins, services
from sync.models import Connection, RunStatus, RunTrigger, SyncRun


class ConnectionSerializer(serializers.ModelSerializer):
    credential_fields = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="Names of the secret settings stored (values are never returned).",
    )
    webhook_url = serializers.SerializerMethodField()

    class Meta:
        model = Connection
        fields = [
            "id",
            "connector",
            "kind",
            "display_name",
            "channel_key",
            "settings",
            "credential_fields",
            "warehouse_map",
            "poll_interval",
            "status",
            "status_reason",
            "last_polled_at",
            "last_success_at",
            "last_error_at",
            "last_error",
            "throttled_until",
            "webhook_url",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_webhook_url(self, conn: Connection) -> str | None:
        info = plugins.infos().get(conn.connector)
        if not services.accepts_webhooks(info):
            return None
        request = self.context.get("request")
        path = services.webhook_path(conn)
        return request.build_absolute_uri(path) if request is not None else path


class ConnectionCreateSerializer(serializers.Serializer):
    connector = serializers.CharField(max_length=50, help_text="An installed connector's name.")
    display_name = serializers.CharField(max_length=120, required=False, default="")
    channel_key = serializers.CharField(max_length=100)
    settings = serializers.DictField(required=False, default=dict)
    credentials = serializers.DictField(
        child=serializers.CharField(), required=False, default=dict, write_only=True
    )
    warehouse_map = serializers.DictField(
        child=serializers.CharField(max_length=32), required=False, default=dict
    )
    poll_interval = serializers.IntegerField(
        min_value=services.MIN_POLL_SECONDS, required=False, default=None
    )


class ConnectionUpdateSerializer(serializers.Serializer):
    display_name = serializers.CharField(max_length=120, required=False)
    settings = serializers.DictField(required=False)
    credentials = serializers.DictField(
        child=serializers.CharField(allow_blank=True), required=False, write_only=True
    )
    warehouse_map = serializers.DictField(
        child=serializers.CharField(max_length=32), required=False
    )
    poll_interval = serializers.IntegerField(min_value=services.MIN_POLL_SECONDS, required=False)


class SyncRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = SyncRun
        fields = [
            "id",
            "connection",
            "trigger",
            "status",
            "streams",
            "current_stream",
            "queued_at",
            "started_at",
            "finished_at",
            "next_retry_at",
            "attempts",
            "retries",
            "pages",
            "counts",
            "error_count",
            "errors",
            "message",
        ]
        read_only_fields = fields


class SyncRequestSerializer(serializers.Serializer):
    streams = serializers.ListField(
        child=serializers.ChoiceField(choices=sorted(services.STREAM_HANDLERS)),
        required=False,
        help_text="Streams to run (default: all the connector supports).",
    )


class ConnectorSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.CharField()
    display_name = serializers.CharField()
    version = serializers.CharField()
    description = serializers.CharField()
    capabilities = serializers.ListField(child=serializers.CharField())
    secret_fields = serializers.ListField(child=serializers.CharField())
    settings_schema = serializers.DictField()


def _connector_body(info) -> dict[str, Any]:
    return {
        "name": info.name,
        "kind": str(info.kind),
        "display_name": info.display_name,
        "version": info.version,
        "description": info.description,
        "capabilities": sorted(str(c) for c in info.capabilities),
        "secret_fields": sorted(info.secret_fields),
        "settings_schema": _plain(info.settings_schema),
    }


def _plain(value: Any) -> Any:
    # ConnectorInfo keeps its schema read-only (mapping proxies); JSON wants dicts.
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class ConnectorViewSet(viewsets.ViewSet):
    """Connectors installed on this deployment, with the settings schema to fill in."""

    required_permissions = {"list": "connections.view"}

    @extend_schema(responses={200: ConnectorSerializer(many=True)})
    def list(self, request: Request) -> Response:
        return Response([_connector_body(info) for info in services.connector_choices()])


class ConnectionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """A brand's connections to channels, 3PLs and carriers (credentials never returned)."""

    queryset = Connection.objects.all()
    serializer_class = ConnectionSerializer
    http_method_names = ["get", "post", "patch", "head", "options"]
    required_permissions = {
        "list": "connections.view",
        "retrieve": "connections.view",
        "create": "connections.manage",
        "partial_update": "connections.manage",
        "pause": "connections.manage",
        "resume": "connections.manage",
        "test": "connections.manage",
        "sync": "connections.sync",
    }

    def get_queryset(self) -> QuerySet[Connection]:
        return Connection.objects.order_by("-id")

    def _body(self, conn: Connection, code: int = status.HTTP_200_OK) -> Response:
        conn.refresh_from_db()
        return Response(self.get_serializer(conn).data, status=code)

    @extend_schema(
        request=ConnectionCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: ConnectionSerializer, **error_responses(400, 422)},
    )
    @idempotent
    def create(self, request: Request) -> Response:
        data = ConnectionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        conn = services.create_connection(**data.validated_data)
        return self._body(conn, status.HTTP_201_CREATED)

    @extend_schema(
        request=ConnectionUpdateSerializer,
        responses={200: ConnectionSerializer, **error_responses(400)},
    )
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        conn = self.get_object()
        data = ConnectionUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return self._body(services.update_connection(conn, **data.validated_data))

    @extend_schema(
        request=SyncRequestSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={202: SyncRunSerializer, 200: SyncRunSerializer, **error_responses(400)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def sync(self, request: Request, pk: str | None = None) -> Response:
        """Queue a sync now (202), or show the one already running (200)."""
        conn = self.get_object()
        data = SyncRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run, created = services.request_sync(
            conn,
            trigger=RunTrigger.API,
            streams=data.validated_data.get("streams"),
            requested_by=_label(request),
        )
        return Response(
            SyncRunSerializer(run).data,
            status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK,
        )

    @extend_schema(request=None, responses={200: ConnectionSerializer})
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        return self._body(services.pause_connection(self.get_object()))

    @extend_schema(request=None, responses={200: ConnectionSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        return self._body(services.resume_connection(self.get_object()))

    @extend_schema(request=None, responses={200: ConnectionSerializer})
    @action(detail=True, methods=["post"])
    def test(self, request: Request, pk: str | None = None) -> Response:
        """One authenticated request to the vendor; the outcome is `last_test_*`."""
        conn = self.get_object()
        result = services.test_connection(conn)
        body = self.get_serializer(Connection.objects.get(pk=conn.pk)).data
        return Response({**body, "test": {"ok": result.ok, "message": result.message}})


def _label(request: Request) -> str:
    auth = getattr(request, "auth", None)
    if auth is not None and hasattr(auth, "prefix"):
        return f"API key {auth.prefix}"
    return getattr(request.user, "email", "") or ""


class SyncRunViewSet(viewsets.ReadOnlyModelViewSet):
    """Sync runs, newest first: status, counts, errors and progress."""

    queryset = SyncRun.objects.all()
    serializer_class = SyncRunSerializer
    filter_backends = [QueryParamFilter]
    query_filters = {
        "connection": QueryFilter(
            serializers.IntegerField(min_value=1),
            lambda qs, v: qs.filter(connection_id=v),
            "Connection id.",
        ),
        "status": QueryFilter(
            serializers.ChoiceField(choices=RunStatus.choices),
            lambda qs, v: qs.filter(status=v),
            "Run status.",
        ),
    }
    required_permissions = {"list": "connections.view", "retrieve": "connections.view"}
