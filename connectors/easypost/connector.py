"""EasyPost (https://api.easypost.com/v2) as a Keel carrier.

Endpoints:

- ``POST /v2/shipments`` with ``to_address``/``from_address``/``parcel`` (inches, ounces)
  and ``reference`` answers the shipment with its rates. EasyPost verifies addresses: a
  422 ``ADDRESS.VERIFY.FAILURE`` lists the failing fields and is raised as
  :class:`~connectors.errors.PermanentError` naming them, never retried. Creating a
  shipment buys nothing, so the POST is retried after a 5xx like a read. One EasyPost
  shipment carries one parcel: a multi-parcel request is refused up front.
- ``POST /v2/shipments/{id}/buy`` with ``{"rate": {"id"}}`` buys the label synchronously.
- ``POST /v2/shipments/{id}/refund`` voids it; ``refund_status`` goes ``submitted`` →
  ``refunded``/``rejected``.
- ``GET /v2/shipments?purchased=true`` (``before_id`` pagination, a throttled list endpoint:
  ``Retry-After`` honoured) lists labels.
- ``POST /v2/trackers`` returns the tracker for a code (creating it if needed);
  ``tracker.updated`` Events arrive as webhooks.

**Idempotent purchases.** EasyPost buys a shipment at most once (a second buy is 422
``SHIPMENT.POSTAGE.EXISTS``), and the rate names its shipment (``Rate.shipment_ref``). So a
purchase reads the shipment first and returns the label it already has; the buy POST is
safe to repeat (the client retries it after a 5xx or a dropped answer), and a 422 is
resolved by reading the shipment again. A worker that died between EasyPost's answer and our
commit therefore gets the same label back on its retry, from EasyPost itself. The key is
also remembered (key → shipment) in the connection state, so a retry that re-quoted still
finds the first purchase while that state survives.

Auth is HTTP Basic with the API key as user name; webhooks carry
``X-Hmac-Signature: hmac-sha256-hex=<hex HMAC-SHA256 of the raw body>`` keyed with the
NFKD-normalised webhook secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import unicodedata
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from connectors.carriers import (
    LabelFiles,
    header,
    parse_time,
    recall,
    remember,
    service_level_for_days,
)
from connectors.clock import Clock
from connectors.config import validate_connection
from connectors.errors import NotFoundError, PermanentError, WebhookVerificationError
from connectors.http import ApiClient, HttpContext
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

SIGNATURE_HEADER = "X-Hmac-Signature"
SIGNATURE_PREFIX = "hmac-sha256-hex="
PURCHASES = "easypost.purchases"
MM_PER_INCH = Decimal("25.4")
GRAMS_PER_OUNCE = Decimal("28.349523125")

REFUND_STATUS = {
    None: LabelStatus.PURCHASED,
    "": LabelStatus.PURCHASED,
    "submitted": LabelStatus.VOID_PENDING,
    "refunded": LabelStatus.VOIDED,
    "rejected": LabelStatus.VOID_REJECTED,
}

TRACKING_STATUS = {
    "unknown": TrackingStatus.PRE_TRANSIT,
    "pre_transit": TrackingStatus.PRE_TRANSIT,
    "in_transit": TrackingStatus.IN_TRANSIT,
    "out_for_delivery": TrackingStatus.OUT_FOR_DELIVERY,
    "available_for_pickup": TrackingStatus.OUT_FOR_DELIVERY,
    "delivered": TrackingStatus.DELIVERED,
    "return_to_sender": TrackingStatus.RETURNED,
    "failure": TrackingStatus.EXCEPTION,
    "cancelled": TrackingStatus.EXCEPTION,
    "error": TrackingStatus.EXCEPTION,
}

#: EasyPost ``status_detail`` → the canonical trouble it means.
DETAIL_EXCEPTION = {
    "address_correction": TrackingException.ADDRESS_ISSUE,
    "address_not_found": TrackingException.ADDRESS_ISSUE,
    "incorrect_address": TrackingException.ADDRESS_ISSUE,
    "damaged": TrackingException.DAMAGED,
    "return": TrackingException.RETURN_TO_SENDER,
    "return_to_sender": TrackingException.RETURN_TO_SENDER,
    "lost": TrackingException.LOST,
    "delayed": TrackingException.DELAYED,
    "weather_delay": TrackingException.DELAYED,
    "held": TrackingException.HELD,
    "customs_hold": TrackingException.HELD,
    "refused": TrackingException.DELIVERY_FAILED,
    "delivery_exception": TrackingException.DELIVERY_FAILED,
    "undeliverable": TrackingException.DELIVERY_FAILED,
    "transit_exception": TrackingException.OTHER,
    "missorted": TrackingException.OTHER,
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


def _tenth(value: Decimal) -> float:
    # EasyPost takes inches and ounces as numbers; a tenth is finer than any carrier bills.
    return float(max(value, Decimal("0.1")).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def _parcel(parcel: Parcel) -> dict[str, float]:
    out = {"weight": _tenth(Decimal(parcel.weight_g) / GRAMS_PER_OUNCE)}
    if parcel.length_mm and parcel.width_mm and parcel.height_mm:
        out.update(
            length=_tenth(Decimal(parcel.length_mm) / MM_PER_INCH),
            width=_tenth(Decimal(parcel.width_mm) / MM_PER_INCH),
            height=_tenth(Decimal(parcel.height_mm) / MM_PER_INCH),
        )
    return out


def _error_text(detail: str) -> tuple[str, str]:
    """EasyPost's error body as (code, "message: field: why; …")."""
    try:
        body = json.loads(detail).get("error") or {}
    except (ValueError, AttributeError):
        return "", detail
    fields = "; ".join(
        f"{e.get('field')}: {e.get('message')}" for e in body.get("errors") or () if e
    )
    message = str(body.get("message") or "")
    return str(body.get("code") or ""), f"{message} ({fields})" if fields else message


