"""Conventions every Keel API endpoint shares: errors, pagination, throttling.

Error body (always):
    {"error": {"code": "<machine code>", "message": "<human text>",
               "fields": {"<field>": [{"code": ..., "message": ...}]},
               "details": {...}, "request_id": "..."}}
`details` carries the facts a service error names (e.g. insufficient_stock: sku, warehouse,
status, available, requested).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import Http404
from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiFilterExtension
from drf_spectacular.plumbing import build_parameter_type
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions, filters, pagination, serializers, status, throttling
from rest_framework.fields import get_error_detail
from rest_framework.response import Response
from rest_framework.settings import api_settings

from audit.context import current_request_id


class CursorPagination(pagination.CursorPagination):
    ordering = "-id"
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_size(self, request) -> int:
        # DRF silently falls back to the default page size for `page_size=abc` or `0`; a
        # client would then page through data with a size it never asked for.
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= self.max_page_size:
            raise exceptions.ValidationError(
                {
                    self.page_size_query_param: [
                        exceptions.ErrorDetail(
                            f"A whole number from 1 to {self.max_page_size}.", code="invalid"
                        )
                    ]
                }
            )
        return size

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
        return parameters


def _field_errors(detail: dict) -> dict[str, list[dict]]:
    """Flatten DRF's error tree into {"path": [{"code", "message"}]}.

    Nested input gets dotted paths ("lines.0.quantity"), so every value has the same
    shape however deep the field; a nested list's own errors (e.g. empty) sit on its path.
    """
    out: dict[str, list[dict]] = {}

    def add(path: str, errors) -> None:
        if isinstance(errors, dict):
            for key, value in errors.items():
                if key == api_settings.NON_FIELD_ERRORS_KEY and path:
                    add(path, value)
                else:
                    add(f"{path}.{key}" if path else str(key), value)
        elif isinstance(errors, list) and any(isinstance(e, (dict, list)) for e in errors):
            for index, value in enumerate(errors):
                if value:
                    add(f"{path}.{index}", value)
        else:
            for e in errors if isinstance(errors, list) else [errors]:
                out.setdefault(path, []).append(
                    {"code": getattr(e, "code", "invalid"), "message": str(e)}
                )

    add("", detail)
    return out


# Service errors that mean "the state of the world refuses this", not "your input is
# malformed": the client may succeed later with the same request.
CONFLICT_CODES = frozenset({"insufficient_stock"})


def _error(
    code: str,
    message: str,
    http_status: int,
    fields: dict | None = None,
    details: dict | None = None,
) -> Response:
    body = {"error": {"code": code, "message": message, "request_id": current_request_id()}}
    if fields:
        body["error"]["fields"] = fields
    if details:
        body["error"]["details"] = details
    return Response(body, status=http_status)


def exception_handler(exc, context):
    # Imported here: rest_framework.views reads DEFAULT_THROTTLE_CLASSES at import time,
    # which points back into this module.
    from rest_framework.views import exception_handler as drf_exception_handler

    # Services raise Django's exceptions; translate them into DRF's so one format applies.
    if isinstance(exc, DjangoValidationError):
        code = getattr(exc, "code", None) or "invalid"
        if hasattr(exc, "error_dict"):
            # get_error_detail keeps each field error's own code (e.g. bad_check_digit
            # from a model validator run by full_clean); message_dict would drop them.
            detail = get_error_detail(exc)
            if NON_FIELD_ERRORS in detail:
                detail[api_settings.NON_FIELD_ERRORS_KEY] = detail.pop(NON_FIELD_ERRORS)
            exc = exceptions.ValidationError(detail, code=code)
        else:
            http_status = (
                status.HTTP_409_CONFLICT if code in CONFLICT_CODES else status.HTTP_400_BAD_REQUEST
            )
            # StockError carries its parameters as `details`.
            details = getattr(exc, "details", None)
            return _error(code, " ".join(exc.messages), http_status, details=details)
    elif isinstance(exc, DjangoPermissionDenied):
        code = getattr(exc, "code", "permission_denied")
        return _error(code, str(exc) or "Permission denied.", status.HTTP_403_FORBIDDEN)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        if isinstance(detail, dict):
            fields = _field_errors(detail)
            message = "Some fields are invalid."
        else:
            items = detail if isinstance(detail, list) else [detail]
            fields = None
            message = " ".join(str(i) for i in items)
        new = _error("validation_error", message, response.status_code, fields)
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = detail.code if hasattr(detail, "code") else "error"
        new = _error(str(code), str(detail), response.status_code)
    for header in ("Retry-After", "WWW-Authenticate", "Allow"):
        if header in response:
            new[header] = response[header]
    return new


@functools.cache
def _redis() -> redis.Redis:
    from django.conf import settings

    return redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])


class PrincipalRateThrottle(throttling.SimpleRateThrottle):
    """One budget per API key (or per signed-in person), scoped to the brand.

    The cache key function prefixes the schema, so brands never share a budget.
    """

    scope = "principal"

    def get_rate(self) -> str:
        # Read at request time so operators (and tests) can change it without a restart
        # of the class-level cache DRF would otherwise keep.
        from django.conf import settings

        return settings.API_RATE_LIMIT

    # Drop requests older than the window, count, admit and record in one step.
    _SLIDING_LOG = """
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[2])
    if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
        redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
        redis.call('PEXPIRE', KEYS[1], math.ceil(ARGV[2] * 1000))
        return {1, '0'}
    end
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {0, tostring(oldest[2] + ARGV[2] - ARGV[1])}
    """

    def allow_request(self, request, view) -> bool:
        """DRF's sliding log, kept in a Redis sorted set and updated by one Lua script.

        DRF's own throttle reads the history, appends and writes it back: concurrent
        requests (threads, processes) all read the same history and all pass, so a key
        far over its budget still got through. The script makes check-and-record atomic.
        """
        from django.core.cache import cache

        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        now = self.timer()
        allowed, wait = _redis().eval(
            self._SLIDING_LOG,
            1,
            cache.make_key(self.key),  # the brand's schema prefixes it
            repr(now),
            self.duration,
            self.num_requests,
            f"{now!r}:{uuid.uuid4().hex}",
        )
        self._wait = max(float(wait), 1.0)
        return bool(allowed)

    def wait(self) -> float:
        return self._wait

    def get_cache_key(self, request, view):
        if request.auth is not None and hasattr(request.auth, "prefix"):
            ident = f"key:{request.auth.pk}"
        elif request.user is not None and getattr(request.user, "is_authenticated", False):
            ident = f"user:{request.user.pk}"
        else:
            ident = f"anon:{self.get_ident(request)}"
        return f"throttle:{self.scope}:{ident}"


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Documents `Authorization: Api-Key <key>` so the schema names how to authenticate."""

    target_class = "accounts.api_auth.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema) -> dict:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>` (or `Bearer <key>`).",
        }


