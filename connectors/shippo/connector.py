"""Shippo (https://api.goshippo.com) as a Keel carrier.

Endpoints:

- ``POST /shipments`` with ``address_from``/``address_to``/``parcels`` (synchronous,
  ``"async": false``) answers the shipment with its rates. An address Shippo refuses is a
  400 naming the field: raised as :class:`~connectors.errors.PermanentError` saying which
  address and field, never retried. Creating a shipment buys nothing, so the POST is retried
  after a 5xx like a read.
- ``POST /transactions`` buys a label from a rate with ``"async": true``: Shippo answers
  ``QUEUED`` and the label (``SUCCESS`` with ``tracking_number`` and ``label_url``) appears
  on ``GET /transactions/{id}``, which we poll on the clock for ``purchase_wait_seconds``.
  ``ERROR`` (the carrier refused; nothing charged) is a ``PermanentError`` with Shippo's
  messages.
- ``GET /transactions`` (a throttled list endpoint, paced client-side and ``Retry-After``
  honoured) lists labels and finds a purchase already made under an idempotency key.
- ``POST /refunds`` voids a label; the transaction then reads ``REFUNDPENDING`` until
  Shippo decides (``REFUNDED``/``REFUNDREJECTED``).
- ``GET /tracks/{carrier}/{tracking_number}`` for tracking; ``track_updated`` webhooks.

**Idempotent purchases.** A label purchase is not something Shippo dedupes, and a worker
may die between Shippo's answer and our commit. Every purchase carries
``metadata = "keel:<idempotency key>"``. Before buying, the connector looks for a
transaction with that metadata — first by the id remembered in the connection state, then
by listing transactions created since the rate was quoted — and resumes it (polling a queued
one, re-downloading a finished one) instead of buying again. Only a purchase that ended in
``ERROR`` (no label, no charge) is attempted anew.

Auth is ``Authorization: ShippoToken <key>``; webhooks are verified with
``Shippo-Auth-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from connectors.carriers import (
    LabelFiles,
    header,
    parse_time,
    recall,
    remember,
    service_level_for_days,
    short_key,
)
from connectors.clock import Clock
from connectors.config import validate_connection
from connectors.errors import (
    NotFoundError,
    PermanentError,
    TransientError,
    WebhookVerificationError,
)
from connectors.http import ApiClient, HttpContext
from connectors.ratelimit import SlidingWindowLimiter
from connectors.state import ConnectionState
from connectors.types import (
    Address,
    ConnectorInfo,
    Label,
    LabelStatus,
    Money,
    Parcel,
    PullResult,
    Rate,
    RateRequest,
    ServiceLevel,
    TrackingEvent,
    TrackingException,
    TrackingStatus,
    WebhookEvent,
)

SIGNATURE_HEADER = "Shippo-Auth-Signature"
METADATA_PREFIX = "keel:"
#: Shippo's limit on ``metadata``.
METADATA_LIMIT = 100
#: Safety bound on a lookup scan (pages of ``page_size`` transactions).
MAX_LOOKUP_PAGES = 40
PURCHASES = "shippo.purchases"
CARRIERS = "shippo.carriers"

LABEL_STATUS = {
    "WAITING": LabelStatus.PENDING,
    "QUEUED": LabelStatus.PENDING,
    "SUCCESS": LabelStatus.PURCHASED,
    "ERROR": LabelStatus.FAILED,
    "REFUNDPENDING": LabelStatus.VOID_PENDING,
    "REFUNDED": LabelStatus.VOIDED,
    "REFUNDREJECTED": LabelStatus.VOID_REJECTED,
}

TRACKING_STATUS = {
    "UNKNOWN": TrackingStatus.PRE_TRANSIT,
    "PRE_TRANSIT": TrackingStatus.PRE_TRANSIT,
    "TRANSIT": TrackingStatus.IN_TRANSIT,
    "DELIVERED": TrackingStatus.DELIVERED,
    "RETURNED": TrackingStatus.RETURNED,
    "FAILURE": TrackingStatus.EXCEPTION,
}

#: Shippo ``substatus.code`` → the canonical trouble it means.
SUBSTATUS_EXCEPTION = {
    "address_issue": TrackingException.ADDRESS_ISSUE,
    "package_damaged": TrackingException.DAMAGED,
    "return_to_sender": TrackingException.RETURN_TO_SENDER,
    "delivery_attempted": TrackingException.DELIVERY_FAILED,
    "package_undeliverable": TrackingException.DELIVERY_FAILED,
    "location_inaccessible": TrackingException.DELIVERY_FAILED,
    "notice_left": TrackingException.DELIVERY_FAILED,
    "delayed": TrackingException.DELAYED,
    "reschedule_delivery": TrackingException.DELAYED,
    "package_held": TrackingException.HELD,
    "contact_carrier": TrackingException.OTHER,
    "package_lost": TrackingException.LOST,
    "package_disposed": TrackingException.LOST,
}


def _address(address: Address) -> dict[str, str]:
    return {
        "name": address.name,
        "company": address.company,
        "street1": address.line1,
        "street2": address.line2,
        "city": address.city,
        "state": address.region,
        "zip": address.postal_code,
        "country": address.country,
        "phone": address.phone,
        "email": address.email,
    }


def _parcel(parcel: Parcel) -> dict[str, str]:
    out = {"weight": str(parcel.weight_g), "mass_unit": "g"}
    if parcel.length_mm and parcel.width_mm and parcel.height_mm:
        out.update(
            length=str(Decimal(parcel.length_mm) / 10),
            width=str(Decimal(parcel.width_mm) / 10),
            height=str(Decimal(parcel.height_mm) / 10),
            distance_unit="cm",
        )
    return out


def _field_errors(detail: str) -> str:
    """Shippo's 400 body (``{"address_to": {"zip": ["…"]}}``) as ``address_to.zip: …``."""
    try:
        body = json.loads(detail)
    except ValueError:
        return detail
    parts: list[str] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list):
            parts.append(f"{prefix}: {' '.join(str(v) for v in value)}")
        else:
            parts.append(f"{prefix}: {value}")

    walk("", body)
    return "; ".join(parts) or detail