def tracking_events(tracker: Mapping[str, Any]) -> list[TrackingEvent]:
    """An EasyPost Tracker's details as canonical events, oldest first."""
    number = str(tracker.get("tracking_code") or "")
    carrier = str(tracker.get("carrier") or "")
    events = []
    for detail in tracker.get("tracking_details") or ():
        occurred = parse_time(detail.get("datetime"))
        if occurred is None:
            continue
        raw = str(detail.get("status") or "unknown")
        code = str(detail.get("status_detail") or "")
        status = TRACKING_STATUS.get(raw, TrackingStatus.IN_TRANSIT)
        exception = DETAIL_EXCEPTION.get(code)
        if exception is not None and status not in (
            TrackingStatus.DELIVERED,
            TrackingStatus.RETURNED,
        ):
            status = TrackingStatus.EXCEPTION
        if status is TrackingStatus.EXCEPTION and exception is None:
            exception = TrackingException.OTHER
        if status is TrackingStatus.RETURNED and exception is None:
            exception = TrackingException.RETURN_TO_SENDER
        where = detail.get("tracking_location") or {}
        events.append(
            TrackingEvent(
                tracking_number=number,
                status=status,
                occurred_at=occurred,
                description=str(detail.get("message") or detail.get("description") or ""),
                location=", ".join(
                    str(where[k]) for k in ("city", "state", "country") if where.get(k)
                ),
                exception=exception,
                carrier_status=f"{raw}/{code}" if code else raw,
                carrier=carrier,
            )
        )
    events.sort(key=lambda e: e.occurred_at)
    return events


