"""`Idempotency-Key` for POST endpoints (Stripe's contract).

- The first request with a key runs; its response is stored in the same transaction as
  its effects, so either both exist or neither does.
- A repeat with the same key and the same request gets the stored response again, with
  `Idempotent-Replayed: true`. A concurrent repeat waits for the first to finish (the
  unique index makes it queue) and then replays.
- The same key with a different request is refused: 422 `idempotency_key_reused`.
- A failed request (any error) stores nothing, so the client may retry with the key.
- Keys expire after IDEMPOTENCY_TTL (24 h); after that the key is new again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from functools import wraps

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.response import Response

from idempotency.models import IdempotencyRecord

IDEMPOTENCY_TTL = timedelta(hours=24)
HEADER = "Idempotency-Key"


class IdempotencyKeyReused(APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "idempotency_key_reused"
    default_detail = "This Idempotency-Key was used with a different request."


class InvalidIdempotencyKey(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_idempotency_key"
    default_detail = "Idempotency-Key must be 1 to 255 printable ASCII characters."


def _principal(request) -> str:
    auth = getattr(request, "auth", None)
    if auth is not None and hasattr(auth, "prefix"):
        return f"key:{auth.pk}"
    return f"user:{request.user.pk}"


def _fingerprint(request) -> str:
    body = json.dumps(request.data, sort_keys=True, default=str)
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


def _replay(record: IdempotencyRecord) -> Response:
    response = Response(record.body, status=record.status_code)
    response["Idempotent-Replayed"] = "true"
    return response


def idempotent(view_method: Callable) -> Callable:
    """Decorate a DRF view method (e.g. `create`) to honour `Idempotency-Key`."""

    @wraps(view_method)
    def wrapper(self, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return view_method(self, request, *args, **kwargs)
        if not (0 < len(key) <= 255 and key.isascii() and key.isprintable()):
            raise InvalidIdempotencyKey()
        principal, fingerprint = _principal(request), _fingerprint(request)
        IdempotencyRecord.objects.filter(
            principal=principal, key=key, created_at__lt=timezone.now() - IDEMPOTENCY_TTL
        ).delete()
        with transaction.atomic():
            try:
                # Claim the key first: a concurrent twin blocks here on the unique index
                # until this transaction ends, then sees the stored outcome.
                with transaction.atomic():
                    record = IdempotencyRecord.objects.create(
                        principal=principal, key=key, fingerprint=fingerprint, status_code=0
                    )
            except IntegrityError:
                record = IdempotencyRecord.objects.get(principal=principal, key=key)
            else:
                response = view_method(self, request, *args, **kwargs)
                if response.status_code >= 400:
                    transaction.set_rollback(True)
                    return response
                record.status_code = response.status_code
                record.body = response.data
                record.save(update_fields=["status_code", "body"])
                return response
        if record.fingerprint != fingerprint:
            raise IdempotencyKeyReused()
        return _replay(record)

    return wrapper
