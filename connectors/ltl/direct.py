"""Single-carrier LTL connector (``ltl_direct``): one carrier's own rating and pickup API.

Endpoints (relative to ``api_base_url``):

- ``GET /ping`` — "Test connection".
- ``POST /rate-quotes`` — the carrier's standard and guaranteed quotes. The carrier takes
  inches and pounds only (dimensions and per-piece weight are converted here) and rates by
  class only: a handling unit without ``freight_class`` is refused before any request.
  Accessorials use the carrier's codes (``LFTD``, ``RESD``, ``APPT``...).
- ``POST /bookings`` — book a quote and schedule the pickup. ``customerReference`` is the
  platform's idempotency key (the carrier answers a repeat with the existing booking), so
  the POST is retried safely; ``poNumber`` carries our reference. ``422 QUOTE_EXPIRED`` →
  :class:`~connectors.freight.QuoteExpiredError`.
- ``GET /shipments/status?bol=|pro=`` — status code and history.
- ``GET /images?bol=&type=POD`` — the POD as base64 once delivered (``images`` empty before).

Auth: ``X-Api-Key`` and ``X-Account-Number`` headers. Paced client-side by a sliding window;
the carrier's ``Retry-After`` (an HTTP date) is honoured by the SDK client.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from connectors.clock import Clock
from connectors.config import validate_connection
from connectors.errors import NotFoundError, PermanentError
from connectors.freight import (
    Accessorial,
    DimensionUnit,
    FreightBooking,
    FreightEvent,
    FreightQuote,
    FreightQuoteRequest,
    FreightStatus,
    FreightStatusCode,
    PodDocument,
    QuoteExpiredError,
    WeightUnit,
    cheapest_first,
)
from connectors.http import ApiClient, HttpContext
from connectors.ltl.common import parse_date, parse_time, require_own_quote, tracking_events
from connectors.ratelimit import SlidingWindowLimiter
from connectors.types import Address, ConnectorInfo, Money, TrackingEvent

ACCESSORIAL_CODES: Mapping[Accessorial, str] = {
    Accessorial.LIFTGATE_PICKUP: "LFTP",
    Accessorial.LIFTGATE_DELIVERY: "LFTD",
    Accessorial.RESIDENTIAL_PICKUP: "RESP",
    Accessorial.RESIDENTIAL_DELIVERY: "RESD",
    Accessorial.APPOINTMENT_DELIVERY: "APPT",
    Accessorial.INSIDE_DELIVERY: "INSD",
    Accessorial.LIMITED_ACCESS_DELIVERY: "LTDD",
}
_FROM_CODE = {code: accessorial for accessorial, code in ACCESSORIAL_CODES.items()}
_STATUS = {
    "BKD": FreightStatusCode.BOOKED,
    "PU": FreightStatusCode.PICKED_UP,
    "ITR": FreightStatusCode.IN_TRANSIT,
    "OFD": FreightStatusCode.OUT_FOR_DELIVERY,
    "DEL": FreightStatusCode.DELIVERED,
    "EXC": FreightStatusCode.EXCEPTION,
    "CAN": FreightStatusCode.CANCELLED,
}


def _status(value: Any) -> FreightStatusCode:
    try:
        return _STATUS[str(value)]
    except KeyError:
        raise PermanentError(f"ltl_direct: unknown status code {value!r}") from None


def _party(address: Address) -> dict[str, str]:
    return {
        "name": address.company or address.name,
        "contact": address.name,
        "address1": address.line1,
        "address2": address.line2,
        "city": address.city,
        "state": address.region,
        "zip": address.postal_code,
        "country": address.country,
        "phone": address.phone,
    }


class LtlDirectConnector:
    """One shipper account with one LTL carrier. See the module docstring."""

    def __init__(
        self,
        *,
        info: ConnectorInfo,
        settings: Mapping[str, Any],
        credentials: Mapping[str, str],
        http: HttpContext,
        clock: Clock,
    ) -> None:
        self.info = info
        config = validate_connection(info, settings, credentials)
        self.base_url: str = config["api_base_url"].rstrip("/")
        self.account_number = str(config["account_number"])
        self.carrier_name: str = config["carrier_name"]
        self.scac: str = config["scac"]
        self.include_guaranteed: bool = config["include_guaranteed"]
        self.per_minute: int = config["rate_limit_per_minute"]
        self._key = credentials["api_key"]
        self._http = http
        self.clock = clock
        self._client: ApiClient | None = None

    @property
    def client(self) -> ApiClient:
        if self._client is None:
            self._client = self._http.client(
                name=self.info.name,
                base_url=self.base_url,
                headers={
                    "X-Api-Key": self._key,
                    "X-Account-Number": self.account_number,
                    "Accept": "application/json",
                },
                secrets=[self._key],
                limiter=SlidingWindowLimiter(
                    limit=self.per_minute, window=60.0, remaining_header=None
                ),
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def check_connection(self) -> None:
        self.client.request_json("GET", "/ping")

    # -- quotes ---------------------------------------------------------------------------------

    def quote_freight(self, *, request: FreightQuoteRequest) -> list[FreightQuote]:
        unclassed = [i + 1 for i, u in enumerate(request.units) if u.freight_class is None]
        if unclassed:
            # The carrier rates by NMFC class only; asking would cost a request and a 422.
            raise PermanentError(
                f"{self.info.name}: {self.carrier_name} needs a freight class on every handling "
                f"unit (missing on unit {', '.join(map(str, unclassed))})"
            )
        items = []
        for unit in request.units:
            length, width, height = unit.dimensions_in(DimensionUnit.INCH)
            items.append(
                {
                    "pieces": unit.pieces,
                    "packaging": "PLT" if unit.packaging == "pallet" else unit.packaging.upper(),
                    "lengthIn": str(length),
                    "widthIn": str(width),
                    "heightIn": str(height),
                    "weightLb": str(unit.weight_in(WeightUnit.POUND)),
                    "class": unit.freight_class,
                    "stackable": unit.stackable,
                    "hazmat": unit.hazmat,
                    "description": unit.description,
                }
            )
        body = {
            "accountNumber": self.account_number,
            "pickupDate": request.pickup_date.isoformat(),
            "shipper": _party(request.origin),
            "consignee": _party(request.destination),
            "items": items,
            "accessorials": sorted(ACCESSORIAL_CODES[a] for a in request.accessorials),
        }
        # Rating creates nothing billable: safe to retry like a read.
        data = self.client.request_json(
            "POST", "/rate-quotes", json_body=body, idempotent=True
        ).data
        quotes = []
        for raw in (data or {}).get("quotes") or ():
            quote = self._quote(raw, data)
            if quote.guaranteed and not self.include_guaranteed:
                continue
            quotes.append(quote)
        return cheapest_first(quotes)

    def _quote(self, raw: Mapping[str, Any], envelope: Mapping[str, Any]) -> FreightQuote:
        try:
            currency = str(raw.get("currency") or "USD")
            level = str(raw.get("serviceLevel") or "STANDARD").upper()
            return FreightQuote(
                quote_id=str(raw["quoteNumber"]),
                source=self.info.name,
                carrier=str(envelope.get("carrier") or self.carrier_name),
                scac=str(envelope.get("scac") or self.scac),
                total=Money(Decimal(str(raw["totalCharges"])), currency),
                transit_days=int(raw["transitDays"]),
                expires_at=parse_time(raw["validUntil"], what="quote validity"),
                service=level.lower(),
                guaranteed=level == "GUARANTEED",
                pickup_date=parse_date(raw.get("pickupDate")),
                accessorials=frozenset(
                    _FROM_CODE[c] for c in raw.get("accessorials") or () if c in _FROM_CODE
                ),
                charges={
                    str(c["code"]): Money(Decimal(str(c["amount"])), currency)
                    for c in raw.get("charges") or ()
                },
            )
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise PermanentError(f"ltl_direct: unreadable quote ({type(exc).__name__})") from None

    # -- booking --------------------------------------------------------------------------------

    def book_freight(
        self, *, quote: FreightQuote, request: FreightQuoteRequest, idempotency_key: str
    ) -> FreightBooking:
        require_own_quote(self.info, quote)
        if not idempotency_key:
            raise PermanentError("ltl_direct: an idempotency key is required to book")
        body = {
            "accountNumber": self.account_number,
            "quoteNumber": quote.quote_id,
            "customerReference": idempotency_key,
            "poNumber": request.reference,
            "shipper": _party(request.origin),
            "consignee": _party(request.destination),
            "handlingUnits": request.total_pieces(),
            "totalWeightLb": str(request.total_weight_lb()),
        }
        try:
            # Deduped by customerReference on the carrier's side: retrying cannot double-book.
            data = self.client.request_json(
                "POST", "/bookings", json_body=body, idempotent=True
            ).data
        except PermanentError as exc:
            if exc.status == 422 and "QUOTE_EXPIRED" in exc.detail:
                raise QuoteExpiredError(
                    f"ltl_direct: quote {quote.quote_id} expired; quote again",
                    status=exc.status,
                    detail=exc.detail,
                ) from None
            raise
        try:
            pickup = data["pickup"]
            return FreightBooking(
                bol_number=str(data["bolNumber"]),
                pro_number=str(data.get("proNumber") or ""),
                carrier=str(data.get("carrier") or self.carrier_name),
                scac=str(data.get("scac") or self.scac),
                quote_id=str(data["quoteNumber"]),
                pickup_window_start=parse_time(pickup["readyTime"], what="pickup ready time"),
                pickup_window_end=parse_time(pickup["closeTime"], what="pickup close time"),
                idempotency_key=idempotency_key,
                reference=str(data.get("poNumber") or ""),
                confirmation_number=str(pickup.get("confirmationNumber") or ""),
                total=Money(Decimal(str(data["totalCharges"])), quote.total.currency)
                if data.get("totalCharges")
                else None,
            )
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise PermanentError(f"ltl_direct: unreadable booking ({type(exc).__name__})") from None

    # -- status and documents -------------------------------------------------------------------

    def freight_status(
        self, *, bol_number: str | None = None, pro_number: str | None = None
    ) -> FreightStatus:
        if bool(bol_number) == bool(pro_number):
            raise ValueError("give exactly one of bol_number and pro_number")
        params = {"bol": bol_number} if bol_number else {"pro": pro_number}
        data = self.client.request_json("GET", "/shipments/status", params=params).data
        try:
            events = tuple(
                FreightEvent(
                    code=_status(h["statusCode"]),
                    occurred_at=parse_time(h["timestamp"], what="status history"),
                    description=str(h.get("description") or ""),
                    location=str(h.get("location") or ""),
                )
                for h in data.get("history") or ()
            )
            delivered = [e.occurred_at for e in events if e.code == FreightStatusCode.DELIVERED]
            return FreightStatus(
                bol_number=str(data["bolNumber"]),
                pro_number=str(data.get("proNumber") or ""),
                status=_status(data["statusCode"]),
                events=events,
                estimated_delivery=parse_date(data.get("estimatedDeliveryDate")),
                delivered_at=delivered[-1] if delivered else None,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise PermanentError(f"ltl_direct: unreadable status ({type(exc).__name__})") from None

    def track(self, *, tracking_number: str) -> list[TrackingEvent]:
        try:
            status = self.freight_status(pro_number=tracking_number)
        except NotFoundError:
            status = self.freight_status(bol_number=tracking_number)
        return tracking_events(status, tracking_number)

    def fetch_pod(self, *, bol_number: str) -> PodDocument | None:
        data = self.client.request_json(
            "GET", "/images", params={"bol": bol_number, "type": "POD"}
        ).data
        for image in (data or {}).get("images") or ():
            if str(image.get("type")).upper() != "POD":
                continue
            try:
                content = base64.b64decode(image["data"], validate=True)
            except (KeyError, TypeError, binascii.Error):
                raise PermanentError("ltl_direct: POD image is not valid base64") from None
            fmt = str(image.get("format") or "PDF").lower()
            return PodDocument(
                bol_number=bol_number,
                content=content,
                format=fmt,
                content_type="application/pdf" if fmt == "pdf" else f"image/{fmt}",
                signed_by=str(image.get("signedBy") or ""),
            )
        return None