# --- Filters -----------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryFilter:
    """One list filter: a DRF field parses and documents the query parameter, `apply`
    narrows the queryset with the parsed value."""

    field: serializers.Field
    apply: Callable[[QuerySet, Any], QuerySet]
    description: str = ""


class QueryParamFilter(filters.BaseFilterBackend):
    """Applies a list view's `query_filters` ({param: QueryFilter}).

    A malformed value (empty included) is a 400 naming the parameter, never silently
    ignored: a client asking for `warehouse=abc` must not receive every warehouse's rows.
    """

    def filter_queryset(self, request, queryset: QuerySet, view) -> QuerySet:
        if getattr(view, "action", "list") != "list":
            return queryset
        errors: dict = {}
        for name, spec in getattr(view, "query_filters", {}).items():
            raw = request.query_params.get(name)
            # An empty value is validated like any other (`status=` is not a status): the
            # schema promises a non-empty string, a number or a choice, never "".
            if raw is None:
                continue
            try:
                value = spec.field.run_validation(raw)
            except exceptions.ValidationError as exc:
                errors[name] = exc.detail
                continue
            queryset = spec.apply(queryset, value)
        if errors:
            raise exceptions.ValidationError(errors)
        return queryset


class QueryParamFilterScheme(OpenApiFilterExtension):
    target_class = QueryParamFilter

    def get_schema_operation_parameters(self, auto_schema, *args, **kwargs) -> list[dict]:
        return [
            build_parameter_type(
                name=name,
                schema=auto_schema._map_serializer_field(spec.field, direction="request"),
                location=OpenApiParameter.QUERY,
                description=spec.description,
            )
            for name, spec in getattr(auto_schema.view, "query_filters", {}).items()
        ]


# --- Schema helpers ----------------------------------------------------------------------


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(required=False, help_text="Field → [{code, message}].")
    details = serializers.DictField(required=False)
    request_id = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


class OptionalEmailField(serializers.EmailField):
    """An email address, or "" when there is none.

    A read-only field DRF derives from a blank model EmailField loses `allow_blank`, so the
    schema promised `format: email` for values that may be "". With `allow_blank` the
    schema says "an email, or empty" (drf-spectacular documents both).
    """

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("max_length", 254)
        super().__init__(**kwargs)


def error_responses(*status_codes: int) -> dict[int, type[serializers.Serializer]]:
    """`responses=` entries documenting the error body for these statuses."""
    return dict.fromkeys(status_codes, ErrorSerializer)


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    description=(
        "Makes a retry safe: the same key with the same body within 24 h returns the first "
        "response again (header `Idempotent-Replayed: true`) instead of acting twice; with a "
        "different body it is refused with 422 `idempotency_key_reused`."
    ),
)
