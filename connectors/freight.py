"""Canonical types and protocol for LTL (less-than-truckload) freight.

LTL does not fit the parcel model in :mod:`connectors.types`: freight is quoted per lane
before it can be booked (quotes are offers that expire), it travels as handling units
(pallets, crates) with an NMFC freight class rather than as parcels, extra services
(*accessorials*: liftgate, residential, appointment...) change the price, booking produces a
bill of lading (BOL) and a carrier PRO number with a pickup window rather than a label, and
the delivery receipt (proof of delivery, POD) is a document fetched afterwards.

A freight connector is a :class:`~connectors.types.ConnectorKind.CARRIER` (the only kind
whose vendors these are) declaring :attr:`~connectors.types.Capability.TRACKING` — ``track``
maps freight milestones to :class:`~connectors.types.TrackingEvent` — and it implements
:class:`FreightConnector`. The freight operations are not members of
:class:`~connectors.types.Capability` (that enum belongs to the parcel SDK), so a connector
declares them with :func:`declare_freight` in its settings schema under
:data:`FREIGHT_CAPABILITIES_KEY`, an annotation keyword JSON Schema ignores; the platform
reads them back with :func:`freight_capabilities`.

Units are explicit: every length carries its :class:`DimensionUnit` and every weight its
:class:`WeightUnit`; connectors convert with :meth:`HandlingUnit.dimensions_in` /
:meth:`HandlingUnit.weight_in` to whatever the vendor expects.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from connectors.errors import ConnectorError, PermanentError
from connectors.protocols import Connector
from connectors.types import Address, ConnectorInfo, Money, TrackingStatus, to_primitive, utc

__all__ = [
    "FREIGHT_CAPABILITIES_KEY",
    "FREIGHT_CAPABILITY_METHODS",
    "FREIGHT_KIND",
    "NMFC_CLASSES",
    "Accessorial",
    "DimensionUnit",
    "FreightBooking",
    "FreightCapability",
    "FreightConnector",
    "FreightEvent",
    "FreightQuote",
    "FreightQuoteRequest",
    "FreightStatus",
    "FreightStatusCode",
    "HandlingUnit",
    "PodDocument",
    "QuoteComparison",
    "QuoteExpiredError",
    "WeightUnit",
    "cheapest_first",
    "compare_quotes",
    "declare_freight",
    "density_class",
    "freight_capabilities",
    "freight_to_primitive",
    "price_spread",
    "quote_from_primitive",
    "request_from_primitive",
]

#: Kind label for freight connectors. ``ConnectorKind`` has no freight member and is not ours
#: to change, so ``ConnectorInfo.kind`` stays ``carrier``; the platform uses this string to
#: label freight connections in lists.
FREIGHT_KIND = "freight"

#: JSON Schema annotation keyword (ignored by validators) listing a connector's freight
#: capabilities in its ``settings_schema``.
FREIGHT_CAPABILITIES_KEY = "x-keel-freight-capabilities"

#: The 18 NMFC freight classes, as strings (``"77.5"`` is not a float).
NMFC_CLASSES: tuple[str, ...] = (
    "50",
    "55",
    "60",
    "65",
    "70",
    "77.5",
    "85",
    "92.5",
    "100",
    "110",
    "125",
    "150",
    "175",
    "200",
    "250",
    "300",
    "400",
    "500",
)

_SCAC = re.compile(r"^[A-Z]{2,4}$")
_CM_PER_IN = Decimal("2.54")
_KG_PER_LB = Decimal("0.45359237")


class FreightCapability(enum.StrEnum):
    """What a freight connector can do; each maps to one :class:`FreightConnector` method."""

    QUOTE = "freight.quote"
    BOOK = "freight.book"
    STATUS = "freight.status"
    POD = "freight.pod"


FREIGHT_CAPABILITY_METHODS: Mapping[FreightCapability, str] = {
    FreightCapability.QUOTE: "quote_freight",
    FreightCapability.BOOK: "book_freight",
    FreightCapability.STATUS: "freight_status",
    FreightCapability.POD: "fetch_pod",
}


class DimensionUnit(enum.StrEnum):
    INCH = "in"
    CENTIMETRE = "cm"


class WeightUnit(enum.StrEnum):
    POUND = "lb"
    KILOGRAM = "kg"


class Accessorial(enum.StrEnum):
    """Extra services that change an LTL price; vendors name them differently."""

    LIFTGATE_PICKUP = "liftgate_pickup"
    LIFTGATE_DELIVERY = "liftgate_delivery"
    RESIDENTIAL_PICKUP = "residential_pickup"
    RESIDENTIAL_DELIVERY = "residential_delivery"
    APPOINTMENT_DELIVERY = "appointment_delivery"
    INSIDE_DELIVERY = "inside_delivery"
    LIMITED_ACCESS_DELIVERY = "limited_access_delivery"


class FreightStatusCode(enum.StrEnum):
    """Milestones of an LTL shipment, vendor-neutral, in the order they normally happen."""

    BOOKED = "booked"
    PICKED_UP = "picked_up"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    EXCEPTION = "exception"
    CANCELLED = "cancelled"


_TRACKING = {
    FreightStatusCode.BOOKED: TrackingStatus.PRE_TRANSIT,
    FreightStatusCode.PICKED_UP: TrackingStatus.IN_TRANSIT,
    FreightStatusCode.IN_TRANSIT: TrackingStatus.IN_TRANSIT,
    FreightStatusCode.OUT_FOR_DELIVERY: TrackingStatus.OUT_FOR_DELIVERY,
    FreightStatusCode.DELIVERED: TrackingStatus.DELIVERED,
    FreightStatusCode.EXCEPTION: TrackingStatus.EXCEPTION,
    FreightStatusCode.CANCELLED: TrackingStatus.EXCEPTION,
}


class QuoteExpiredError(PermanentError):
    """The vendor refused to book a quote past its expiry: quote again."""


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def _decimal(name: str, value: Any) -> Decimal:
    if isinstance(value, float | bool):
        # 48.0 is exact but 0.1 is not; measurements come as Decimal, int or str.
        raise TypeError(f"{name} must be Decimal, int or str, not {type(value).__name__}")
    try:
        result = Decimal(value)
    except (ArithmeticError, ValueError, TypeError):
        raise ValueError(f"{name} is not a number") from None
    if not result.is_finite() or result <= 0:
        raise ValueError(f"{name} must be positive")
    return result


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int")
    if value < 1:
        raise ValueError(f"{name} must be at least 1")


# ---------------------------------------------------------------------------------------------
# values


@dataclasses.dataclass(frozen=True, slots=True)
class HandlingUnit:
    """``pieces`` identical handling units (pallets, crates...).

    ``length``/``width``/``height`` are the dimensions of one piece in ``dimension_unit``;
    ``weight`` is the weight of one piece (packaging included) in ``weight_unit``.
    ``freight_class`` is an NMFC class from :data:`NMFC_CLASSES`, or ``None`` to let a vendor
    that rates by density derive it (vendors that need a class refuse the quote).
    """

    pieces: int
    length: Decimal
    width: Decimal
    height: Decimal
    weight: Decimal
    dimension_unit: DimensionUnit = DimensionUnit.INCH
    weight_unit: WeightUnit = WeightUnit.POUND
    freight_class: str | None = None
    stackable: bool = True
    hazmat: bool = False
    packaging: str = "pallet"
    description: str = ""

    def __post_init__(self) -> None:
        _positive_int("pieces", self.pieces)
        for name in ("length", "width", "height", "weight"):
            _set(self, name, _decimal(name, getattr(self, name)))
        _set(self, "dimension_unit", DimensionUnit(self.dimension_unit))
        _set(self, "weight_unit", WeightUnit(self.weight_unit))
        if self.freight_class is not None:
            freight_class = str(self.freight_class)
            if freight_class not in NMFC_CLASSES:
                raise ValueError(f"freight_class must be an NMFC class, got {freight_class!r}")
            _set(self, "freight_class", freight_class)

    def dimensions_in(self, unit: DimensionUnit) -> tuple[Decimal, Decimal, Decimal]:
        """(length, width, height) of one piece in ``unit``, to 2 decimal places."""
        factor = Decimal(1)
        if self.dimension_unit != unit:
            factor = _CM_PER_IN if unit == DimensionUnit.CENTIMETRE else 1 / _CM_PER_IN
        return tuple(  # type: ignore[return-value]
            (v * factor).quantize(Decimal("0.01"), ROUND_HALF_UP)
            for v in (self.length, self.width, self.height)
        )

    def weight_in(self, unit: WeightUnit) -> Decimal:
        """Weight of one piece in ``unit``, to 2 decimal places."""
        weight = self.weight
        if self.weight_unit != unit:
            weight = weight * _KG_PER_LB if unit == WeightUnit.KILOGRAM else weight / _KG_PER_LB
        return weight.quantize(Decimal("0.01"), ROUND_HALF_UP)

    def total_weight_lb(self) -> Decimal:
        return self.weight_in(WeightUnit.POUND) * self.pieces

    def density_lb_ft3(self) -> Decimal:
        """Pounds per cubic foot of one piece (what density-based classes are read from)."""
        length, width, height = self.dimensions_in(DimensionUnit.INCH)
        cubic_feet = length * width * height / 1728
        return self.weight_in(WeightUnit.POUND) / cubic_feet


# Density (lb/ft³) lower bounds → class, the NMFC density scale brokers use for
# "class by density" when the shipper gives none.
_DENSITY_SCALE: tuple[tuple[Decimal, str], ...] = (
    (Decimal(50), "50"),
    (Decimal(35), "55"),
    (Decimal(30), "60"),
    (Decimal("22.5"), "65"),
    (Decimal(15), "70"),
    (Decimal("13.5"), "77.5"),
    (Decimal(12), "85"),
    (Decimal("10.5"), "92.5"),
    (Decimal(9), "100"),
    (Decimal(8), "110"),
    (Decimal(7), "125"),
    (Decimal(6), "150"),
    (Decimal(5), "175"),
    (Decimal(4), "200"),
    (Decimal(3), "250"),
    (Decimal(2), "300"),
    (Decimal(1), "400"),
)


def density_class(unit: HandlingUnit) -> str:
    """The NMFC class the density scale gives ``unit`` (its declared class is ignored)."""
    density = unit.density_lb_ft3()
    for floor, freight_class in _DENSITY_SCALE:
        if density >= floor:
            return freight_class
    return "500"


@dataclasses.dataclass(frozen=True, slots=True)
class FreightQuoteRequest:
    """A lane, a pickup date, the freight and the extra services to price."""

    origin: Address
    destination: Address
    pickup_date: date
    units: tuple[HandlingUnit, ...]
    accessorials: frozenset[Accessorial] = frozenset()
    #: Our shipment reference (PO / shipment number): printed on the BOL.
    reference: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.origin, Address) or not isinstance(self.destination, Address):
            raise TypeError("origin and destination must be Address")
        for name in ("origin", "destination"):
            address = getattr(self, name)
            if not address.postal_code or not address.country:
                # LTL is priced per lane: without both ends' postal codes there is no quote.
                raise ValueError(f"{name} needs a postal code and a country")
        if isinstance(self.pickup_date, datetime) or not isinstance(self.pickup_date, date):
            raise TypeError("pickup_date must be a date (a pickup day, not an instant)")
        if isinstance(self.units, str | bytes):
            raise TypeError("units must be a sequence of HandlingUnit")
        _set(self, "units", tuple(self.units))
        if not self.units:
            raise ValueError("a freight quote request needs at least one handling unit")
        if not all(isinstance(u, HandlingUnit) for u in self.units):
            raise TypeError("units must be HandlingUnit")
        _set(self, "accessorials", frozenset(Accessorial(a) for a in self.accessorials))

    def total_weight_lb(self) -> Decimal:
        return sum((u.total_weight_lb() for u in self.units), Decimal(0))

    def total_pieces(self) -> int:
        return sum(u.pieces for u in self.units)


@dataclasses.dataclass(frozen=True, slots=True)
class FreightQuote:
    """One bookable offer. ``source`` is the connector name that produced it, so quotes from
    several connections can be compared and each booked through its own connection."""

    quote_id: str
    source: str
    carrier: str
    scac: str
    total: Money
    transit_days: int
    expires_at: datetime
    service: str = "standard"
    guaranteed: bool = False
    pickup_date: date | None = None
    #: Priced accessorials, as the vendor confirmed them.
    accessorials: frozenset[Accessorial] = frozenset()
    #: Charge breakdown (``linehaul``, ``fuel``, ``liftgate_delivery``...), when given.
    charges: Mapping[str, Money] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.quote_id:
            raise ValueError("quote_id is required")
        if not isinstance(self.total, Money):
            raise TypeError("total must be Money")
        if self.scac and not _SCAC.match(self.scac):
            raise ValueError(f"scac must be 2-4 capital letters, got {self.scac!r}")
        if not isinstance(self.transit_days, int) or self.transit_days < 0:
            raise ValueError("transit_days must be a non-negative int")
        _set(self, "expires_at", utc(self.expires_at))
        _set(self, "accessorials", frozenset(Accessorial(a) for a in self.accessorials))
        charges = dict(self.charges)
        if any(not isinstance(m, Money) for m in charges.values()):
            raise TypeError("charges must be Money")
        _set(self, "charges", MappingProxyType(charges))

    def expired(self, now: datetime) -> bool:
        return utc(now) >= self.expires_at


@dataclasses.dataclass(frozen=True, slots=True)
class FreightBooking:
    """A booked shipment. ``bol_number`` identifies it from now on; the PRO number is the
    carrier's (empty when the carrier assigns it at pickup)."""

    bol_number: str
    carrier: str
    scac: str
    quote_id: str
    pickup_window_start: datetime
    pickup_window_end: datetime
    pro_number: str = ""
    #: The key the booking was made under; booking again with it returns this booking.
    idempotency_key: str = ""
    reference: str = ""
    confirmation_number: str = ""
    total: Money | None = None

    def __post_init__(self) -> None:
        if not self.bol_number:
            raise ValueError("bol_number is required")
        _set(self, "pickup_window_start", utc(self.pickup_window_start))
        _set(self, "pickup_window_end", utc(self.pickup_window_end))
        if self.pickup_window_end < self.pickup_window_start:
            raise ValueError("pickup window ends before it starts")


