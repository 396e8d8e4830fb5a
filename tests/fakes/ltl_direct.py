"""A fake single-carrier LTL API ("Keystone Freight", SCAC ``KYFR``, served under
``/api/v2``), shaped like carriers' own rating/pickup APIs: imperial units only, carrier
accessorial codes, camelCase, base64 document images.

Documented behaviour reproduced (every limit is a constructor argument):

- ``X-Api-Key`` header plus ``X-Account-Number`` (``401`` after :meth:`revoke_key`);
- sliding-window rate limit; past it ``429`` with ``Retry-After`` as an HTTP date;
- ``POST /api/v2/rate-quotes``: ``shipper``/``consignee`` ZIPs, ``pickupDate``, ``items``
  (``pieces``, ``lengthIn``/``widthIn``/``heightIn``, ``weightLb`` per piece, ``class`` —
  required, the carrier does not rate by density —, ``stackable``, ``hazmat``) and
  ``accessorials`` codes (``LFTP``/``LFTD`` liftgate, ``RESP``/``RESD`` residential,
  ``APPT``, ``INSD``, ``LTDD``). Answers a ``STANDARD`` and a ``GUARANTEED`` quote with
  ``quoteNumber``, ``totalCharges``, ``transitDays`` and ``validUntil``. Validation errors
  are ``422`` ``{"code": "VALIDATION", "errors": [...]}``: missing or unknown class, pieces
  over 96 in high (trailer door) or 48 ft long, shipments over 15,000 lb, weekend or past
  pickup dates; an unknown accessorial code is ``400``. Prices are deterministic, scaled by
  ``price_factor``;
- ``POST /api/v2/bookings`` (:meth:`FakeLtlDirect.lose_next_booking_response`: booked, but
  answered ``504``) with ``quoteNumber`` and ``customerReference`` (the dedupe key:
  a repeat answers the existing booking with ``200``, even past ``validUntil``; another quote
  under the same reference is ``409``); an expired quote is ``422`` ``QUOTE_EXPIRED``;
- ``GET /api/v2/shipments/status?bol=`` / ``?pro=``: status code (``BKD``, ``PU``, ``ITR``,
  ``OFD``, ``DEL``, ``EXC``) and history from the fake's clock;
- ``GET /api/v2/images?bol=&type=POD``: ``{"images": []}`` until delivered, then the POD
  as a base64 PDF.
"""

from __future__ import annotations

import base64
import email.utils
import itertools
import math
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.clock import Clock
from connectors.fakeapi import FakeAPI, FakeRequest, FakeResponse
from connectors.freight import NMFC_CLASSES
from tests.fakes import ltl_common as tariff

PREFIX = "/api/v2"
CARRIER = "Keystone Freight"
SCAC = "KYFR"

ACCESSORIAL_CODES = {
    "LFTP": "liftgate_pickup",
    "LFTD": "liftgate_delivery",
    "RESP": "residential_pickup",
    "RESD": "residential_delivery",
    "APPT": "appointment_delivery",
    "INSD": "inside_delivery",
    "LTDD": "limited_access_delivery",
}
STATUS_CODES = {
    "booked": "BKD",
    "picked_up": "PU",
    "in_transit": "ITR",
    "out_for_delivery": "OFD",
    "delivered": "DEL",
    "exception": "EXC",
}
MAX_HEIGHT_IN = Decimal(96)
MAX_LENGTH_IN = Decimal(576)
MAX_SHIPMENT_LB = Decimal(15000)


def throttled_at(now: datetime, retry_after: float) -> FakeResponse:
    """A 429 whose ``Retry-After`` is an HTTP date ``retry_after`` seconds (rounded up to the
    next whole second, the format's resolution) after ``now``."""
    when = now + timedelta(seconds=retry_after)
    if when.microsecond:
        when = when.replace(microsecond=0) + timedelta(seconds=1)
    return FakeResponse.json(
        {"code": "RATE_LIMITED", "message": "Request limit reached"},
        429,
        headers={"Retry-After": email.utils.format_datetime(when, usegmt=True)},
    )


