"""Conventions every Keel API endpoint shares: errors, pagination, throttling.

Error body (always):
    {"error": {"code": "<machine code>", "message": "<human text>",
               "fields": {"<field>": [{"code": ..., "message": ...}]}, "request_id": "..."}}
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, pagination, status, throttling
from rest_framework.response import Response

from audit.context import current_request_id


class CursorPagination(pagination.CursorPagination):
    ordering = "-id"
    page_size_query_param = "page_size"
    max_page_size = 200


def _field_errors(detail) -> dict:
    out: dict = {}
    for field, errors in detail.items():
        items = errors if isinstance(errors, list) else [errors]
        out[field] = [
            {"code": getattr(e, "code", "invalid"), "message": str(e)}
            if not isinstance(e, dict)
            else _field_errors(e)
            for e in items
        ]
    return out


def _error(code: str, message: str, http_status: int, fields: dict | None = None) -> Response:
    body = {"error": {"code": code, "message": message, "request_id": current_request_id()}}
    if fields:
        body["error"]["fields"] = fields
    return Response(body, status=http_status)


def exception_handler(exc, context):
    # Imported here: rest_framework.views reads DEFAULT_THROTTLE_CLASSES at import time,
    # which points back into this module.
    from rest_framework.views import exception_handler as drf_exception_handler

    # Services raise Django's exceptions; translate them into DRF's so one format applies.
    if isinstance(exc, DjangoValidationError):
        code = getattr(exc, "code", None) or "invalid"
        if hasattr(exc, "error_dict"):
            exc = exceptions.ValidationError(exc.message_dict, code=code)
        else:
            return _error(code, " ".join(exc.messages), status.HTTP_400_BAD_REQUEST)
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

    def get_cache_key(self, request, view):
        if request.auth is not None and hasattr(request.auth, "prefix"):
            ident = f"key:{request.auth.pk}"
        elif request.user is not None and getattr(request.user, "is_authenticated", False):
            ident = f"user:{request.user.pk}"
        else:
            ident = f"anon:{self.get_ident(request)}"
        return f"throttle:{self.scope}:{ident}"
