"""A fake LTL freight broker API ("FreightHub", served under ``/v1``): one account, offers
from several carriers, modelled on broker/TMS APIs such as ShipStation Freight and uShip LTL.

Documented behaviour reproduced (every limit is a constructor argument):

- bearer-token auth (``401`` after :meth:`FakeLtlBroker.revoke_token`);
- sliding-window rate limit, ``limit`` requests per ``window`` seconds; answers carry
  ``x-ratelimit-remaining``; past the limit ``429`` with ``Retry-After`` (seconds) and
  ``{"error": {"code": "rate_limited", ...}}``;
- ``POST /v1/quotes``: origin/destination ZIPs, ``pickup_date``, ``handling_units`` (each with
  its own ``dimension_unit`` in/cm and ``weight_unit`` lb/kg, per-piece weight, optional
  ``freight_class`` — derived from density when absent), ``accessorials``. Answers one offer
  per carrier (plus a guaranteed service from the first carrier), each with ``offer_id``,
  ``carrier {name, scac}``, ``total``, ``charges``, ``transit_days`` and ``expires_at``
  (``quote_ttl`` after quoting). Invalid freight → ``422`` with field errors (unknown class,
  non-positive or oversized dimensions, weight over the LTL limit, weekend or past pickup
  date, unknown accessorial, unserved lane); a body that is not JSON or misses sections →
  ``400``. Prices are deterministic (:mod:`tests.fakes.ltl_common`), scaled by
  ``price_factor``;
- ``POST /v1/shipments`` books an offer. Deduplicated by ``client_reference``: the same
  reference answers the existing shipment (``200``) even after the offer expired; the same
  reference for another offer is ``409``; an unknown offer ``404``; an expired one ``410``
  with ``{"error": {"code": "offer_expired"}}``. New bookings answer ``201`` with
  ``bol_number``, ``pro_number`` and the confirmed ``pickup_window``;
- ``GET /v1/tracking?bol_number=`` or ``?pro_number=``: status and events so far, computed
  from the fake's clock (booked → picked up → in transit → out for delivery → delivered);
- ``GET /v1/shipments/{bol}/documents``: the BOL document always, the POD once delivered;
  ``GET /v1/documents/{id}`` serves the PDF bytes.

Test controls: :meth:`lose_next_booking_response` (the booking is made, the answer is a
``502``, as a gateway timing out after the commit), :meth:`delay` (an exception event and a
later delivery), :meth:`throttle_next`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.clock import Clock
from connectors.fakeapi import FakeAPI, FakeRequest, FakeResponse
from connectors.freight import NMFC_CLASSES, DimensionUnit, HandlingUnit, WeightUnit, density_class
from tests.fakes import ltl_common as tariff

PREFIX = "/v1"


@dataclasses.dataclass(frozen=True)
class BrokerCarrier:
    name: str
    scac: str
    factor: Decimal
    transit_adjustment: int = 0


DEFAULT_CARRIERS = (
    BrokerCarrier("Old Dominion Freight Line", "ODFL", Decimal("1.12")),
    BrokerCarrier("Estes Express Lines", "EXLA", Decimal("1.00")),
    BrokerCarrier("XPO Logistics", "CNWY", Decimal("0.97"), 1),
    BrokerCarrier("Saia LTL Freight", "SAIA", Decimal("1.03")),
    BrokerCarrier("R+L Carriers", "RLCA", Decimal("0.94"), 1),
)

#: Per-piece limits for LTL (beyond them: full truckload or a volume quote).
MAX_LENGTH_IN = Decimal(636)
MAX_WIDTH_IN = Decimal(102)
MAX_HEIGHT_IN = Decimal(108)
MAX_SHIPMENT_LB = Decimal(20000)


def throttled(retry_after: float) -> FakeResponse:
    return FakeResponse.json(
        {"error": {"code": "rate_limited", "message": "Too many requests"}},
        429,
        headers={"Retry-After": f"{retry_after:g}", "x-ratelimit-remaining": "0"},
    )


def _error(status: int, code: str, message: str, **extra: Any) -> FakeResponse:
    return FakeResponse.json({"error": {"code": code, "message": message, **extra}}, status)


class FakeLtlBroker(FakeAPI):
    def __init__(
        self,
        *,
        clock: Clock | None = None,
        api_key: str = "fh_live_0123456789abcdef",
        limit: int = 60,
        window: float = 60.0,
        quote_ttl: timedelta = timedelta(hours=24),
        carriers: Iterable[BrokerCarrier] = DEFAULT_CARRIERS,
        price_factor: Decimal = Decimal(1),
    ) -> None:
        super().__init__(clock=clock)
        self.api_key = api_key
        self.token_revoked = False
        self.throttle = tariff.SlidingWindow(limit, window)
        self.quote_ttl = quote_ttl
        self.carriers = tuple(carriers)
        self.price_factor = Decimal(price_factor)
        self.offers: dict[str, dict[str, Any]] = {}
        self.shipments: dict[str, dict[str, Any]] = {}  # by BOL number
        self.by_reference: dict[str, str] = {}  # client_reference → BOL number
        self.documents: dict[str, bytes] = {}
        self.booking_attempts = 0
        self._lose_booking_responses = 0
        self._ids = itertools.count(1)

        self.route("GET", PREFIX + "/account", self._account)
        self.route("POST", PREFIX + "/quotes", self._quote)
        self.route("POST", PREFIX + "/shipments", self._book)
        self.route("GET", PREFIX + "/tracking", self._tracking)
        self.route("GET", PREFIX + r"/shipments/(?P<bol>[^/]+)/documents", self._documents)
        self.route("GET", PREFIX + r"/documents/(?P<doc>[^/]+)", self._document)

    @property
    def base_url(self) -> str:
        return self.url + PREFIX

    # -- test controls --------------------------------------------------------------------------

    def revoke_token(self) -> None:
        self.token_revoked = True

    def throttle_next(self, retry_after: float = 30, times: int = 1) -> None:
        self.fail_next(throttled(retry_after), times)

    def lose_next_booking_response(self, times: int = 1) -> None:
        """The next ``times`` bookings are applied but answered ``502``."""
        with self.lock:
            self._lose_booking_responses += times

    def delay(self, bol_number: str, *, days: int, reason: str) -> None:
        """An exception now (weather, missed appointment): delivery moves ``days`` later."""
        with self.lock:
            shipment = self.shipments[bol_number]
            shipment["delay_days"] += days
            shipment["exception"] = (self.clock.now(), reason)

    def booked_count(self) -> int:
        return len(self.shipments)

    # -- cross-cutting --------------------------------------------------------------------------

    def before_route(self, request: FakeRequest) -> FakeResponse | None:
        if self.token_revoked or request.header("authorization") != f"Bearer {self.api_key}":
            return _error(401, "unauthorized", "Invalid or revoked API key")
        wait = self.throttle.admit(request.at)
        if wait is not None:
            return throttled(max(1, math.ceil(wait)))
        return None

    def after_route(self, request: FakeRequest, response: FakeResponse) -> FakeResponse:
        response.headers["x-ratelimit-remaining"] = str(self.throttle.remaining())
        return response

    # -- handlers -------------------------------------------------------------------------------

    def _account(self, request: FakeRequest) -> FakeResponse:
        return FakeResponse.json(
            {"account_id": "acct_keel", "name": "Keel Brands", "currency": "USD"}
        )

    def _parse_units(
        self, units: Any, errors: list[dict[str, str]]
    ) -> list[tuple[HandlingUnit, tariff.Line]]:
        parsed = []
        if not isinstance(units, list) or not units:
            errors.append({"field": "handling_units", "message": "at least one handling unit"})
            return parsed
        for index, unit in enumerate(units):
            field = f"handling_units[{index}]"
            try:
                dim_unit = DimensionUnit(unit.get("dimension_unit", "in"))
                weight_unit = WeightUnit(unit.get("weight_unit", "lb"))
                values = {k: Decimal(str(unit[k])) for k in ("length", "width", "height", "weight")}
                pieces = int(unit.get("quantity", 0))
            except (KeyError, ValueError, TypeError, InvalidOperation, AttributeError):
                errors.append({"field": field, "message": "dimensions, weight and units required"})
                continue
            freight_class = unit.get("freight_class")
            if freight_class is not None and str(freight_class) not in NMFC_CLASSES:
                errors.append(
                    {"field": f"{field}.freight_class", "message": "not an NMFC freight class"}
                )
                continue
            bad = [k for k, v in values.items() if v <= 0]
            if pieces < 1 or bad:
                errors.append({"field": field, "message": "quantity and measures must be > 0"})
                continue
            hu = HandlingUnit(
                pieces=pieces,
                dimension_unit=dim_unit,
                weight_unit=weight_unit,
                freight_class=str(freight_class) if freight_class is not None else None,
                stackable=bool(unit.get("stackable", True)),
                hazmat=bool(unit.get("hazmat", False)),
                **values,
            )
            length, width, height = hu.dimensions_in(DimensionUnit.INCH)
            for name, value, limit in (
                ("length", length, MAX_LENGTH_IN),
                ("width", width, MAX_WIDTH_IN),
                ("height", height, MAX_HEIGHT_IN),
            ):
                if value > limit:
                    errors.append(
                        {"field": f"{field}.{name}", "message": f"exceeds {limit} in for LTL"}
                    )
            line = tariff.Line(
                pieces=pieces,
                weight_lb=hu.weight_in(WeightUnit.POUND),
                freight_class=hu.freight_class or density_class(hu),
                stackable=hu.stackable,
                hazmat=hu.hazmat,
            )
            parsed.append((hu, line))
        return parsed

    def _quote(self, request: FakeRequest) -> FakeResponse:
        try:
            body = request.json()
            origin, destination = body["origin"], body["destination"]
            pickup = date.fromisoformat(body["pickup_date"])
        except (ValueError, KeyError, TypeError):
            return _error(400, "bad_request", "origin, destination and pickup_date are required")
        errors: list[dict[str, str]] = []
        now = self.clock.now()
        if pickup < now.date():
            errors.append({"field": "pickup_date", "message": "must not be in the past"})
        elif not tariff.is_business_day(pickup):
            errors.append({"field": "pickup_date", "message": "carriers pick up Mon-Fri"})
        miles = None
        try:
            if origin.get("country") != "US" or destination.get("country") != "US":
                raise ValueError
            miles = tariff.lane_miles(origin["postal_code"], destination["postal_code"])
        except (ValueError, KeyError, AttributeError):
            errors.append({"field": "destination", "message": "lane not served (US ZIPs only)"})
        accessorials = body.get("accessorials") or []
        unknown = [a for a in accessorials if a not in tariff.ACCESSORIAL_FEES]
        if unknown:
            errors.append({"field": "accessorials", "message": f"unknown: {unknown}"})
        units = self._parse_units(body.get("handling_units"), errors)
        total_lb = sum((line.weight_lb * line.pieces for _, line in units), Decimal(0))
        if total_lb > MAX_SHIPMENT_LB:
            errors.append({"field": "handling_units", "message": "over 20000 lb: quote FTL"})
        if errors or miles is None:
            return FakeResponse.json(
                {
                    "error": {"code": "validation_failed", "message": "invalid freight"},
                    "errors": errors,
                },
                422,
            )
        lines = [line for _, line in units]
        quote_request_id = f"qr_{next(self._ids):06d}"
        expires = now + self.quote_ttl
        offers = []
        for index, carrier in enumerate(self.carriers):
            services = [("standard", False, Decimal(1))]
            if index == 0:
                services.append(("guaranteed", True, Decimal("1.35")))
            for service, guaranteed, uplift in services:
                total, charges = tariff.rate(
                    miles=miles,
                    lines=lines,
                    accessorials=accessorials,
                    factor=carrier.factor * uplift * self.price_factor,
                )
                offer_id = f"off_{next(self._ids):06d}"
                offer = {
                    "offer_id": offer_id,
                    "quote_request_id": quote_request_id,
                    "carrier": {"name": carrier.name, "scac": carrier.scac},
                    "service": service,
                    "guaranteed": guaranteed,
                    "transit_days": tariff.transit_days(miles, carrier.transit_adjustment),
                    "total": {"amount": str(total), "currency": "USD"},
                    "charges": [
                        {"code": code, "amount": str(amount)} for code, amount in charges.items()
                    ],
                    "accessorials": sorted(set(accessorials)),
                    "pickup_date": pickup.isoformat(),
                    "expires_at": expires.isoformat(),
                }
                self.offers[offer_id] = {
                    **offer,
                    "origin": origin,
                    "destination": destination,
                }
                offers.append(offer)
        return FakeResponse.json({"quote_request_id": quote_request_id, "offers": offers})

    def _book(self, request: FakeRequest) -> FakeResponse:
        try:
            body = request.json()
            offer_id = body["offer_id"]
            reference = body["client_reference"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "bad_request", "offer_id and client_reference are required")
        self.booking_attempts += 1
        now = self.clock.now()
        existing = self.by_reference.get(reference)
        if existing is not None:
            shipment = self.shipments[existing]
            if shipment["offer_id"] != offer_id:
                return _error(409, "reference_conflict", "client_reference used for another offer")
            return self._maybe_lost(FakeResponse.json(self._shipment_json(shipment), 200))
        offer = self.offers.get(offer_id)
        if offer is None:
            return _error(404, "offer_not_found", "unknown offer")
        if now >= datetime.fromisoformat(offer["expires_at"]):
            return _error(410, "offer_expired", "the offer expired; request new quotes")
        start, end = tariff.pickup_window(date.fromisoformat(offer["pickup_date"]), now)
        number = next(self._ids)
        shipment = {
            "shipment_id": f"shp_{number:06d}",
            "bol_number": f"FH{number:08d}",
            "pro_number": f"{offer['carrier']['scac']}{number:07d}",
            "offer_id": offer_id,
            "client_reference": reference,
            "shipper_reference": body.get("shipper_reference", ""),
            "carrier": offer["carrier"],
            "total": offer["total"],
            "pickup_window": {"start": start.isoformat(), "end": end.isoformat()},
            "transit_days": offer["transit_days"],
            "booked_at": now,
            "window_start": start,
            "origin": f"{offer['origin'].get('city', '')} {offer['origin']['postal_code']}".strip(),
            "destination": (
                f"{offer['destination'].get('city', '')} {offer['destination']['postal_code']}"
            ).strip(),
            "delay_days": 0,
            "exception": None,
        }
        self.shipments[shipment["bol_number"]] = shipment
        self.by_reference[reference] = shipment["bol_number"]
        self.documents[f"doc_bol_{shipment['bol_number']}"] = tariff.tiny_pdf(
            ["Bill of Lading", f"BOL: {shipment['bol_number']}", f"Ref: {reference}"]
        )
        return self._maybe_lost(FakeResponse.json(self._shipment_json(shipment), 201))

    def _maybe_lost(self, response: FakeResponse) -> FakeResponse:
        if self._lose_booking_responses > 0:
            self._lose_booking_responses -= 1
            return _error(502, "bad_gateway", "upstream timed out")
        return response

    @staticmethod
    def _shipment_json(shipment: dict[str, Any]) -> dict[str, Any]:
        keys = (
            "shipment_id",
            "bol_number",
            "pro_number",
            "offer_id",
            "client_reference",
            "shipper_reference",
            "carrier",
            "total",
            "pickup_window",
        )
        return {k: shipment[k] for k in keys}

    def _milestones(self, shipment: dict[str, Any]) -> list[tariff.Milestone]:
        now = self.clock.now()
        return [
            m
            for m in tariff.timeline(
                booked_at=shipment["booked_at"],
                window_start=shipment["window_start"],
                transit=shipment["transit_days"],
                origin=shipment["origin"],
                destination=shipment["destination"],
                delay_days=shipment["delay_days"],
                exception=shipment["exception"],
            )
            if m.at <= now
        ]

    def _find(self, request: FakeRequest) -> dict[str, Any] | None:
        bol, pro = request.arg("bol_number"), request.arg("pro_number")
        if bol:
            return self.shipments.get(bol)
        for shipment in self.shipments.values():
            if pro and shipment["pro_number"] == pro:
                return shipment
        return None

    def _tracking(self, request: FakeRequest) -> FakeResponse:
        if not (request.arg("bol_number") or request.arg("pro_number")):
            return _error(400, "bad_request", "bol_number or pro_number is required")
        shipment = self._find(request)
        if shipment is None:
            return _error(404, "shipment_not_found", "no shipment with that number")
        events = self._milestones(shipment)
        return FakeResponse.json(
            {
                "bol_number": shipment["bol_number"],
                "pro_number": shipment["pro_number"],
                "status": events[-1].code,
                "estimated_delivery_date": tariff.estimated_delivery(
                    shipment["window_start"], shipment["transit_days"], shipment["delay_days"]
                ).isoformat(),
                "events": [
                    {
                        "status": m.code,
                        "description": m.description,
                        "occurred_at": m.at.isoformat(),
                        "location": m.location,
                    }
                    for m in events
                ],
            }
        )

    def _documents(self, request: FakeRequest) -> FakeResponse:
        shipment = self.shipments.get(request.params["bol"])
        if shipment is None:
            return _error(404, "shipment_not_found", "no shipment with that number")
        bol = shipment["bol_number"]
        documents = [
            {
                "type": "bill_of_lading",
                "format": "pdf",
                "url": f"{self.base_url}/documents/doc_bol_{bol}",
            }
        ]
        delivered = [m for m in self._milestones(shipment) if m.code == "delivered"]
        if delivered:
            key = f"doc_pod_{bol}"
            if key not in self.documents:
                self.documents[key] = tariff.pod_pdf(
                    carrier=shipment["carrier"]["name"],
                    bol_number=bol,
                    pro_number=shipment["pro_number"],
                    delivered_at=delivered[0].at,
                )
            documents.append(
                {
                    "type": "proof_of_delivery",
                    "format": "pdf",
                    "url": f"{self.base_url}/documents/{key}",
                    "signed_by": "J. Receiver",
                }
            )
        return FakeResponse.json({"documents": documents})

    def _document(self, request: FakeRequest) -> FakeResponse:
        content = self.documents.get(request.params["doc"])
        if content is None:
            return _error(404, "document_not_found", "no such document")
        return FakeResponse(status=200, body=content, headers={"Content-Type": "application/pdf"})