@dataclasses.dataclass(frozen=True, slots=True)
class FreightEvent:
    code: FreightStatusCode
    occurred_at: datetime
    description: str = ""
    location: str = ""

    def __post_init__(self) -> None:
        _set(self, "code", FreightStatusCode(self.code))
        _set(self, "occurred_at", utc(self.occurred_at))

    def tracking_status(self) -> TrackingStatus:
        """The parcel SDK's status for this milestone (for ``track``)."""
        return _TRACKING[self.code]


@dataclasses.dataclass(frozen=True, slots=True)
class FreightStatus:
    """Where a shipment is: its latest milestone and every event so far, oldest first."""

    bol_number: str
    pro_number: str
    status: FreightStatusCode
    events: tuple[FreightEvent, ...]
    estimated_delivery: date | None = None
    delivered_at: datetime | None = None

    def __post_init__(self) -> None:
        _set(self, "status", FreightStatusCode(self.status))
        events = tuple(sorted(self.events, key=lambda e: e.occurred_at))
        _set(self, "events", events)
        if self.delivered_at is not None:
            _set(self, "delivered_at", utc(self.delivered_at))

    def tracking_status(self) -> TrackingStatus:
        return _TRACKING[self.status]


@dataclasses.dataclass(frozen=True, slots=True)
class PodDocument:
    """A proof-of-delivery document as the vendor serves it."""

    bol_number: str
    content: bytes
    #: ``pdf``, ``tiff``, ``png``...
    format: str
    content_type: str = "application/pdf"
    signed_by: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.content, bytes) or not self.content:
            raise ValueError("a POD document has content")
        _set(self, "format", self.format.lower())