def _error(status: int, code: str, message: str, errors: list[str] | None = None) -> FakeResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if errors is not None:
        body["errors"] = errors
    return FakeResponse.json(body, status)


class FakeLtlDirect(FakeAPI):
    def __init__(
        self,
        *,
        clock: Clock | None = None,
        api_key: str = "kyfr_api_key_9876543210",
        account_number: str = "770012",
        limit: int = 30,
        window: float = 60.0,
        quote_ttl: timedelta = timedelta(days=3),
        price_factor: Decimal = Decimal(1),
        transit_adjustment: int = 0,
    ) -> None:
        super().__init__(clock=clock)
        self.api_key = api_key
        self.account_number = account_number
        self.key_revoked = False
        self.throttle = tariff.SlidingWindow(limit, window)
        self.quote_ttl = quote_ttl
        self.price_factor = Decimal(price_factor)
        self.transit_adjustment = transit_adjustment
        self.quotes: dict[str, dict[str, Any]] = {}
        self.bookings: dict[str, dict[str, Any]] = {}  # by BOL
        self.by_reference: dict[str, str] = {}
        self.booking_attempts = 0
        self._lose_booking_responses = 0
        self._ids = itertools.count(1)

        self.route("GET", PREFIX + "/ping", self._ping)
        self.route("POST", PREFIX + "/rate-quotes", self._quote)
        self.route("POST", PREFIX + "/bookings", self._book)
        self.route("GET", PREFIX + "/shipments/status", self._status)
        self.route("GET", PREFIX + "/images", self._images)

    @property
    def base_url(self) -> str:
        return self.url + PREFIX

    # -- test controls --------------------------------------------------------------------------

    def revoke_key(self) -> None:
        self.key_revoked = True

    def throttle_response(self, retry_after: float) -> FakeResponse:
        return throttled_at(self.clock.now(), retry_after)

    def booked_count(self) -> int:
        return len(self.bookings)

    def lose_next_booking_response(self, times: int = 1) -> None:
        """The next ``times`` bookings are applied but answered ``504``."""
        with self.lock:
            self._lose_booking_responses += times

    def _maybe_lost(self, response: FakeResponse) -> FakeResponse:
        if self._lose_booking_responses > 0:
            self._lose_booking_responses -= 1
            return _error(504, "GATEWAY_TIMEOUT", "upstream timed out")
        return response

    # -- cross-cutting --------------------------------------------------------------------------

    def before_route(self, request: FakeRequest) -> FakeResponse | None:
        if (
            self.key_revoked
            or request.header("x-api-key") != self.api_key
            or request.header("x-account-number") != self.account_number
        ):
            return _error(401, "UNAUTHORIZED", "API key or account number not recognised")
        wait = self.throttle.admit(request.at)
        if wait is not None:
            return throttled_at(self.clock.now(), max(1, math.ceil(wait)))
        return None

    # -- handlers -------------------------------------------------------------------------------

    def _ping(self, request: FakeRequest) -> FakeResponse:
        return FakeResponse.json({"status": "ok", "accountNumber": self.account_number})

    def _quote(self, request: FakeRequest) -> FakeResponse:
        try:
            body = request.json()
            shipper, consignee = body["shipper"], body["consignee"]
            pickup = date.fromisoformat(body["pickupDate"])
            items = body["items"]
            codes = body.get("accessorials") or []
        except (ValueError, KeyError, TypeError):
            return _error(400, "BAD_REQUEST", "shipper, consignee, pickupDate, items required")
        unknown = [c for c in codes if c not in ACCESSORIAL_CODES]
        if unknown:
            return _error(400, "BAD_REQUEST", f"unknown accessorial codes {unknown}")
        errors: list[str] = []
        now = self.clock.now()
        if pickup < now.date() or not tariff.is_business_day(pickup):
            errors.append("pickupDate: must be a future business day")
        try:
            miles = tariff.lane_miles(shipper["zip"], consignee["zip"])
        except (ValueError, KeyError, TypeError):
            miles = 0
            errors.append("consignee.zip: lane not served")
        lines = []
        if not isinstance(items, list) or not items:
            errors.append("items: at least one item")
            items = []
        for index, item in enumerate(items):
            try:
                pieces = int(item["pieces"])
                measures = {
                    k: Decimal(str(item[k]))
                    for k in ("lengthIn", "widthIn", "heightIn", "weightLb")
                }
            except (KeyError, ValueError, TypeError, InvalidOperation):
                errors.append(f"items[{index}]: pieces, dimensions and weight required")
                continue
            freight_class = item.get("class")
            if freight_class is None:
                errors.append(f"items[{index}].class: required")
                continue
            if str(freight_class) not in NMFC_CLASSES:
                errors.append(f"items[{index}].class: not a valid NMFC class")
                continue
            if pieces < 1 or any(v <= 0 for v in measures.values()):
                errors.append(f"items[{index}]: pieces and measures must be positive")
                continue
            if measures["heightIn"] > MAX_HEIGHT_IN:
                errors.append(f"items[{index}].heightIn: over {MAX_HEIGHT_IN} in")
            if measures["lengthIn"] > MAX_LENGTH_IN:
                errors.append(f"items[{index}].lengthIn: over {MAX_LENGTH_IN} in")
            lines.append(
                tariff.Line(
                    pieces=pieces,
                    weight_lb=measures["weightLb"],
                    freight_class=str(freight_class),
                    stackable=bool(item.get("stackable", True)),
                    hazmat=bool(item.get("hazmat", False)),
                )
            )
        if sum((line.weight_lb * line.pieces for line in lines), Decimal(0)) > MAX_SHIPMENT_LB:
            errors.append("items: shipment over 15000 lb")
        if errors:
            return _error(422, "VALIDATION", "quote request is invalid", errors)
        accessorials = [ACCESSORIAL_CODES[c] for c in codes]
        valid_until = now + self.quote_ttl
        quotes = []
        for level, uplift in (("STANDARD", Decimal(1)), ("GUARANTEED", Decimal("1.4"))):
            total, charges = tariff.rate(
                miles=miles,
                lines=lines,
                accessorials=accessorials,
                factor=uplift * self.price_factor,
            )
            number = f"KQ{next(self._ids):07d}"
            quote = {
                "quoteNumber": number,
                "serviceLevel": level,
                "totalCharges": str(total),
                "currency": "USD",
                "transitDays": tariff.transit_days(miles, self.transit_adjustment),
                "validUntil": valid_until.isoformat(),
                "pickupDate": pickup.isoformat(),
                "accessorials": list(codes),
                "charges": [{"code": c, "amount": str(a)} for c, a in charges.items()],
            }
            self.quotes[number] = {**quote, "shipper": shipper, "consignee": consignee}
            quotes.append(quote)
        return FakeResponse.json({"carrier": CARRIER, "scac": SCAC, "quotes": quotes})

    def _book(self, request: FakeRequest) -> FakeResponse:
        try:
            body = request.json()
            number = body["quoteNumber"]
            reference = body["customerReference"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "BAD_REQUEST", "quoteNumber and customerReference required")
        self.booking_attempts += 1
        now = self.clock.now()
        existing = self.by_reference.get(reference)
        if existing is not None:
            booking = self.bookings[existing]
            if booking["quoteNumber"] != number:
                return _error(409, "DUPLICATE_REFERENCE", "reference used for another quote")
            return self._maybe_lost(FakeResponse.json(self._booking_json(booking), 200))
        quote = self.quotes.get(number)
        if quote is None:
            return _error(404, "QUOTE_NOT_FOUND", "unknown quote number")
        if now >= datetime.fromisoformat(quote["validUntil"]):
            return _error(422, "QUOTE_EXPIRED", "quote is no longer valid")
        start, end = tariff.pickup_window(date.fromisoformat(quote["pickupDate"]), now)
        n = next(self._ids)
        booking = {
            "bolNumber": f"{n:010d}",
            "proNumber": f"7{n:08d}",
            "quoteNumber": number,
            "customerReference": reference,
            "poNumber": body.get("poNumber", ""),
            "totalCharges": quote["totalCharges"],
            "pickup": {
                "confirmationNumber": f"PU{n:06d}",
                "readyTime": start.isoformat(),
                "closeTime": end.isoformat(),
            },
            "booked_at": now,
            "window_start": start,
            "transit_days": quote["transitDays"],
            "origin": str(quote["shipper"].get("zip", "")),
            "destination": str(quote["consignee"].get("zip", "")),
        }
        self.bookings[booking["bolNumber"]] = booking
        self.by_reference[reference] = booking["bolNumber"]
        return self._maybe_lost(FakeResponse.json(self._booking_json(booking), 201))

    @staticmethod
    def _booking_json(booking: dict[str, Any]) -> dict[str, Any]:
        keys = ("bolNumber", "proNumber", "quoteNumber", "customerReference", "poNumber")
        return {
            **{k: booking[k] for k in keys},
            "carrier": CARRIER,
            "scac": SCAC,
            "totalCharges": booking["totalCharges"],
            "pickup": booking["pickup"],
        }

    def _lookup(self, request: FakeRequest) -> dict[str, Any] | FakeResponse:
        bol, pro = request.arg("bol"), request.arg("pro")
        if not (bol or pro):
            return _error(400, "BAD_REQUEST", "bol or pro required")
        for booking in self.bookings.values():
            if (bol and booking["bolNumber"] == bol) or (pro and booking["proNumber"] == pro):
                return booking
        return _error(404, "SHIPMENT_NOT_FOUND", "no shipment with that number")

    def _milestones(self, booking: dict[str, Any]) -> list[tariff.Milestone]:
        now = self.clock.now()
        return [
            m
            for m in tariff.timeline(
                booked_at=booking["booked_at"],
                window_start=booking["window_start"],
                transit=booking["transit_days"],
                origin=booking["origin"],
                destination=booking["destination"],
            )
            if m.at <= now
        ]

    def _status(self, request: FakeRequest) -> FakeResponse:
        booking = self._lookup(request)
        if isinstance(booking, FakeResponse):
            return booking
        events = self._milestones(booking)
        return FakeResponse.json(
            {
                "bolNumber": booking["bolNumber"],
                "proNumber": booking["proNumber"],
                "statusCode": STATUS_CODES[events[-1].code],
                "estimatedDeliveryDate": tariff.estimated_delivery(
                    booking["window_start"], booking["transit_days"]
                ).isoformat(),
                "history": [
                    {
                        "statusCode": STATUS_CODES[m.code],
                        "description": m.description,
                        "timestamp": m.at.isoformat(),
                        "location": m.location,
                    }
                    for m in events
                ],
            }
        )

    def _images(self, request: FakeRequest) -> FakeResponse:
        if (request.arg("type") or "").upper() != "POD":
            return _error(400, "BAD_REQUEST", "type must be POD")
        booking = self._lookup(request)
        if isinstance(booking, FakeResponse):
            return booking
        delivered = [m for m in self._milestones(booking) if m.code == "delivered"]
        if not delivered:
            return FakeResponse.json({"images": []})
        pdf = tariff.pod_pdf(
            carrier=CARRIER,
            bol_number=booking["bolNumber"],
            pro_number=booking["proNumber"],
            delivered_at=delivered[0].at,
        )
        return FakeResponse.json(
            {
                "images": [
                    {
                        "type": "POD",
                        "format": "PDF",
                        "signedBy": "J. Receiver",
                        "data": base64.b64encode(pdf).decode(),
                    }
                ]
            }
        )