def tracking_events(track: Mapping[str, Any]) -> list[TrackingEvent]:
    """A Shippo track object's history as canonical events, oldest first."""
    number = str(track.get("tracking_number") or "")
    carrier = str(track.get("carrier") or "")
    history = list(track.get("tracking_history") or ())
    if not history and track.get("tracking_status"):
        history = [track["tracking_status"]]
    events = []
    for entry in history:
        occurred = parse_time(entry.get("status_date") or entry.get("object_created"))
        if occurred is None:
            continue
        events.append(_event(number, carrier, entry, occurred))
    events.sort(key=lambda e: e.occurred_at)
    return events


def _event(
    number: str, carrier: str, entry: Mapping[str, Any], occurred: datetime
) -> TrackingEvent:
    raw_status = str(entry.get("status") or "UNKNOWN").upper()
    status = TRACKING_STATUS.get(raw_status, TrackingStatus.IN_TRANSIT)
    substatus = entry.get("substatus") or {}
    code = str(substatus.get("code") or "")
    exception = SUBSTATUS_EXCEPTION.get(code)
    if code == "out_for_delivery" and status is TrackingStatus.IN_TRANSIT:
        status = TrackingStatus.OUT_FOR_DELIVERY
    if exception is not None and status not in (TrackingStatus.DELIVERED, TrackingStatus.RETURNED):
        status = TrackingStatus.EXCEPTION
    if status is TrackingStatus.EXCEPTION and exception is None:
        exception = TrackingException.OTHER
    if status is TrackingStatus.RETURNED and exception is None:
        exception = TrackingException.RETURN_TO_SENDER
    location = entry.get("location") or {}
    place = ", ".join(str(location[k]) for k in ("city", "state", "country") if location.get(k))
    return TrackingEvent(
        tracking_number=number,
        status=status,
        occurred_at=occurred,
        description=str(entry.get("status_details") or substatus.get("text") or ""),
        location=place,
        exception=exception,
        carrier_status=f"{raw_status}/{code}" if code else raw_status,
        carrier=carrier,
    )


