"""Canonical types connectors speak.

Every connector translates its vendor's payloads into these and back, so the platform never
sees a vendor shape. They are frozen dataclasses that validate on construction:

- money is :class:`Money` (``Decimal`` + ISO 4217 code); a float is refused outright,
- quantities are ``int`` (never negative where the domain forbids it),
- datetimes must be timezone-aware and are normalised to UTC,
- sequences are stored as tuples and vendor payloads (``raw``, ``payload``) as read-only
  mappings, so a value handed to the platform cannot change under it.

Identifiers that come from a remote system are strings named ``external_*`` or ``*_ref``;
the platform maps them to its own rows (by connection and external id).

:func:`to_primitive` turns any of these into JSON-ready data (``Decimal`` and ``datetime`` as
strings) for storage, logs and task payloads.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Generic, TypeVar

__all__ = [
    "Address",
    "AvailablePushResult",
    "AvailableQuantity",
    "Capability",
    "ChannelFulfillmentResult",
    "ConnectorInfo",
    "ConnectorKind",
    "Customer",
    "FulfillmentConfirmation",
    "FulfillmentLine",
    "FulfillmentOrderAck",
    "FulfillmentRequest",
    "InboundAck",
    "InboundLine",
    "InboundShipment",
    "KIND_CAPABILITIES",
    "Label",
    "LabelStatus",
    "Listing",
    "Money",
    "Order",
    "OrderLine",
    "OrderStatus",
    "OrderTotals",
    "OrderType",
    "Parcel",
    "PullResult",
    "PushOutcome",
    "Rate",
    "RateRequest",
    "ServiceLevel",
    "StockLevel",
    "TrackingEvent",
    "TrackingException",
    "TrackingStatus",
    "WebhookEvent",
    "to_primitive",
    "utc",
]

_CURRENCY = re.compile(r"^[A-Z]{3}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_CONNECTOR_NAME = re.compile(r"^[a-z][a-z0-9_]{1,49}$")

T = TypeVar("T")


def utc(value: datetime) -> datetime:
    """``value`` in UTC; naive datetimes are refused (their zone is a guess)."""
    if not isinstance(value, datetime):
        raise TypeError(f"expected datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError("datetime must be timezone-aware")
    return value.astimezone(UTC)


def _set_field(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def _tuple(obj: object, name: str, value: Iterable[Any]) -> None:
    if isinstance(value, str | bytes):
        raise TypeError(f"{name} must be a sequence, not a string")
    _set_field(obj, name, tuple(value))


def _readonly(obj: object, name: str, value: Mapping[str, Any] | None) -> None:
    _set_field(obj, name, MappingProxyType(dict(value or {})))


def _aware(obj: object, name: str, value: datetime | None, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value is None:
        raise ValueError(f"{name} is required")
    _set_field(obj, name, utc(value))


def _quantity(name: str, value: int, *, allow_negative: bool = False) -> None:
    # bool is an int subclass; True units of stock is a bug, not a quantity.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0 and not allow_negative:
        raise ValueError(f"{name} must not be negative")


# ---------------------------------------------------------------------------------------------
# enums


class ConnectorKind(enum.StrEnum):
    """What a connector connects to."""

    CHANNEL = "channel"
    THREEPL = "3pl"
    CARRIER = "carrier"


class Capability(enum.StrEnum):
    """One thing a connector can do; each maps to one protocol method."""

    ORDERS_PULL = "orders.pull"
    WEBHOOKS = "webhooks"
    AVAILABLE_PUSH = "available.push"
    FULFILLMENT_PUSH = "fulfillment.push"
    LISTINGS_LIST = "listings.list"
    FULFILLMENT_ORDER_PUSH = "fulfillment_order.push"
    STOCK_PULL = "stock.pull"
    SHIPMENTS_PULL = "shipments.pull"
    INBOUND_PUSH = "inbound.push"
    RATES_QUOTE = "rates.quote"
    LABELS_BUY = "labels.buy"
    LABELS_VOID = "labels.void"
    TRACKING = "tracking"
    #: Carriers: list purchased labels and look one up (``list_labels``, ``get_label``).
    LABELS_LIST = "labels.list"


#: Capabilities each kind may declare, with the protocol method implementing each.
KIND_CAPABILITIES: Mapping[ConnectorKind, Mapping[Capability, tuple[str, ...]]] = MappingProxyType(
    {
        ConnectorKind.CHANNEL: MappingProxyType(
            {
                Capability.ORDERS_PULL: ("pull_orders",),
                Capability.WEBHOOKS: ("verify_webhook", "parse_webhook"),
                Capability.AVAILABLE_PUSH: ("push_available",),
                Capability.FULFILLMENT_PUSH: ("push_fulfillment",),
                Capability.LISTINGS_LIST: ("list_listings",),
            }
        ),
        ConnectorKind.THREEPL: MappingProxyType(
            {
                Capability.FULFILLMENT_ORDER_PUSH: ("push_fulfillment_order",),
                Capability.STOCK_PULL: ("pull_stock_levels",),
                Capability.SHIPMENTS_PULL: ("pull_shipment_confirmations",),
                Capability.INBOUND_PUSH: ("push_inbound",),
            }
        ),
        ConnectorKind.CARRIER: MappingProxyType(
            {
                Capability.RATES_QUOTE: ("quote_rates",),
                Capability.LABELS_BUY: ("buy_label",),
                Capability.LABELS_VOID: ("void_label",),
                Capability.TRACKING: ("track",),
                Capability.LABELS_LIST: ("list_labels", "get_label"),
                # Tracking updates pushed by the carrier (WebhookEvent.tracking).
                Capability.WEBHOOKS: ("verify_webhook", "parse_webhook"),
            }
        ),
    }
)


class OrderStatus(enum.StrEnum):
    OPEN = "open"
    CANCELLED = "cancelled"
    CLOSED = "closed"


class OrderType(enum.StrEnum):
    DTC = "dtc"
    MARKETPLACE = "marketplace"
    WHOLESALE = "wholesale"
    SUBSCRIPTION = "subscription"


class ServiceLevel(enum.StrEnum):
    """How fast the customer paid to receive it, vendor-neutral."""

    ECONOMY = "economy"
    STANDARD = "standard"
    EXPEDITED = "expedited"
    OVERNIGHT = "overnight"
    PICKUP = "pickup"
    FREIGHT = "freight"


class TrackingStatus(enum.StrEnum):
    PRE_TRANSIT = "pre_transit"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    EXCEPTION = "exception"
    RETURNED = "returned"


class TrackingException(enum.StrEnum):
    """Why a parcel is in trouble, vendor-neutral (set on exception and return events)."""

    ADDRESS_ISSUE = "address_issue"
    DAMAGED = "damaged"
    RETURN_TO_SENDER = "return_to_sender"
    DELIVERY_FAILED = "delivery_failed"
    DELAYED = "delayed"
    HELD = "held"
    LOST = "lost"
    OTHER = "other"


class LabelStatus(enum.StrEnum):
    """Where a purchased label stands with the carrier."""

    #: The carrier accepted the purchase and is still producing the label.
    PENDING = "pending"
    PURCHASED = "purchased"
    #: The carrier could not produce the label (nothing was charged).
    FAILED = "failed"
    #: A refund was requested and the carrier has not decided yet.
    VOID_PENDING = "void_pending"
    VOIDED = "voided"
    #: The carrier refused the refund (typically: the parcel was already scanned).
    VOID_REJECTED = "void_rejected"


class PushOutcome(enum.StrEnum):
    """Result of pushing one available quantity to a channel."""

    APPLIED = "applied"
    #: The channel's quantity kept changing under us (compare-and-swap lost every retry).
    STALE = "stale"
    #: The channel refused this item (unknown item, not stocked at the location, ...).
    REJECTED = "rejected"


# ---------------------------------------------------------------------------------------------
# values


@dataclasses.dataclass(frozen=True, slots=True)
class Money:
    """An exact amount in one currency. Build from ``Decimal``, ``int`` or ``str``; never float."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        amount = self.amount
        if isinstance(amount, float):
            raise TypeError("Money amounts must not be float; pass a Decimal or a string")
        if isinstance(amount, bool):
            raise TypeError("Money amount must be a number")
        if isinstance(amount, int | str):
            try:
                amount = Decimal(amount)
            except InvalidOperation:
                raise ValueError(f"not a decimal amount: {self.amount!r}") from None
        if not isinstance(amount, Decimal):
            raise TypeError(f"Money amount must be Decimal, got {type(amount).__name__}")
        if not amount.is_finite():
            raise ValueError("Money amount must be finite")
        _set_field(self, "amount", amount)
        if not isinstance(self.currency, str) or not _CURRENCY.match(self.currency):
            raise ValueError(f"currency must be an ISO 4217 code, got {self.currency!r}")

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError("can only combine Money with Money")
        if other.currency != self.currency:
            raise ValueError(f"currency mismatch: {self.currency} vs {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __mul__(self, factor: int) -> Money:
        if not isinstance(factor, int) or isinstance(factor, bool):
            raise TypeError("Money can only be multiplied by an int quantity")
        return Money(self.amount * factor, self.currency)

    __rmul__ = __mul__

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


@dataclasses.dataclass(frozen=True, slots=True)
class Address:
    """A postal address. ``country`` is ISO 3166-1 alpha-2 (empty when unknown)."""

    name: str = ""
    line1: str = ""
    line2: str = ""
    city: str = ""
    region: str = ""
    postal_code: str = ""
    country: str = ""
    company: str = ""
    phone: str = ""
    email: str = ""

    def __post_init__(self) -> None:
        if self.country and not _COUNTRY.match(self.country):
            raise ValueError(f"country must be ISO 3166-1 alpha-2, got {self.country!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class Customer:
    external_id: str = ""
    email: str = ""
    name: str = ""
    phone: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class OrderLine:
    """One line of a channel order, in the channel's identifiers."""

    external_id: str
    sku: str
    quantity: int
    unit_price: Money
    title: str = ""
    #: The channel's listing (e.g. Shopify variant id) the platform maps to its SKU.
    listing_id: str = ""
    #: Discount allocated to the whole line (not per unit).
    discount: Money | None = None
    requires_shipping: bool = True

    def __post_init__(self) -> None:
        _quantity("quantity", self.quantity)
        if not isinstance(self.unit_price, Money):
            raise TypeError("unit_price must be Money")


@dataclasses.dataclass(frozen=True, slots=True)
class OrderTotals:
    subtotal: Money
    shipping: Money
    tax: Money
    discount: Money
    total: Money

    def __post_init__(self) -> None:
        currencies = {m.currency for m in (self.subtotal, self.shipping, self.tax, self.discount)}
        if currencies != {self.total.currency}:
            raise ValueError("order totals must share one currency")


@dataclasses.dataclass(frozen=True, slots=True)
class Order:
    """A channel order as of ``updated_at``.

    The platform upserts by (connection, ``external_id``) and ignores a version whose
    ``updated_at`` is older than the one it holds, so webhooks and polls may deliver the
    same order any number of times, in any order.
    """

    external_id: str
    channel: str
    placed_at: datetime
    updated_at: datetime
    status: OrderStatus
    lines: tuple[OrderLine, ...]
    totals: OrderTotals
    number: str = ""
    ship_to: Address | None = None
    customer: Customer | None = None
    order_type: OrderType = OrderType.DTC
    service_level: ServiceLevel = ServiceLevel.STANDARD
    flags: frozenset[str] = frozenset()
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.external_id:
            raise ValueError("external_id is required")
        _aware(self, "placed_at", self.placed_at)
        _aware(self, "updated_at", self.updated_at)
        _set_field(self, "status", OrderStatus(self.status))
        _set_field(self, "order_type", OrderType(self.order_type))
        _set_field(self, "service_level", ServiceLevel(self.service_level))
        _tuple(self, "lines", self.lines)
        _set_field(self, "flags", frozenset(self.flags))
        _readonly(self, "raw", self.raw)

    @property
    def currency(self) -> str:
        return self.totals.total.currency


@dataclasses.dataclass(frozen=True, slots=True)
class StockLevel:
    """Quantities a 3PL reports for one SKU at one of its locations."""

    sku: str
    location: str
    on_hand: int
    available: int
    as_of: datetime | None = None

    def __post_init__(self) -> None:
        _quantity("on_hand", self.on_hand, allow_negative=True)
        _quantity("available", self.available, allow_negative=True)
        _aware(self, "as_of", self.as_of, optional=True)


@dataclasses.dataclass(frozen=True, slots=True)
class AvailableQuantity:
    """A quantity to publish on a channel for one inventory item at one location.

    ``inventory_ref`` is the channel's inventory identifier from :class:`Listing`;
    ``location_ref`` empty means the connection's configured default location.
    """

    inventory_ref: str
    available: int
    location_ref: str = ""

    def __post_init__(self) -> None:
        _quantity("available", self.available)


@dataclasses.dataclass(frozen=True, slots=True)
class AvailablePushResult:
    inventory_ref: str
    location_ref: str
    outcome: PushOutcome
    #: The channel's quantity just before our write, when the channel reports it.
    previous: int | None = None
    attempts: int = 1
    message: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Listing:
    """A sellable variant on a channel, for mapping to the platform's SKUs."""

    external_id: str
    sku: str
    title: str = ""
    #: Identifier to use in :class:`AvailableQuantity` (Shopify: inventory item id).
    inventory_ref: str = ""
    product_id: str = ""
    price: Money | None = None
    active: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class FulfillmentLine:
    sku: str
    quantity: int
    #: The source system's line id (channel order line for channel pushes).
    external_line_id: str = ""

    def __post_init__(self) -> None:
        _quantity("quantity", self.quantity)
        if self.quantity == 0:
            raise ValueError("fulfillment lines need a positive quantity")


@dataclasses.dataclass(frozen=True, slots=True)
class FulfillmentRequest:
    """Ask a 3PL to pick, pack and ship. ``request_id`` is ours and unique per request:
    3PLs that dedupe by reference get it as that reference."""

    request_id: str
    order_ref: str
    ship_to: Address
    lines: tuple[FulfillmentLine, ...]
    service_level: ServiceLevel = ServiceLevel.STANDARD
    order_type: OrderType = OrderType.DTC
    customer: Customer | None = None
    placed_at: datetime | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        _tuple(self, "lines", self.lines)
        if not self.lines:
            raise ValueError("a fulfillment request needs at least one line")
        _aware(self, "placed_at", self.placed_at, optional=True)


@dataclasses.dataclass(frozen=True, slots=True)
class FulfillmentOrderAck:
    external_id: str
    request_id: str
    status: str = "accepted"


@dataclasses.dataclass(frozen=True, slots=True)
class FulfillmentConfirmation:
    """A shipment that left a warehouse (3PL → platform) or that the platform reports to a
    channel (platform → channel, with the channel's order and line ids)."""

    external_id: str
    order_ref: str
    carrier: str
    tracking_numbers: tuple[str, ...]
    lines: tuple[FulfillmentLine, ...]
    shipped_at: datetime
    request_id: str = ""
    service: str = ""
    tracking_urls: tuple[str, ...] = ()
    location: str = ""
    notify_customer: bool = True

    def __post_init__(self) -> None:
        _tuple(self, "tracking_numbers", self.tracking_numbers)
        _tuple(self, "tracking_urls", self.tracking_urls)
        _tuple(self, "lines", self.lines)
        _aware(self, "shipped_at", self.shipped_at)


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelFulfillmentResult:
    external_id: str
    order_ref: str
    #: True when the channel already held this fulfillment (a replayed push).
    already_existed: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class TrackingEvent:
    tracking_number: str
    status: TrackingStatus
    occurred_at: datetime
    description: str = ""
    location: str = ""
    #: Why the parcel is in trouble, for exception and return events.
    exception: TrackingException | None = None
    #: The vendor's own status and detail code (e.g. ``TRANSIT/address_issue``), for support.
    carrier_status: str = ""
    carrier: str = ""

    def __post_init__(self) -> None:
        _set_field(self, "status", TrackingStatus(self.status))
        _aware(self, "occurred_at", self.occurred_at)
        if self.exception is not None:
            _set_field(self, "exception", TrackingException(self.exception))


@dataclasses.dataclass(frozen=True, slots=True)
class Parcel:
    """Integer units: grams and millimetres."""

    weight_g: int
    length_mm: int = 0
    width_mm: int = 0
    height_mm: int = 0

    def __post_init__(self) -> None:
        for name in ("weight_g", "length_mm", "width_mm", "height_mm"):
            _quantity(name, getattr(self, name))
        if self.weight_g == 0:
            raise ValueError("a parcel has weight")


@dataclasses.dataclass(frozen=True, slots=True)
class RateRequest:
    ship_from: Address
    ship_to: Address
    parcels: tuple[Parcel, ...]
    reference: str = ""
    #: Restrict the quote to these service levels (empty: all the carrier offers).
    service_levels: frozenset[ServiceLevel] = frozenset()

    def __post_init__(self) -> None:
        _tuple(self, "parcels", self.parcels)
        if not self.parcels:
            raise ValueError("a rate request needs at least one parcel")
        _set_field(self, "service_levels", frozenset(self.service_levels))


@dataclasses.dataclass(frozen=True, slots=True)
class Rate:
    rate_id: str
    carrier: str
    service: str
    service_level: ServiceLevel
    amount: Money
    estimated_days: int | None = None
    expires_at: datetime | None = None
    #: The vendor's service code (Shippo servicelevel token, EasyPost service name).
    service_code: str = ""
    #: The vendor's shipment the rate was quoted on (buying it may need that id).
    shipment_ref: str = ""
    #: When the vendor made the quote (bounds idempotency lookups of a later purchase).
    quoted_at: datetime | None = None

    def __post_init__(self) -> None:
        _set_field(self, "service_level", ServiceLevel(self.service_level))
        _aware(self, "expires_at", self.expires_at, optional=True)
        _aware(self, "quoted_at", self.quoted_at, optional=True)


@dataclasses.dataclass(frozen=True, slots=True)
class Label:
    label_id: str
    tracking_number: str
    carrier: str
    service: str
    cost: Money
    created_at: datetime
    label_url: str = ""
    label_format: str = "PDF"
    #: The key the purchase was made under; buying again with it returns this label.
    idempotency_key: str = ""
    status: LabelStatus = LabelStatus.PURCHASED
    #: The printable label (PDF/PNG bytes or ZPL text as bytes, per ``label_format``);
    #: empty when not downloaded (e.g. in listings).
    document: bytes = b""
    rate_id: str = ""
    shipment_ref: str = ""
    tracking_url: str = ""

    def __post_init__(self) -> None:
        _aware(self, "created_at", self.created_at)
        _set_field(self, "status", LabelStatus(self.status))
        if not isinstance(self.document, bytes):
            raise TypeError("document must be bytes")


@dataclasses.dataclass(frozen=True, slots=True)
class InboundLine:
    sku: str
    quantity: int
    lot: str = ""

    def __post_init__(self) -> None:
        _quantity("quantity", self.quantity)


@dataclasses.dataclass(frozen=True, slots=True)
class InboundShipment:
    """An advance shipping notice: stock on its way to a 3PL location."""

    reference: str
    location: str
    lines: tuple[InboundLine, ...]
    expected_at: datetime | None = None
    carrier: str = ""
    tracking_numbers: tuple[str, ...] = ()
    supplier: str = ""

    def __post_init__(self) -> None:
        _tuple(self, "lines", self.lines)
        _tuple(self, "tracking_numbers", self.tracking_numbers)
        if not self.lines:
            raise ValueError("an inbound shipment needs at least one line")
        _aware(self, "expected_at", self.expected_at, optional=True)


@dataclasses.dataclass(frozen=True, slots=True)
class InboundAck:
    external_id: str
    reference: str
    status: str = "awaiting"


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified delivery, parsed.

    ``event_id`` identifies the event across retried deliveries (dedupe by connection,
    topic and event id); ``delivery_id`` identifies this delivery when the vendor has one.
    ``order`` is set for topics that carry an order.
    """

    event_id: str
    topic: str
    occurred_at: datetime
    payload: Mapping[str, Any]
    delivery_id: str = ""
    order: Order | None = None
    #: Carrier topics: the tracking events the delivery carries, oldest first.
    tracking: tuple[TrackingEvent, ...] = ()

    def __post_init__(self) -> None:
        if not self.event_id:
            raise ValueError("event_id is required")
        _aware(self, "occurred_at", self.occurred_at)
        _readonly(self, "payload", self.payload)
        _tuple(self, "tracking", self.tracking)


@dataclasses.dataclass(frozen=True, slots=True)
class PullResult(Generic[T]):
    """One page of a pull.

    ``next_cursor`` is opaque to the platform: store it (in the same transaction as the
    page's items) and pass it back on the next call. ``has_more`` says whether to call again
    now; when false, ``next_cursor`` is where the next scheduled poll resumes.
    """

    items: tuple[T, ...]
    next_cursor: str | None
    has_more: bool

    def __post_init__(self) -> None:
        _tuple(self, "items", self.items)
        if self.has_more and self.next_cursor is None:
            raise ValueError("has_more needs a next_cursor")


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectorInfo:
    """What a plugin offers, returned by ``keel_connector_info``.

    ``settings_schema`` is a JSON Schema (draft 2020-12) object describing every field of a
    connection — settings and credentials together — from which the platform renders the
    connection form and validates input. ``secret_fields`` names the properties that are
    credentials: stored encrypted, rendered as password inputs, never shown again, never
    logged; they are passed to the factory as ``credentials``, the rest as ``settings``.
    """

    name: str
    kind: ConnectorKind
    version: str
    display_name: str
    capabilities: frozenset[Capability]
    settings_schema: Mapping[str, Any]
    secret_fields: frozenset[str] = frozenset()
    description: str = ""
    docs_url: str = ""
    #: Seconds the vendor waits for a webhook response before retrying (Shopify: 5).
    webhook_deadline_s: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _CONNECTOR_NAME.match(self.name):
            raise ValueError(
                f"connector name must match {_CONNECTOR_NAME.pattern}, got {self.name!r}"
            )
        kind = ConnectorKind(self.kind)
        _set_field(self, "kind", kind)
        capabilities = frozenset(Capability(c) for c in self.capabilities)
        unknown = capabilities - set(KIND_CAPABILITIES[kind])
        if unknown:
            raise ValueError(
                f"{self.name}: capabilities {sorted(unknown)} do not belong to kind {kind}"
            )
        _set_field(self, "capabilities", capabilities)
        _set_field(self, "secret_fields", frozenset(self.secret_fields))
        _readonly(self, "settings_schema", self.settings_schema)

    def methods(self) -> tuple[str, ...]:
        """Protocol methods the declared capabilities require."""
        table = KIND_CAPABILITIES[self.kind]
        return tuple(m for cap in sorted(self.capabilities) for m in table[cap])


# ---------------------------------------------------------------------------------------------


def to_primitive(value: Any) -> Any:
    """JSON-ready data: dataclasses to dicts, ``Decimal``/``datetime``/enums to strings,
    bytes to base64 text, tuples and sets to lists (sets sorted, so output is stable)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_primitive(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): to_primitive(v) for k, v in value.items()}
    if isinstance(value, frozenset | set):
        return sorted(to_primitive(v) for v in value)
    if isinstance(value, list | tuple):
        return [to_primitive(v) for v in value]
    return value