class EasyPostConnector:
    """One EasyPost account. See the module docstring."""

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
        self.label_format: str = config["label_format"]
        self.carrier_accounts: list[str] = list(config["carrier_accounts"])
        self.page_size: int = config["page_size"]
        self.service_levels: Mapping[str, str] = config["service_levels"]
        self._key: str = credentials["api_key"]
        self._webhook_secret: str = credentials.get("webhook_secret") or ""
        self._http = http
        self.state = state
        self.clock = clock
        self._client: ApiClient | None = None
        self._files = LabelFiles(http=http, name=info.name)

    @property
    def client(self) -> ApiClient:
        if self._client is None:
            basic = base64.b64encode(f"{self._key}:".encode()).decode()
            self._client = self._http.client(
                name=self.info.name,
                base_url=self.base_url,
                headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
                secrets=[self._key, basic, self._webhook_secret],
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self._files.close()

    def check_connection(self) -> None:
        self.client.request_json("GET", "/v2/addresses", params={"page_size": 1})

    def _refused(self, exc: PermanentError, what: str) -> PermanentError:
        code, text = _error_text(exc.detail)
        return PermanentError(
            f"{self.info.name}: EasyPost refused {what}: {code} {text}".rstrip(),
            status=exc.status,
            detail=exc.detail,
        )

    # -- rates ----------------------------------------------------------------------------------

    def quote_rates(self, *, request: RateRequest) -> list[Rate]:
        if len(request.parcels) != 1:
            raise PermanentError(
                f"{self.info.name}: an EasyPost shipment carries one parcel "
                f"({len(request.parcels)} given); quote each parcel separately"
            )
        shipment: dict[str, Any] = {
            "to_address": _address(request.ship_to),
            "from_address": _address(request.ship_from),
            "parcel": _parcel(request.parcels[0]),
            "options": {"label_format": self.label_format},
        }
        if request.reference:
            shipment["reference"] = request.reference
        if self.carrier_accounts:
            shipment["carrier_accounts"] = self.carrier_accounts
        try:
            # A shipment only records the quote; creating another one on a retry is harmless.
            created = self.client.request_json(
                "POST", "/v2/shipments", json_body={"shipment": shipment}, idempotent=True
            ).data
        except PermanentError as exc:
            if exc.status in (400, 422):
                raise self._refused(exc, "the shipment") from None
            raise
        rates = [self._rate(r, created) for r in created.get("rates") or ()]
        if request.service_levels:
            rates = [r for r in rates if r.service_level in request.service_levels]
        if not rates and created.get("messages"):
            texts = "; ".join(str(m.get("message") or "") for m in created["messages"])
            raise PermanentError(f"{self.info.name}: no rates: {texts}")
        return sorted(rates, key=lambda r: (r.amount.amount, r.estimated_days or 99))

    def _rate(self, rate: Mapping[str, Any], shipment: Mapping[str, Any]) -> Rate:
        carrier = str(rate.get("carrier") or "")
        service = str(rate.get("service") or "")
        days = rate.get("delivery_days") or rate.get("est_delivery_days")
        days = int(days) if days is not None else None
        override = self.service_levels.get(f"{carrier}:{service}")
        return Rate(
            rate_id=str(rate["id"]),
            carrier=carrier,
            service=service,
            service_level=ServiceLevel(override) if override else service_level_for_days(days),
            amount=Money(str(rate["rate"]), str(rate.get("currency") or "USD")),
            estimated_days=days,
            service_code=service,
            shipment_ref=str(rate.get("shipment_id") or shipment.get("id") or ""),
            quoted_at=parse_time(rate.get("created_at") or shipment.get("created_at")),
        )

    # -- labels ---------------------------------------------------------------------------------

    def buy_label(self, *, rate: Rate, request: RateRequest, idempotency_key: str) -> Label:
        if not idempotency_key:
            raise PermanentError(f"{self.info.name}: buy_label needs an idempotency key")
        earlier = recall(self.state, PURCHASES, idempotency_key)
        if earlier and earlier != rate.shipment_ref:
            # This key already bought on another quote: that purchase is the answer.
            shipment = self._shipment(str(earlier))
            if shipment.get("postage_label"):
                return self._label(shipment, key=idempotency_key, download=True)
        if not rate.shipment_ref:
            raise PermanentError(f"{self.info.name}: the rate names no shipment; quote again")
        shipment = self._shipment(rate.shipment_ref)
        if not shipment.get("postage_label"):
            remember(self.state, PURCHASES, idempotency_key, rate.shipment_ref)
            try:
                # EasyPost buys a shipment once, so repeating this POST cannot buy twice.
                shipment = self.client.request_json(
                    "POST",
                    f"/v2/shipments/{rate.shipment_ref}/buy",
                    json_body={"rate": {"id": rate.rate_id}},
                    idempotent=True,
                ).data
            except PermanentError as exc:
                if exc.status != 422:
                    raise self._refused(exc, "the purchase") from None
                shipment = self._shipment(rate.shipment_ref)
                if not shipment.get("postage_label"):
                    raise self._refused(exc, "the purchase") from None
        selected = (shipment.get("selected_rate") or {}).get("id")
        if selected != rate.rate_id:
            raise PermanentError(
                f"{self.info.name}: shipment {rate.shipment_ref} was already bought with "
                "another rate; quote again"
            )
        return self._label(shipment, key=idempotency_key, download=True)

    def _shipment(self, shipment_id: str) -> dict[str, Any]:
        return self.client.request_json("GET", f"/v2/shipments/{shipment_id}").data

    def _label(self, shipment: Mapping[str, Any], *, key: str, download: bool) -> Label:
        postage = shipment.get("postage_label") or {}
        rate = shipment.get("selected_rate") or {}
        tracker = shipment.get("tracker") or {}
        status = REFUND_STATUS.get(shipment.get("refund_status"), LabelStatus.PURCHASED)
        if self.label_format == "ZPL":
            url = postage.get("label_zpl_url") or postage.get("label_url")
        elif self.label_format == "PDF":
            url = postage.get("label_pdf_url") or postage.get("label_url")
        else:
            url = postage.get("label_url")
        url = str(url or "")
        file_type = str(postage.get("label_file_type") or "")
        label_format = {"application/pdf": "PDF", "application/zpl": "ZPL"}.get(
            file_type, self.label_format
        )
        document = b""
        if download and status is LabelStatus.PURCHASED and url:
            document = self._files.fetch(url)
        return Label(
            label_id=str(shipment["id"]),
            tracking_number=str(shipment.get("tracking_code") or ""),
            carrier=str(rate.get("carrier") or ""),
            service=str(rate.get("service") or ""),
            cost=Money(str(rate.get("rate") or "0"), str(rate.get("currency") or "USD")),
            created_at=parse_time(postage.get("label_date") or shipment.get("updated_at"))
            or self.clock.now(),
            label_url=url,
            label_format=label_format,
            idempotency_key=key,
            status=status,
            document=document,
            rate_id=str(rate.get("id") or ""),
            shipment_ref=str(shipment["id"]),
            tracking_url=str(tracker.get("public_url") or ""),
        )

    def get_label(self, *, label_id: str) -> Label:
        shipment = self._shipment(label_id)
        if not shipment.get("postage_label"):
            raise NotFoundError(f"{self.info.name}: shipment {label_id} has no label")
        return self._label(shipment, key="", download=True)

    def list_labels(self, *, cursor: str | None) -> PullResult[Label]:
        params: dict[str, Any] = {"page_size": self.page_size, "purchased": "true"}
        if cursor:
            params["before_id"] = cursor
        page = self.client.request_json("GET", "/v2/shipments", params=params).data or {}
        shipments = [s for s in page.get("shipments") or () if s.get("postage_label")]
        labels = tuple(self._label(s, key="", download=False) for s in shipments)
        raw = page.get("shipments") or ()
        has_more = bool(page.get("has_more")) and bool(raw)
        return PullResult(
            items=labels, next_cursor=str(raw[-1]["id"]) if has_more else None, has_more=has_more
        )

    def void_label(self, *, label_id: str) -> None:
        refund = self._shipment(label_id).get("refund_status")
        if refund in ("submitted", "refunded"):
            return
        if refund == "rejected":
            raise PermanentError(f"{self.info.name}: EasyPost rejected the refund of {label_id}")
        try:
            # EasyPost refuses a second refund request, so repeating is safe.
            self.client.request_json(
                "POST", f"/v2/shipments/{label_id}/refund", json_body={}, idempotent=True
            )
        except PermanentError as exc:
            if exc.status == 422 and self._shipment(label_id).get("refund_status") in (
                "submitted",
                "refunded",
            ):
                return  # an earlier attempt's request got through
            raise self._refused(exc, "the refund") from None

    # -- tracking -------------------------------------------------------------------------------

    def track(self, *, tracking_number: str, carrier: str | None = None) -> list[TrackingEvent]:
        """Events so far. EasyPost answers with the existing tracker for the code (or makes
        one), so this is one request whether or not the label was bought here."""
        body: dict[str, Any] = {"tracking_code": tracking_number}
        if carrier:
            body["carrier"] = carrier
        tracker = self.client.request_json(
            "POST", "/v2/trackers", json_body={"tracker": body}, idempotent=True
        ).data
        return tracking_events(tracker or {})

    # -- webhooks -------------------------------------------------------------------------------

    def verify_webhook(self, *, headers: Mapping[str, str], body: bytes) -> None:
        if not self._webhook_secret:
            raise WebhookVerificationError(f"{self.info.name}: no webhook secret configured")
        value = header(headers, SIGNATURE_HEADER) or ""
        if not value.startswith(SIGNATURE_PREFIX):
            raise WebhookVerificationError(f"{self.info.name}: {SIGNATURE_HEADER} missing")
        key = unicodedata.normalize("NFKD", self._webhook_secret).encode("utf-8")
        expected = SIGNATURE_PREFIX + hmac.new(key, body, hashlib.sha256).hexdigest()
        if not body or not hmac.compare_digest(expected.encode(), value.strip().encode()):
            raise WebhookVerificationError(f"{self.info.name}: signature does not match")

    def parse_webhook(self, *, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        try:
            event = json.loads(body)
        except ValueError:
            raise PermanentError(f"{self.info.name}: webhook body is not JSON") from None
        if not isinstance(event, Mapping) or event.get("object") != "Event" or not event.get("id"):
            raise PermanentError(f"{self.info.name}: webhook body is not an EasyPost Event")
        result = event.get("result") or {}
        tracking = (
            tracking_events(result)
            if isinstance(result, Mapping) and result.get("object") == "Tracker"
            else []
        )
        occurred = (
            parse_time(event.get("updated_at") or event.get("created_at")) or self.clock.now()
        )
        return WebhookEvent(
            event_id=str(event["id"]),
            topic=str(event.get("description") or ""),
            occurred_at=occurred,
            payload=event,
            tracking=tuple(tracking),
        )
