"""LTL freight broker connector (``ltl_broker``): one API, offers from several carriers.

Endpoints (relative to ``api_base_url``):

- ``GET /account`` — "Test connection".
- ``POST /quotes`` — rate the freight on every carrier the broker works with. Handling units
  are sent in the units they were given (``dimension_unit`` in/cm, ``weight_unit`` lb/kg,
  weight per piece); a unit without ``freight_class`` is classed by density by the broker.
  Quoting creates nothing billable, so the POST is retried like a read.
- ``POST /shipments`` — book an offer. ``client_reference`` is the platform's idempotency
  key: the broker answers a repeated reference with the shipment it already booked (even
  after the offer expired), so the POST is safe to retry after a 5xx or a timeout.
  ``shipper_reference`` (our PO / shipment reference) is printed on the BOL. An expired
  offer is ``410`` → :class:`~connectors.freight.QuoteExpiredError`.
- ``GET /tracking?bol_number=|pro_number=`` — status and milestones.
- ``GET /shipments/{bol}/documents`` then the document's URL (same origin) — the POD PDF.

Bearer-token auth; requests are paced client-side by a sliding window
(``rate_limit_per_minute``) that reads ``x-ratelimit-remaining``; ``Retry-After`` on 429 is
honoured by the SDK client.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote as urlquote

from connectors.clock import Clock
from connectors.config import validate_connection
from connectors.errors import NotFoundError, PermanentError
from connectors.freight import (
    Accessorial,
    FreightBooking,
    FreightEvent,
    FreightQuote,
    FreightQuoteRequest,
    FreightStatus,
    FreightStatusCode,
    PodDocument,
    QuoteExpiredError,
    cheapest_first,
)
from connectors.http import ApiClient, HttpContext
from connectors.ltl.common import (
    address_json,
    parse_date,
    parse_time,
    require_own_quote,
    tracking_events,
)
from connectors.ratelimit import SlidingWindowLimiter
from connectors.types import ConnectorInfo, Money, TrackingEvent

_STATUS = {
    "booked": FreightStatusCode.BOOKED,
    "picked_up": FreightStatusCode.PICKED_UP,
    "in_transit": FreightStatusCode.IN_TRANSIT,
    "out_for_delivery": FreightStatusCode.OUT_FOR_DELIVERY,
    "delivered": FreightStatusCode.DELIVERED,
    "exception": FreightStatusCode.EXCEPTION,
    "cancelled": FreightStatusCode.CANCELLED,
}


_ACCESSORIALS = frozenset(a.value for a in Accessorial)


def _status(value: Any) -> FreightStatusCode:
    try:
        return _STATUS[str(value)]
    except KeyError:
        raise PermanentError(f"ltl_broker: unknown shipment status {value!r}") from None


class LtlBrokerConnector:
    """One broker account. See the module docstring."""

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
        self.carriers = frozenset(config["carriers"])
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
                headers={"Authorization": f"Bearer {self._key}", "Accept": "application/json"},
                secrets=[self._key],
                limiter=SlidingWindowLimiter(
                    limit=self.per_minute, window=60.0, remaining_header="x-ratelimit-remaining"
                ),
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def check_connection(self) -> None:
        self.client.request_json("GET", "/account")

    # -- quotes ---------------------------------------------------------------------------------

    def quote_freight(self, *, request: FreightQuoteRequest) -> list[FreightQuote]:
        body = {
            "origin": address_json(request.origin),
            "destination": address_json(request.destination),
            "pickup_date": request.pickup_date.isoformat(),
            "handling_units": [
                {
                    "type": unit.packaging,
                    "quantity": unit.pieces,
                    "length": str(unit.length),
                    "width": str(unit.width),
                    "height": str(unit.height),
                    "dimension_unit": unit.dimension_unit.value,
                    "weight": str(unit.weight),
                    "weight_unit": unit.weight_unit.value,
                    "freight_class": unit.freight_class,
                    "stackable": unit.stackable,
                    "hazmat": unit.hazmat,
                    "description": unit.description,
                }
                for unit in request.units
            ],
            "accessorials": sorted(a.value for a in request.accessorials),
            "reference": request.reference,
        }
        answer = self.client.request_json("POST", "/quotes", json_body=body, idempotent=True).data
        quotes = []
        for offer in (answer or {}).get("offers") or ():
            quote = self._quote(offer)
            if self.carriers and quote.scac not in self.carriers:
                continue
            if quote.guaranteed and not self.include_guaranteed:
                continue
            quotes.append(quote)
        return cheapest_first(quotes)

    def _quote(self, offer: Mapping[str, Any]) -> FreightQuote:
        try:
            total = offer["total"]
            currency = total["currency"]
            return FreightQuote(
                quote_id=str(offer["offer_id"]),
                source=self.info.name,
                carrier=str(offer["carrier"]["name"]),
                scac=str(offer["carrier"]["scac"]),
                total=Money(Decimal(str(total["amount"])), currency),
                transit_days=int(offer["transit_days"]),
                expires_at=parse_time(offer["expires_at"], what="offer expiry"),
                service=str(offer.get("service") or "standard"),
                guaranteed=bool(offer.get("guaranteed")),
                pickup_date=parse_date(offer.get("pickup_date")),
                # Services we have no canonical name for are still in the price; not listed.
                accessorials=frozenset(
                    Accessorial(a) for a in offer.get("accessorials") or () if a in _ACCESSORIALS
                ),
                charges={
                    str(c["code"]): Money(Decimal(str(c["amount"])), currency)
                    for c in offer.get("charges") or ()
                },
            )
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise PermanentError(f"ltl_broker: unreadable offer ({type(exc).__name__})") from None

    # -- booking --------------------------------------------------------------------------------

    def book_freight(
        self, *, quote: FreightQuote, request: FreightQuoteRequest, idempotency_key: str
    ) -> FreightBooking:
        require_own_quote(self.info, quote)
        if not idempotency_key:
            raise PermanentError("ltl_broker: an idempotency key is required to book")
        body = {
            "offer_id": quote.quote_id,
            "client_reference": idempotency_key,
            "shipper_reference": request.reference,
            "shipper": address_json(request.origin),
            "consignee": address_json(request.destination),
            "handling_units": [
                {"quantity": unit.pieces, "description": unit.description, "hazmat": unit.hazmat}
                for unit in request.units
            ],
        }
        try:
            # The broker dedupes on client_reference: repeating the POST returns the first
            # booking, so retrying after a 5xx or a lost answer cannot book twice.
            data = self.client.request_json(
                "POST", "/shipments", json_body=body, idempotent=True
            ).data
        except PermanentError as exc:
            if exc.status == 410:
                raise QuoteExpiredError(
                    f"ltl_broker: offer {quote.quote_id} expired; quote again",
                    status=exc.status,
                    detail=exc.detail,
                ) from None
            raise
        return self._booking(data, idempotency_key)

    def _booking(self, data: Mapping[str, Any], idempotency_key: str) -> FreightBooking:
        try:
            window = data["pickup_window"]
            total = data.get("total")
            return FreightBooking(
                bol_number=str(data["bol_number"]),
                pro_number=str(data.get("pro_number") or ""),
                carrier=str(data["carrier"]["name"]),
                scac=str(data["carrier"]["scac"]),
                quote_id=str(data["offer_id"]),
                pickup_window_start=parse_time(window["start"], what="pickup window"),
                pickup_window_end=parse_time(window["end"], what="pickup window"),
                idempotency_key=idempotency_key,
                reference=str(data.get("shipper_reference") or ""),
                confirmation_number=str(data.get("shipment_id") or ""),
                total=Money(Decimal(str(total["amount"])), total["currency"]) if total else None,
            )
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise PermanentError(f"ltl_broker: unreadable booking ({type(exc).__name__})") from None

    # -- status and documents -------------------------------------------------------------------

    def freight_status(
        self, *, bol_number: str | None = None, pro_number: str | None = None
    ) -> FreightStatus:
        if bool(bol_number) == bool(pro_number):
            raise ValueError("give exactly one of bol_number and pro_number")
        params = {"bol_number": bol_number} if bol_number else {"pro_number": pro_number}
        data = self.client.request_json("GET", "/tracking", params=params).data
        try:
            events = tuple(
                FreightEvent(
                    code=_status(e["status"]),
                    occurred_at=parse_time(e["occurred_at"], what="tracking event"),
                    description=str(e.get("description") or ""),
                    location=str(e.get("location") or ""),
                )
                for e in data.get("events") or ()
            )
            status = _status(data["status"])
            delivered = [e.occurred_at for e in events if e.code == FreightStatusCode.DELIVERED]
            return FreightStatus(
                bol_number=str(data["bol_number"]),
                pro_number=str(data.get("pro_number") or ""),
                status=status,
                events=events,
                estimated_delivery=parse_date(data.get("estimated_delivery_date")),
                delivered_at=delivered[-1] if delivered else None,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise PermanentError(
                f"ltl_broker: unreadable tracking ({type(exc).__name__})"
            ) from None

    def track(self, *, tracking_number: str) -> list[TrackingEvent]:
        # Shippers quote either number; the PRO is what carriers print on freight labels.
        try:
            status = self.freight_status(pro_number=tracking_number)
        except NotFoundError:
            status = self.freight_status(bol_number=tracking_number)
        return tracking_events(status, tracking_number)

    def fetch_pod(self, *, bol_number: str) -> PodDocument | None:
        listing = self.client.request_json(
            "GET", f"/shipments/{urlquote(bol_number, safe='')}/documents"
        ).data
        for document in (listing or {}).get("documents") or ():
            if document.get("type") != "proof_of_delivery":
                continue
            # The URL is absolute; the client refuses it unless it is on the broker's origin.
            response = self.client.request("GET", str(document["url"]))
            return PodDocument(
                bol_number=bol_number,
                content=response.content,
                format=str(document.get("format") or "pdf"),
                content_type=response.headers.get("content-type", "application/pdf"),
                signed_by=str(document.get("signed_by") or ""),
            )
        return None
