"""How Keel signs a webhook, and how a receiver checks it.

Headers on every delivery:
    Keel-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
    Keel-Event-Id:   evt_…   (the same on retries and replays: drop duplicates by it)
    Keel-Event-Type: order.created, stock.changed, …

A receiver recomputes the HMAC over the bytes it received (before parsing JSON), compares
in constant time and rejects timestamps older than a few minutes (replayed captures).
`verify` does exactly that and is what the tests use as the receiver.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

SIGNATURE_HEADER = "Keel-Signature"
EVENT_ID_HEADER = "Keel-Event-Id"
EVENT_TYPE_HEADER = "Keel-Event-Type"
DEFAULT_TOLERANCE_SECONDS = 300


def encode(payload: dict[str, Any]) -> bytes:
    # Compact, key-sorted: what is signed is exactly what is sent, byte for byte.
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The Keel-Signature header value for `body`."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True when `header` signs `body` with `secret` and is recent enough."""
    parts: dict[str, list[str]] = {}
    for item in (header or "").split(","):
        name, _, value = item.strip().partition("=")
        parts.setdefault(name, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        return False
    expected = _mac(secret, timestamp, body)
    return any(hmac.compare_digest(expected, given) for given in parts.get("v1", []))
