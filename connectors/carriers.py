"""Helpers shared by the parcel-aggregator connectors (Shippo, EasyPost).

- :class:`LabelFiles` downloads label documents from the pre-signed URLs carriers answer
  with. Those live on another host (a storage bucket), so they are fetched by a separate,
  unauthenticated client per origin: the API credentials never leave for the file host.
- :func:`remember` keeps small, bounded lookups (idempotency key → remote id, tracking
  number → carrier) in the connection's :class:`~connectors.state.ConnectionState`.
- :func:`header` reads a header case-insensitively; :func:`parse_time` reads vendor
  timestamps (``Z`` or offsets) into aware datetimes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from connectors.errors import PermanentError, TransientError
from connectors.http import ApiClient, HttpContext
from connectors.state import ConnectionState
from connectors.types import ServiceLevel

__all__ = [
    "LabelFiles",
    "header",
    "parse_time",
    "recall",
    "remember",
    "service_level_for_days",
    "short_key",
]

#: Entries kept per lookup in the connection state (oldest dropped first).
STATE_ENTRIES = 1000


def service_level_for_days(days: int | None) -> ServiceLevel:
    """A vendor-neutral level from estimated transit days (overridable per token)."""
    if days is None:
        return ServiceLevel.STANDARD
    if days <= 1:
        return ServiceLevel.OVERNIGHT
    if days <= 3:
        return ServiceLevel.EXPEDITED
    if days <= 5:
        return ServiceLevel.STANDARD
    return ServiceLevel.ECONOMY


def header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise PermanentError(f"timestamp without offset: {value!r}")
    return parsed


def short_key(prefix: str, key: str, limit: int) -> str:
    """``prefix + key``, or a digest of the key when that would exceed ``limit`` chars."""
    tagged = prefix + key
    if len(tagged) <= limit:
        return tagged
    return prefix + "sha256:" + hashlib.sha256(key.encode()).hexdigest()[: limit - len(prefix) - 7]


def remember(state: ConnectionState, name: str, key: str, value: Any) -> None:
    def put(current: dict[str, Any]) -> dict[str, Any]:
        current.pop(key, None)
        current[key] = value
        while len(current) > STATE_ENTRIES:
            current.pop(next(iter(current)))
        return current

    state.update(name, put, default={})


def recall(state: ConnectionState, name: str, key: str) -> Any:
    return (state.get(name, {}) or {}).get(key)


class LabelFiles:
    """Fetches label documents with one unauthenticated client per file origin."""

    def __init__(self, *, http: HttpContext, name: str) -> None:
        self._http = http
        self._name = name
        self._clients: dict[str, ApiClient] = {}

    def fetch(self, url: str) -> bytes:
        parts = urlsplit(url)
        if not parts.scheme or not parts.netloc:
            raise PermanentError(f"{self._name}: label URL is not absolute")
        origin = f"{parts.scheme}://{parts.netloc}"
        client = self._clients.get(origin)
        if client is None:
            # No credentials on this client: the URL itself is the (pre-signed) permission.
            client = self._http.client(name=f"{self._name}-files", base_url=origin)
            self._clients[origin] = client
        response = client.request("GET", url)
        if not response.content:
            raise TransientError(f"{self._name}: empty label document")
        return response.content

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