# ---------------------------------------------------------------------------------------------
# protocol and helpers


@runtime_checkable
class FreightConnector(Connector, Protocol):
    """An LTL carrier or freight broker.

    ``quote_freight`` may return offers from several carriers (a broker) or one carrier's
    services; ``book_freight`` with the same ``idempotency_key`` returns the same booking —
    even after the quote expired, when the first attempt did book it.
    """

    def quote_freight(self, *, request: FreightQuoteRequest) -> list[FreightQuote]:
        """Bookable offers for the shipment, cheapest first."""
        ...

    def book_freight(
        self, *, quote: FreightQuote, request: FreightQuoteRequest, idempotency_key: str
    ) -> FreightBooking:
        """Book ``quote`` (one of this connector's) for ``request``. Raises
        :class:`QuoteExpiredError` when the vendor refuses an expired quote."""
        ...

    def freight_status(
        self, *, bol_number: str | None = None, pro_number: str | None = None
    ) -> FreightStatus:
        """Status and events of a booked shipment, by BOL or PRO number (one of them)."""
        ...

    def fetch_pod(self, *, bol_number: str) -> PodDocument | None:
        """The proof of delivery, or ``None`` while the vendor has none (not delivered yet)."""
        ...


def declare_freight(
    schema: Mapping[str, Any], capabilities: Iterable[FreightCapability]
) -> dict[str, Any]:
    """``schema`` with the freight capabilities annotated (see the module docstring)."""
    return {
        **schema,
        FREIGHT_CAPABILITIES_KEY: sorted(FreightCapability(c).value for c in capabilities),
    }


