"""The outbound approvals webhook: body, signature and the HTTP call.

Body: Slack-compatible JSON — `text` is what a Slack (or Teams/Mattermost incoming
webhook) channel shows; `event` and `request` carry the same facts for programs.
Signature: `X-Keel-Signature: sha256=<hex HMAC-SHA256 of the raw body under the brand's
webhook secret>`; receivers recompute it over the bytes they received and compare in
constant time (`verify`). `X-Keel-Event` and `X-Keel-Delivery` (unique per delivery, the
same on retries) let a receiver drop duplicates.

Destinations that resolve to loopback, private, link-local or reserved addresses are
refused (a brand admin must not be able to make Keel's workers call its internal
network) unless settings.KEEL_WEBHOOKS_ALLOW_PRIVATE is on; it defaults to DEBUG.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from approvals.rules import money

if TYPE_CHECKING:
    from approvals.models import ApprovalRequest

TIMEOUT_SECONDS = 5.0
SIGNATURE_HEADER = "X-Keel-Signature"

_HEADLINES = {
    "requested": "Approval needed",
    "escalated": "Escalated",
    "approved": "Approved",
    "rejected": "Rejected",
    "expired": "Expired",
    "cancelled": "Cancelled",
}


class WebhookError(Exception):
    pass


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    return hmac.compare_digest(signature(secret, body), header or "")


def payload(event: str, request: ApprovalRequest, url: str) -> dict[str, Any]:
    amount = money(request.amount, request.currency)
    headline = _HEADLINES.get(event, event.replace("_", " ").capitalize())
    text = f"{headline}: {request.subject_label} — {request.title} ({amount})"
    if event == "requested":
        text += f", requested by {request.requested_by_label or 'Keel'}"
    elif request.decided_by_label and event in ("approved", "rejected", "cancelled"):
        text += f", by {request.decided_by_label}"
    if request.resolution and event in ("rejected", "cancelled", "expired"):
        text += f". {request.resolution}"
    # Slack's link syntax: <url|label>.
    text += f". <{url}|Open in Keel>"
    return {
        "text": text,
        "event": f"approval.{event}",
        "request": {
            "id": request.pk,
            "subject_type": request.subject_type,
            "subject_id": request.subject_id,
            "title": request.title,
            "amount": None if request.amount is None else str(request.amount),
            "currency": request.currency,
            "state": request.state,
            "requested_by": request.requested_by_label,
            "decided_by": request.decided_by_label,
            "resolution": request.resolution,
            "url": url,
        },
    }


def encode(body: dict[str, Any]) -> str:
    # Compact and key-sorted: what is signed is exactly what is sent, byte for byte.
    return json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _allow_private() -> bool:
    return bool(getattr(settings, "KEEL_WEBHOOKS_ALLOW_PRIVATE", settings.DEBUG))


def check_destination(url: str) -> None:
    """Refuse URLs Keel must not call; raises WebhookError saying why."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError("Use an http:// or https:// URL.")
    if _allow_private():
        return
    if parts.scheme != "https":
        raise WebhookError("Use an https:// URL.")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise WebhookError(f"Cannot resolve {parts.hostname}.") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise WebhookError(f"{parts.hostname} is not a public address.")


def send(url: str, body: bytes, *, secret: str, event: str, delivery_id: int) -> int:
    """POST `body` signed; returns the HTTP status. Redirects are not followed."""
    check_destination(url)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Keel-Approvals/1",
        SIGNATURE_HEADER: signature(secret, body),
        "X-Keel-Event": event,
        "X-Keel-Delivery": str(delivery_id),
    }
    try:
        response = httpx.post(
            url, content=body, headers=headers, timeout=TIMEOUT_SECONDS, follow_redirects=False
        )
    except httpx.HTTPError as exc:
        raise WebhookError(f"{type(exc).__name__}: {exc}"[:500]) from exc
    return response.status_code
