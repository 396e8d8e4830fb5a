"""Generic 3PL connector for ShipBob-shaped REST APIs.

Endpoints (relative to ``api_base_url``, default ShipBob's ``https://api.shipbob.com/1.0``):

- ``POST /order`` — create a fulfillment order. ``reference_id`` is our request id; the 3PL
  refuses a second order with the same reference (422), so the POST is safe to retry and a
  replay is answered by looking the order up with ``GET /order?ReferenceIds=…``.
- ``GET /inventory?Page=&Limit=`` — stock per fulfillment center; ``next-page`` header.
- ``GET /shipment?UpdatedSince=&Limit=`` — shipments, oldest update first; ``next-page``
  header carries the continuation (used verbatim).
- ``POST /receiving`` — warehouse receiving order (ASN); no dedupe on the 3PL's side, so an
  existing one with the same purchase order number is looked up first.
- ``GET /channel`` — the cheap authenticated call behind "Test connection".

Authentication is a bearer token; every request carries ``shipbob_channel_id``. Requests are
paced client-side by a sliding window (``rate_limit_per_minute``, 150 by default, counted
per token) that also reads ``x-remaining-calls``; a 429's ``x-retry-after`` is honoured by
the SDK client.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from connectors.clock import Clock
from connectors.config import validate_connection
from connectors.cursor import PassCursor
from connectors.errors import PermanentError
from connectors.http import ApiClient, HttpContext
from connectors.ratelimit import SlidingWindowLimiter
from connectors.types import (
    Address,
    ConnectorInfo,
    FulfillmentConfirmation,
    FulfillmentLine,
    FulfillmentOrderAck,
    FulfillmentRequest,
    InboundAck,
    InboundShipment,
    OrderType,
    PullResult,
    StockLevel,
)


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise PermanentError(f"3PL timestamp without offset: {value!r}")
    return parsed


def _recipient(address: Address) -> dict[str, Any]:
    return {
        "name": address.name,
        "email": address.email,
        "phone_number": address.phone,
        "address": {
            "address1": address.line1,
            "address2": address.line2,
            "company_name": address.company,
            "city": address.city,
            "state": address.region,
            "zip_code": address.postal_code,
            "country": address.country,
        },
    }


class ThreePLConnector:
    """One 3PL account/channel. See the module docstring."""

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
        self.channel_id = str(config["channel_id"])
        self.page_size: int = config["page_size"]
        self.per_minute: int = config["rate_limit_per_minute"]
        self.shipping_methods: Mapping[str, str] = config["shipping_methods"]
        self.backfill = timedelta(days=config["shipments_backfill_days"])
        self.overlap = timedelta(seconds=config["poll_overlap_seconds"])
        self._token = credentials["access_token"]
        self._http = http
        self.clock = clock
        self._client: ApiClient | None = None
        origin = urlsplit(self.base_url)
        self._origin = f"{origin.scheme}://{origin.netloc}"

    @property
    def client(self) -> ApiClient:
        if self._client is None:
            self._client = self._http.client(
                name=self.info.name,
                base_url=self.base_url,
                headers={
                    "Authorization": f"Bearer {self._token}",
                    "shipbob_channel_id": self.channel_id,
                    "Accept": "application/json",
                },
                secrets=[self._token],
                limiter=SlidingWindowLimiter(
                    limit=self.per_minute, window=60.0, remaining_header="x-remaining-calls"
                ),
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def check_connection(self) -> None:
        self.client.request_json("GET", "/channel")

    def _absolute(self, next_page: str) -> str:
        # next-page is a path from the host root (it repeats the version prefix).
        return next_page if "://" in next_page else f"{self._origin}{next_page}"

    # -- fulfillment orders ---------------------------------------------------------------------

    def push_fulfillment_order(
        self, *, request: FulfillmentRequest, idempotency_key: str
    ) -> FulfillmentOrderAck:
        body = {
            "reference_id": request.request_id,
            "order_number": request.order_ref,
            "type": "B2B" if request.order_type == OrderType.WHOLESALE else "DTC",
            "shipping_method": self.shipping_methods.get(
                request.service_level.value, self.shipping_methods.get("standard", "Standard")
            ),
            "recipient": _recipient(request.ship_to),
            "products": [
                {"reference_id": line.sku, "quantity": line.quantity} for line in request.lines
            ],
        }
        if request.placed_at is not None:
            body["purchase_date"] = request.placed_at.isoformat()
        try:
            # The 3PL dedupes on reference_id, so repeating the POST cannot create a second
            # order: it is safe to retry after a 5xx or a timeout.
            created = self.client.request_json("POST", "/order", json_body=body, idempotent=True)
        except PermanentError as exc:
            if exc.status != 422:
                raise
            existing = self._find_order(request.request_id)
            if existing is None:
                raise
            return existing
        data = created.data or {}
        return FulfillmentOrderAck(
            external_id=str(data["id"]),
            request_id=request.request_id,
            status=str(data.get("status") or "accepted").lower(),
        )

    def _find_order(self, reference_id: str) -> FulfillmentOrderAck | None:
        found = self.client.request_json("GET", "/order", params={"ReferenceIds": reference_id})
        for order in found.data or ():
            if order.get("reference_id") == reference_id:
                return FulfillmentOrderAck(
                    external_id=str(order["id"]),
                    request_id=reference_id,
                    status=str(order.get("status") or "accepted").lower(),
                )
        return None

    # -- stock ----------------------------------------------------------------------------------

    def pull_stock_levels(self, *, cursor: str | None) -> PullResult[StockLevel]:
        if cursor:
            page = self.client.request_json("GET", self._absolute(cursor))
        else:
            page = self.client.request_json(
                "GET", "/inventory", params={"Page": 1, "Limit": self.page_size}
            )
        now = self.clock.now()
        levels = []
        for item in page.data or ():
            sku = item.get("sku") or str(item["id"])
            for center in item.get("fulfillable_quantity_by_fulfillment_center") or ():
                levels.append(
                    StockLevel(
                        sku=sku,
                        location=str(center["id"]),
                        on_hand=int(center.get("onhand_quantity") or 0),
                        available=int(center.get("fulfillable_quantity") or 0),
                        as_of=now,
                    )
                )
        next_page = page.response.headers.get("next-page") or None
        return PullResult(items=tuple(levels), next_cursor=next_page, has_more=bool(next_page))

    # -- shipments ------------------------------------------------------------------------------

    def pull_shipment_confirmations(
        self, *, cursor: str | None, since: datetime | None = None
    ) -> PullResult[FulfillmentConfirmation]:
        state = PassCursor.decode(cursor)
        now = self.clock.now()
        if state.mid_pass:
            page = self.client.request_json("GET", self._absolute(state.next_page or ""))
        else:
            start = state.begin(default_since=now - self.backfill, updated_since=since, now=now)
            page = self.client.request_json(
                "GET",
                "/shipment",
                params={"UpdatedSince": start.isoformat(), "Limit": self.page_size},
            )
        confirmations = []
        updated = []
        for shipment in page.data or ():
            stamp = _time(shipment.get("updated_at"))
            if stamp is not None:
                updated.append(stamp)
            confirmation = self._confirmation(shipment)
            if confirmation is not None:
                confirmations.append(confirmation)
        state.see(updated)
        next_page = page.response.headers.get("next-page") or None
        has_more = state.advance(next_page, now=now, overlap=self.overlap)
        return PullResult(items=tuple(confirmations), next_cursor=state.encode(), has_more=has_more)

    @staticmethod
    def _confirmation(shipment: Mapping[str, Any]) -> FulfillmentConfirmation | None:
        tracking = shipment.get("tracking") or {}
        shipped = _time(tracking.get("shipping_date") or shipment.get("actual_fulfillment_date"))
        if shipped is None or str(shipment.get("status", "")).lower() not in (
            "completed",
            "shipped",
            "delivered",
        ):
            return None  # not left the building yet
        location = shipment.get("location") or {}
        return FulfillmentConfirmation(
            external_id=str(shipment["id"]),
            order_ref=str(shipment.get("order_number") or shipment.get("order_id") or ""),
            request_id=str(shipment.get("reference_id") or ""),
            carrier=str(tracking.get("carrier") or ""),
            service=str(shipment.get("ship_option") or ""),
            tracking_numbers=(tracking["tracking_number"],)
            if tracking.get("tracking_number")
            else (),
            tracking_urls=(tracking["tracking_url"],) if tracking.get("tracking_url") else (),
            lines=tuple(
                FulfillmentLine(sku=str(p["reference_id"]), quantity=int(p["quantity"]))
                for p in shipment.get("products") or ()
                if int(p.get("quantity") or 0) > 0
            ),
            shipped_at=shipped,
            location=str(location.get("id") or ""),
        )

    # -- inbound --------------------------------------------------------------------------------

    def push_inbound(self, *, shipment: InboundShipment, idempotency_key: str) -> InboundAck:
        existing = self.client.request_json(
            "GET", "/receiving", params={"PurchaseOrderNumbers": shipment.reference}
        )
        for order in existing.data or ():
            if order.get("purchase_order_number") == shipment.reference:
                return InboundAck(
                    external_id=str(order["id"]),
                    reference=shipment.reference,
                    status=str(order.get("status") or "awaiting").lower(),
                )
        body = {
            "fulfillment_center": {"id": int(shipment.location)}
            if shipment.location.isdigit()
            else {"name": shipment.location},
            "package_type": "Package",
            "box_packaging_type": "EverythingInOneBox",
            "purchase_order_number": shipment.reference,
            "expected_arrival_date": shipment.expected_at.isoformat()
            if shipment.expected_at
            else None,
            "boxes": [
                {
                    "tracking_number": shipment.tracking_numbers[0]
                    if shipment.tracking_numbers
                    else "",
                    "box_items": [
                        {"sku": line.sku, "quantity": line.quantity, "lot_number": line.lot}
                        for line in shipment.lines
                    ],
                }
            ],
        }
        created = self.client.request_json("POST", "/receiving", json_body=body).data or {}
        return InboundAck(
            external_id=str(created["id"]),
            reference=shipment.reference,
            status=str(created.get("status") or "awaiting").lower(),
        )
