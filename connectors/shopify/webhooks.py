"""Shopify webhook signatures.

Shopify signs the raw request body with HMAC-SHA256 under the app's secret and sends the
base64 digest in ``X-Shopify-Hmac-Sha256``. Verification must use the bytes exactly as
received: re-serialised JSON (different whitespace or key order) does not verify, by design.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping

from connectors.errors import WebhookVerificationError

SIGNATURE_HEADER = "x-shopify-hmac-sha256"


def sign(body: bytes, secret: str) -> str:
    """The ``X-Shopify-Hmac-Sha256`` value for ``body``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def verify(headers: Mapping[str, str], body: bytes, secrets: Iterable[str]) -> None:
    """Raise :class:`WebhookVerificationError` unless one of ``secrets`` signed ``body``.

    Every candidate is compared with :func:`hmac.compare_digest` (constant time), and all of
    them are always tried, so timing does not reveal which secret is current.
    """
    received = lower_headers(headers).get(SIGNATURE_HEADER)
    if not received:
        raise WebhookVerificationError("missing X-Shopify-Hmac-Sha256 header")
    try:
        received_bytes = base64.b64decode(received.strip(), validate=True)
    except ValueError:
        raise WebhookVerificationError("malformed X-Shopify-Hmac-Sha256 header") from None
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
        matched |= hmac.compare_digest(expected, received_bytes)
    if not matched:
        raise WebhookVerificationError("webhook signature does not match")
