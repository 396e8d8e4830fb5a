"""The HTTP side of a delivery: where Keel may send, and the POST itself.

Destinations resolving to loopback, private, link-local or otherwise non-global addresses
are refused, and so is plain http://, so a brand admin cannot point Keel's workers at
its own internal network. settings.KEEL_WEBHOOKS_ALLOW_PRIVATE (on in DEBUG and tests)
lifts both for local development. The address is checked when the endpoint is saved and
again before every attempt; redirects are never followed (a 3xx counts as a failure).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from django.conf import settings

CONNECT_TIMEOUT_SECONDS = 5.0
TIMEOUT_SECONDS = 10.0
EXCERPT_BYTES = 1000
USER_AGENT = "Keel-Webhooks/1"


class DestinationRefused(Exception):
    """Keel will not send to this URL (the message says why)."""


def check_destination(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DestinationRefused("Use an http:// or https:// URL.")
    if settings.KEEL_WEBHOOKS_ALLOW_PRIVATE:
        return
    if parts.scheme != "https":
        raise DestinationRefused("Use an https:// URL.")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise DestinationRefused(f"Cannot resolve {parts.hostname}.") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise DestinationRefused(f"{parts.hostname} is not a public internet address.")


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    excerpt: str
    duration_ms: int
    error: str

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(url: str, body: bytes, headers: dict[str, str]) -> Outcome:
    """POST `body`; never raises for network or HTTP errors (they are the Outcome)."""
    started = time.perf_counter()
    try:
        check_destination(url)
        timeout = httpx.Timeout(TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS)
        with (
            httpx.Client(timeout=timeout, follow_redirects=False) as client,
            client.stream(
                "POST",
                url,
                content=body,
                headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
            ) as response,
        ):
            # Only the start of the answer is kept: a receiver's error page can be huge.
            received = b""
            for chunk in response.iter_bytes():
                received += chunk
                if len(received) >= EXCERPT_BYTES:
                    break
            excerpt = received[:EXCERPT_BYTES].decode("utf-8", errors="replace")
            return Outcome(response.status_code, excerpt, _elapsed(started), "")
    except DestinationRefused as exc:
        return Outcome(None, "", _elapsed(started), f"Refused: {exc}")
    except httpx.HTTPError as exc:
        return Outcome(None, "", _elapsed(started), f"{type(exc).__name__}: {exc}"[:500])


def _elapsed(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