class ShippoConnector:
    """One Shippo account. See the module docstring."""

    def __init__(
        self,
        *,
        info: ConnectorInfo,
        settings: Mapping[str, Any],
        credentials: Mapping[str, str],
        http: HttpContext,
        state: ConnectionState,
        clock: Clock,
    ) -> None:
        self.info = info
        config = validate_connection(info, settings, credentials)
        self.base_url: str = config["api_base_url"].rstrip("/")
        self.api_version: str = config["api_version"]
        self.label_file_type: str = config["label_file_type"]
        self.wait = float(config["purchase_wait_seconds"])
        self.poll = float(config["purchase_poll_seconds"])
        self.lookup = timedelta(days=config["lookup_days"])
        self.page_size: int = config["page_size"]
        self.list_per_minute: int = config["list_requests_per_minute"]
        self.tolerance = float(config["webhook_tolerance_seconds"])
        self.default_carrier: str = config["default_carrier"]
        self.service_levels: Mapping[str, str] = config["service_levels"]
        self._key: str = credentials["api_key"]
        self._webhook_secret: str = credentials.get("webhook_secret") or ""
        self._http = http
        self.state = state
        self.clock = clock
        self._client: ApiClient | None = None
        self._list_client: ApiClient | None = None
        self._files = LabelFiles(http=http, name=info.name)

    # -- plumbing -------------------------------------------------------------------------------

    def _make_client(self, *, limiter: SlidingWindowLimiter | None) -> ApiClient:
        return self._http.client(
            name=self.info.name,
            base_url=self.base_url,
            headers={
                "Authorization": f"ShippoToken {self._key}",
                "Shippo-API-Version": self.api_version,
                "Accept": "application/json",
            },
            secrets=[self._key, self._webhook_secret],
            limiter=limiter,
        )

    @property
    def client(self) -> ApiClient:
        """Single-object requests (not limited by Shippo's list quota)."""
        if self._client is None:
            self._client = self._make_client(limiter=None)
        return self._client

    @property
    def list_client(self) -> ApiClient:
        """List requests, paced to Shippo's per-token list quota."""
        if self._list_client is None:
            self._list_client = self._make_client(
                limiter=SlidingWindowLimiter(
                    limit=self.list_per_minute, window=60.0, remaining_header=None
                )
            )
        return self._list_client

    def close(self) -> None:
        for client in (self._client, self._list_client):
            if client is not None:
                client.close()
        self._client = self._list_client = None
        self._files.close()

    def check_connection(self) -> None:
        self.list_client.request_json("GET", "/carrier_accounts/", params={"results": 1})

    # -- rates ----------------------------------------------------------------------------------

    def quote_rates(self, *, request: RateRequest) -> list[Rate]:
        body = {
            "address_from": _address(request.ship_from),
            "address_to": _address(request.ship_to),
            "parcels": [_parcel(p) for p in request.parcels],
            "async": False,
            "metadata": request.reference[:METADATA_LIMIT],
        }
        try:
            # A shipment only records the quote; creating another one on a retry is harmless.
            shipment = self.client.request_json(
                "POST", "/shipments/", json_body=body, idempotent=True
            ).data
        except PermanentError as exc:
            if exc.status == 400:
                raise PermanentError(
                    f"{self.info.name}: Shippo refused the shipment: {_field_errors(exc.detail)}",
                    status=400,
                    detail=exc.detail,
                ) from None
            raise
        rates = [self._rate(r, shipment) for r in shipment.get("rates") or ()]
        if request.service_levels:
            rates = [r for r in rates if r.service_level in request.service_levels]
        if not rates and shipment.get("messages"):
            texts = "; ".join(str(m.get("text") or "") for m in shipment["messages"])
            raise PermanentError(f"{self.info.name}: no rates: {texts}")
        return sorted(rates, key=lambda r: (r.amount.amount, r.estimated_days or 99))

    def _rate(self, rate: Mapping[str, Any], shipment: Mapping[str, Any]) -> Rate:
        level = rate.get("servicelevel") or {}
        token = str(level.get("token") or "")
        days = rate.get("estimated_days")
        days = int(days) if days is not None else None
        override = self.service_levels.get(token)
        return Rate(
            rate_id=str(rate["object_id"]),
            carrier=str(rate.get("provider") or ""),
            service=str(level.get("name") or token),
            service_level=ServiceLevel(override) if override else service_level_for_days(days),
            amount=Money(str(rate["amount"]), str(rate["currency"])),
            estimated_days=days,
            service_code=token,
            shipment_ref=str(rate.get("shipment") or shipment.get("object_id") or ""),
            quoted_at=parse_time(rate.get("object_created") or shipment.get("object_created")),
        )

    # -- labels ---------------------------------------------------------------------------------

    def buy_label(self, *, rate: Rate, request: RateRequest, idempotency_key: str) -> Label:
        if not idempotency_key:
            raise PermanentError(f"{self.info.name}: buy_label needs an idempotency key")
        tag = short_key(METADATA_PREFIX, idempotency_key, METADATA_LIMIT)
        transaction = self._existing_purchase(idempotency_key, tag, rate)
        if transaction is None or transaction.get("status") == "ERROR":
            transaction = self.client.request_json(
                "POST",
                "/transactions/",
                json_body={
                    "rate": rate.rate_id,
                    "label_file_type": self.label_file_type,
                    "async": True,
                    "metadata": tag,
                },
            ).data
            remember(self.state, PURCHASES, idempotency_key, transaction["object_id"])
        transaction = self._until_done(transaction)
        status = transaction.get("status")
        if status == "ERROR":
            texts = "; ".join(
                str(m.get("text") or m.get("code") or "") for m in transaction.get("messages") or ()
            )
            raise PermanentError(f"{self.info.name}: label purchase failed: {texts or 'ERROR'}")
        if status in ("QUEUED", "WAITING"):
            # Not lost: the next attempt with this key finds and resumes this transaction.
            raise TransientError(
                f"{self.info.name}: label {transaction['object_id']} still queued after "
                f"{self.wait:.0f}s; retry with the same idempotency key"
            )
        label = self._label(transaction, key=idempotency_key, download=True)
        remember(self.state, CARRIERS, label.tracking_number, self._carrier_token(transaction))
        return label

    def _existing_purchase(self, key: str, tag: str, rate: Rate) -> dict[str, Any] | None:
        known = recall(self.state, PURCHASES, key)
        if known:
            try:
                return self._transaction(str(known))
            except NotFoundError:
                pass
        since = (rate.quoted_at - timedelta(minutes=5)) if rate.quoted_at else None
        found = self._find_by_metadata(tag, since or self.clock.now() - self.lookup)
        if found is not None:
            remember(self.state, PURCHASES, key, found["object_id"])
        return found

    def _find_by_metadata(self, tag: str, since: datetime) -> dict[str, Any] | None:
        """The best transaction carrying ``tag``: a usable one over a failed one."""
        params: dict[str, Any] | None = {
            "results": min(100, max(self.page_size, 25)),
            "object_created_gt": since.isoformat(),
        }
        url = "/transactions/"
        best: dict[str, Any] | None = None
        for _ in range(MAX_LOOKUP_PAGES):
            page = self.list_client.request_json("GET", url, params=params).data or {}
            for transaction in page.get("results") or ():
                if transaction.get("metadata") != tag:
                    continue
                if transaction.get("status") != "ERROR":
                    return self._transaction(str(transaction["object_id"]))
                best = best or transaction
            if not page.get("next"):
                return best
            url, params = str(page["next"]), None
        raise TransientError(
            f"{self.info.name}: too many transactions to scan for a replayed purchase"
        )

    def _transaction(self, transaction_id: str) -> dict[str, Any]:
        return self.client.request_json(
            "GET", f"/transactions/{transaction_id}", params={"expand": "rate"}
        ).data

    def _until_done(self, transaction: dict[str, Any]) -> dict[str, Any]:
        deadline = self.clock.monotonic() + self.wait
        while transaction.get("status") in ("QUEUED", "WAITING") or isinstance(
            transaction.get("rate"), str
        ):
            if transaction.get("status") in ("QUEUED", "WAITING"):
                if self.clock.monotonic() >= deadline:
                    return transaction
                self.clock.sleep(self.poll)
            transaction = self._transaction(str(transaction["object_id"]))
        return transaction

    @staticmethod
    def _carrier_token(transaction: Mapping[str, Any]) -> str:
        # Shippo's carrier tokens are its provider names in snake case ("DHL Express").
        rate = transaction.get("rate") or {}
        provider = str(rate.get("provider") or "") if isinstance(rate, Mapping) else ""
        return provider.strip().lower().replace(" ", "_")

    def _label(self, transaction: Mapping[str, Any], *, key: str, download: bool) -> Label:
        rate = transaction.get("rate")
        rate = rate if isinstance(rate, Mapping) else {}
        status = LABEL_STATUS.get(str(transaction.get("status")), LabelStatus.PENDING)
        file_type = str(transaction.get("label_file_type") or self.label_file_type)
        label_url = str(transaction.get("label_url") or "")
        document = b""
        if download and status is LabelStatus.PURCHASED and label_url:
            document = self._files.fetch(label_url)
        metadata = str(transaction.get("metadata") or "")
        if not key and metadata.startswith(METADATA_PREFIX):
            key = metadata[len(METADATA_PREFIX) :]
        return Label(
            label_id=str(transaction["object_id"]),
            tracking_number=str(transaction.get("tracking_number") or ""),
            carrier=str(rate.get("provider") or ""),
            service=str(rate.get("servicelevel_name") or rate.get("servicelevel_token") or ""),
            cost=Money(str(rate.get("amount") or "0"), str(rate.get("currency") or "USD")),
            created_at=parse_time(transaction.get("object_created")) or self.clock.now(),
            label_url=label_url,
            label_format="ZPL" if file_type.startswith("ZPL") else file_type.split("_")[0],
            idempotency_key=key,
            status=status,
            document=document,
            rate_id=str(rate.get("object_id") or ""),
            tracking_url=str(transaction.get("tracking_url_provider") or ""),
        )

    def get_label(self, *, label_id: str) -> Label:
        transaction = self._transaction(label_id)
        return self._label(transaction, key="", download=True)

    def list_labels(self, *, cursor: str | None) -> PullResult[Label]:
        if cursor:
            page = self.list_client.request_json("GET", cursor).data or {}
        else:
            page = (
                self.list_client.request_json(
                    "GET", "/transactions/", params={"results": self.page_size}
                ).data
                or {}
            )
        labels = tuple(
            self._label(t, key="", download=False)
            for t in page.get("results") or ()
            if t.get("status") != "ERROR"
        )
        next_page = page.get("next") or None
        return PullResult(items=labels, next_cursor=next_page, has_more=bool(next_page))

    def void_label(self, *, label_id: str) -> None:
        status = self._transaction(label_id).get("status")
        if status in ("REFUNDPENDING", "REFUNDED"):
            return
        if status == "REFUNDREJECTED":
            raise PermanentError(f"{self.info.name}: Shippo rejected the refund of {label_id}")
        try:
            # Shippo refuses a second refund of one transaction, so repeating is safe.
            refund = self.client.request_json(
                "POST",
                "/refunds/",
                json_body={"transaction": label_id, "async": False},
                idempotent=True,
            ).data
        except PermanentError as exc:
            if exc.status == 400 and self._transaction(label_id).get("status") in (
                "REFUNDPENDING",
                "REFUNDED",
            ):
                return  # an earlier attempt's refund got through
            raise
        if str(refund.get("status")) == "ERROR":
            raise PermanentError(f"{self.info.name}: Shippo refused to refund {label_id}")

    # -- tracking -------------------------------------------------------------------------------

    def track(self, *, tracking_number: str, carrier: str | None = None) -> list[TrackingEvent]:
        """Events so far. ``carrier`` (a Shippo carrier token such as ``usps``) defaults to
        the one the label was bought with, else the connection's ``default_carrier``."""
        token = carrier or recall(self.state, CARRIERS, tracking_number) or self.default_carrier
        track = self.client.request_json("GET", f"/tracks/{token}/{tracking_number}").data or {}
        return tracking_events(track)

    # -- webhooks -------------------------------------------------------------------------------

    def verify_webhook(self, *, headers: Mapping[str, str], body: bytes) -> None:
        if not self._webhook_secret:
            raise WebhookVerificationError(f"{self.info.name}: no webhook secret configured")
        value = header(headers, SIGNATURE_HEADER)
        if not value:
            raise WebhookVerificationError(f"{self.info.name}: {SIGNATURE_HEADER} missing")
        fields: dict[str, list[str]] = {}
        for part in value.split(","):
            name, _, item = part.strip().partition("=")
            fields.setdefault(name, []).append(item)
        try:
            timestamp = int(fields["t"][0])
        except (KeyError, ValueError):
            raise WebhookVerificationError(
                f"{self.info.name}: malformed {SIGNATURE_HEADER}"
            ) from None
        age = abs(self.clock.now().timestamp() - timestamp)
        if age > self.tolerance:
            raise WebhookVerificationError(
                f"{self.info.name}: signature timestamp outside the {self.tolerance:.0f}s window"
            )
        expected = hmac.new(
            self._webhook_secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        if not body or not any(hmac.compare_digest(expected, v) for v in fields.get("v1", [])):
            raise WebhookVerificationError(f"{self.info.name}: signature does not match")

    def parse_webhook(self, *, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        try:
            payload = json.loads(body)
        except ValueError:
            raise PermanentError(f"{self.info.name}: webhook body is not JSON") from None
        topic = str(payload.get("event") or "")
        data = payload.get("data") or {}
        if not topic or not isinstance(data, Mapping):
            raise PermanentError(f"{self.info.name}: webhook without event or data")
        if topic == "track_updated":
            status = data.get("tracking_status") or {}
            events = tracking_events(data)
            event_id = ":".join(
                (
                    topic,
                    str(data.get("carrier") or ""),
                    str(data.get("tracking_number") or ""),
                    str(status.get("object_id") or status.get("status_date") or ""),
                )
            )
            occurred = parse_time(status.get("status_date")) or self.clock.now()
        else:
            events = []
            event_id = f"{topic}:{data.get('object_id', '')}:{data.get('object_updated', '')}"
            occurred = parse_time(data.get("object_updated")) or self.clock.now()
        if event_id.endswith(":"):
            event_id += hashlib.sha256(body).hexdigest()[:16]
        return WebhookEvent(
            event_id=event_id,
            topic=topic,
            occurred_at=occurred,
            payload=payload,
            tracking=tuple(events),
        )