def freight_capabilities(info: ConnectorInfo) -> frozenset[FreightCapability]:
    """The freight capabilities a connector declares (empty for non-freight connectors)."""
    declared = info.settings_schema.get(FREIGHT_CAPABILITIES_KEY) or ()
    return frozenset(FreightCapability(c) for c in declared)


def cheapest_first(quotes: Iterable[FreightQuote]) -> list[FreightQuote]:
    """Quotes by total, then transit days, then carrier (a stable, total order)."""
    return sorted(quotes, key=lambda q: (q.total.amount, q.transit_days, q.scac, q.quote_id))


def price_spread(quotes: Sequence[FreightQuote]) -> Decimal | None:
    """How far apart the quotes are: (highest − lowest) / lowest, e.g. ``0.5`` for 50 %.

    ``None`` for fewer than two quotes. Quotes in different currencies are not comparable
    and raise ``ValueError``.
    """
    if len(quotes) < 2:
        return None
    currencies = {q.total.currency for q in quotes}
    if len(currencies) > 1:
        raise ValueError(f"quotes in several currencies: {sorted(currencies)}")
    amounts = [q.total.amount for q in quotes]
    low = min(amounts)
    if low <= 0:
        raise ValueError("a quote total must be positive to compare spreads")
    return (max(amounts) - low) / low


