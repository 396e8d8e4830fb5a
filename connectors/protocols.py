"""What a connector instance looks like, per kind.

``keel_connector_factory`` returns one instance per connection, built from that brand's
stored settings. The platform calls only the methods its :class:`~connectors.types.ConnectorInfo`
capabilities declare (``ConnectorInfo.methods()``); a connector need not implement the
others. Every method takes keyword arguments only, raises the errors in
:mod:`connectors.errors`, and may be called again with the same arguments after a crash:

- pulls are resumable from the cursor they returned,
- pushes are idempotent for the same request id / idempotency key (the connector uses the
  vendor's idempotency key or reference dedupe, or looks the object up before creating it).

Instances are used from one thread at a time; the platform builds a new one per task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from connectors.types import (
    AvailablePushResult,
    AvailableQuantity,
    ChannelFulfillmentResult,
    ConnectorInfo,
    FulfillmentConfirmation,
    FulfillmentOrderAck,
    FulfillmentRequest,
    InboundAck,
    InboundShipment,
    Label,
    Listing,
    Order,
    PullResult,
    Rate,
    RateRequest,
    StockLevel,
    TrackingEvent,
    WebhookEvent,
)

__all__ = [
    "CarrierConnector",
    "CarrierLabels",
    "CarrierWebhooks",
    "ChannelConnector",
    "Connector",
    "ThreePLConnector",
]


@runtime_checkable
class Connector(Protocol):
    """Methods every connector has."""

    info: ConnectorInfo

    def check_connection(self) -> None:
        """One cheap authenticated request ("Test connection" in the UI).

        Returns quietly when the credentials work; raises :class:`~connectors.errors.AuthError`
        when they do not, other connector errors for anything else.
        """
        ...

    def close(self) -> None:
        """Release network resources. Safe to call twice."""
        ...


@runtime_checkable
class ChannelConnector(Connector, Protocol):
    """A sales channel: Shopify, Amazon, a wholesale portal..."""

    def pull_orders(
        self, *, cursor: str | None, updated_since: datetime | None = None
    ) -> PullResult[Order]:
        """One page of orders created or updated since the cursor.

        ``cursor`` is what the previous call returned (``None`` the first time, when
        ``updated_since`` — or the connector's configured backfill — says where to start).
        An order may appear again in later pages or polls; the platform upserts by external id.
        """
        ...

    def verify_webhook(self, *, headers: Mapping[str, str], body: bytes) -> None:
        """Check a delivery's signature over the exact raw bytes received.

        Header names are case-insensitive. Raises
        :class:`~connectors.errors.WebhookVerificationError`; returns ``None`` when valid.
        Fast and offline: it runs inside the request, before the body is stored as trusted.
        """
        ...

    def parse_webhook(self, *, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        """Turn a verified delivery into a :class:`WebhookEvent` (runs asynchronously)."""
        ...

    def push_available(self, *, levels: Sequence[AvailableQuantity]) -> list[AvailablePushResult]:
        """Publish available quantities; one result per input, in order.

        Uses the channel's compare-and-swap where it has one. A rejected item does not fail
        the others.
        """
        ...

    def push_fulfillment(self, *, shipment: FulfillmentConfirmation) -> ChannelFulfillmentResult:
        """Mark the shipment's lines fulfilled on the channel, with tracking.

        ``shipment.order_ref`` and each line's ``external_line_id`` are the channel's ids.
        Pushing a shipment the channel already holds returns it with ``already_existed``.
        """
        ...

    def list_listings(self, *, cursor: str | None) -> PullResult[Listing]:
        """One page of the channel's sellable variants, for SKU mapping."""
        ...


@runtime_checkable
class ThreePLConnector(Connector, Protocol):
    """A third-party warehouse or WMS."""

    def push_fulfillment_order(
        self, *, request: FulfillmentRequest, idempotency_key: str
    ) -> FulfillmentOrderAck:
        """Submit a fulfillment order. Submitting the same request again returns the
        existing order's acknowledgement, never a second order."""
        ...

    def pull_stock_levels(self, *, cursor: str | None) -> PullResult[StockLevel]:
        """One page of the 3PL's current stock; a full pass is a snapshot."""
        ...

    def pull_shipment_confirmations(
        self, *, cursor: str | None, since: datetime | None = None
    ) -> PullResult[FulfillmentConfirmation]:
        """One page of shipments that left the warehouse since the cursor (or ``since``)."""
        ...

    def push_inbound(self, *, shipment: InboundShipment, idempotency_key: str) -> InboundAck:
        """Announce an inbound shipment (ASN / warehouse receiving order). Idempotent."""
        ...


@runtime_checkable
class CarrierConnector(Connector, Protocol):
    """A parcel carrier or aggregator."""

    def quote_rates(self, *, request: RateRequest) -> list[Rate]:
        """Rates for the shipment, cheapest first."""
        ...

    def buy_label(self, *, rate: Rate, request: RateRequest, idempotency_key: str) -> Label:
        """Buy a label for a quoted rate. The same key returns the same label, never a second
        purchase (the carrier's idempotency key, or a lookup before buying)."""
        ...

    def void_label(self, *, label_id: str) -> None:
        """Void (refund) an unused label. Voiding twice is not an error.

        Carriers may decide refunds later: ``get_label`` (``labels.list``) then reports
        ``LabelStatus.VOID_PENDING`` until the label is ``VOIDED`` or ``VOID_REJECTED``.
        """
        ...

    def track(self, *, tracking_number: str) -> list[TrackingEvent]:
        """Tracking events so far, oldest first. Carrier trouble (bad address, damage,
        return to sender...) comes as ``EXCEPTION``/``RETURNED`` events with
        ``TrackingEvent.exception`` set."""
        ...


# Optional carrier methods, by capability. They are separate protocols so that a carrier
# without them still satisfies ``isinstance(x, CarrierConnector)``.


@runtime_checkable
class CarrierLabels(Protocol):
    """``labels.list``: the labels bought on the account, and one label's current state."""

    def list_labels(self, *, cursor: str | None) -> PullResult[Label]:
        """One page of purchased labels (documents not downloaded: ``Label.document`` empty).

        Resumable from the returned cursor like any pull; a label may repeat across pages.
        """
        ...

    def get_label(self, *, label_id: str) -> Label:
        """The label as the carrier holds it now: ``status`` (pending purchase, purchased,
        refund pending/refunded/rejected) and, while usable, its document."""
        ...


@runtime_checkable
class CarrierWebhooks(Protocol):
    """``webhooks`` on a carrier: tracking updates pushed by the vendor.

    Same contract as the channel methods of the same names: ``verify_webhook`` is offline
    and fast over the raw bytes; ``parse_webhook`` returns a :class:`WebhookEvent` whose
    ``tracking`` holds the canonical events (``order`` stays ``None``).
    """

    def verify_webhook(self, *, headers: Mapping[str, str], body: bytes) -> None: ...

    def parse_webhook(self, *, headers: Mapping[str, str], body: bytes) -> WebhookEvent: ...