@dataclasses.dataclass(frozen=True, slots=True)
class QuoteComparison:
    """Quotes gathered from several sources, cheapest first, with what each failed with.

    ``errors`` maps a source's label to its error (a source that is down or throttled does
    not hide the others' quotes); ``spread`` is :func:`price_spread` over all quotes.
    """

    quotes: tuple[FreightQuote, ...]
    errors: Mapping[str, ConnectorError]
    spread: Decimal | None

    @property
    def sources(self) -> frozenset[str]:
        """Labels of the sources that answered with at least one quote."""
        return frozenset(q.source for q in self.quotes)

    def varies_by_more_than(self, fraction: Decimal) -> bool:
        return self.spread is not None and self.spread > fraction


def compare_quotes(
    sources: Mapping[str, FreightConnector], *, request: FreightQuoteRequest
) -> QuoteComparison:
    """Ask every source for quotes on ``request`` and rank them together.

    ``sources`` maps a label (e.g. the connection id) to a connector. A source raising a
    :class:`~connectors.errors.ConnectorError` is recorded in ``errors``; anything else is a
    bug and propagates.
    """
    quotes: list[FreightQuote] = []
    errors: dict[str, ConnectorError] = {}
    for label, connector in sources.items():
        try:
            quotes.extend(connector.quote_freight(request=request))
        except ConnectorError as exc:
            errors[label] = exc
    ranked = cheapest_first(quotes)
    currencies = {q.total.currency for q in ranked}
    spread = price_spread(ranked) if len(currencies) == 1 else None
    return QuoteComparison(quotes=tuple(ranked), errors=MappingProxyType(errors), spread=spread)


# ---------------------------------------------------------------------------------------------
# JSON round trip: the platform stores quotes with a comparison and books one later, from a
# task, so quotes and requests must survive JSON exactly (Decimal amounts as strings).


def freight_to_primitive(value: Any) -> Any:
    """Like :func:`connectors.types.to_primitive`, also turning ``date`` into ISO strings."""
    return _dates(to_primitive(value))


def _dates(value: Any) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _dates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dates(v) for v in value]
    return value


def _money(data: Mapping[str, Any]) -> Money:
    return Money(Decimal(str(data["amount"])), str(data["currency"]))


def _day(value: Any) -> date | None:
    return date.fromisoformat(value) if value else None


def quote_from_primitive(data: Mapping[str, Any]) -> FreightQuote:
    """The :class:`FreightQuote` that :func:`freight_to_primitive` turned into ``data``."""
    return FreightQuote(
        quote_id=data["quote_id"],
        source=data["source"],
        carrier=data["carrier"],
        scac=data["scac"],
        total=_money(data["total"]),
        transit_days=int(data["transit_days"]),
        expires_at=datetime.fromisoformat(data["expires_at"]),
        service=data.get("service", "standard"),
        guaranteed=bool(data.get("guaranteed", False)),
        pickup_date=_day(data.get("pickup_date")),
        accessorials=frozenset(data.get("accessorials") or ()),
        charges={k: _money(v) for k, v in (data.get("charges") or {}).items()},
    )


def request_from_primitive(data: Mapping[str, Any]) -> FreightQuoteRequest:
    """The :class:`FreightQuoteRequest` that :func:`freight_to_primitive` turned into ``data``."""
    return FreightQuoteRequest(
        origin=Address(**data["origin"]),
        destination=Address(**data["destination"]),
        pickup_date=date.fromisoformat(data["pickup_date"]),
        units=tuple(HandlingUnit(**unit) for unit in data["units"]),
        accessorials=frozenset(data.get("accessorials") or ()),
        reference=data.get("reference", ""),
    )
