"""ShipBay API v2 client behind Keel's 3PL protocol.

ShipBay (a fictional 3PL) speaks JSON over HTTPS:

- ``X-ShipBay-Key`` header authenticates; 401 when the key is revoked.
- Writes (``POST /v2/fulfillments``, ``POST /v2/inbounds``) accept an ``Idempotency-Key``:
  a replay returns the original object, so these POSTs are safe to retry.
- Lists (``GET /v2/stock``, ``GET /v2/shipments?updated_after=``) return
  ``{"data": [...], "next_cursor": ...}``.
- ``per_second`` requests per second per key; past it, ``429`` with ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from connectors.clock import Clock
from connectors.config import validate_connection
from connectors.cursor import PassCursor
from connectors.http import ApiClient, HttpContext
from connectors.ratelimit import SlidingWindowLimiter
from connectors.types import (
    ConnectorInfo,
    FulfillmentConfirmation,
    FulfillmentLine,
    FulfillmentOrderAck,
    FulfillmentRequest,
    InboundAck,
    InboundShipment,
    PullResult,
    StockLevel,
)


class ShipBayConnector:
    """One ShipBay account."""

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
        self.base_url: str = config["api_base_url"]
        self.per_second: int = config["requests_per_second"]
        self.page_size: int = config["page_size"]
        self.backfill = timedelta(days=config["backfill_days"])
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
                headers={"X-ShipBay-Key": self._key},
                secrets=[self._key],
                limiter=SlidingWindowLimiter(
                    limit=self.per_second,
                    window=1.0,
                    margin=0.05,
                    remaining_header="X-RateLimit-Remaining",
                ),
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def check_connection(self) -> None:
        self.client.request_json("GET", "/v2/account")

    def push_fulfillment_order(
        self, *, request: FulfillmentRequest, idempotency_key: str
    ) -> FulfillmentOrderAck:
        address = request.ship_to
        body = {
            "reference": request.request_id,
            "order_number": request.order_ref,
            "service": request.service_level.value,
            "ship_to": {
                "name": address.name,
                "street": [line for line in (address.line1, address.line2) if line],
                "city": address.city,
                "region": address.region,
                "postcode": address.postal_code,
                "country": address.country,
            },
            "items": [{"sku": line.sku, "qty": line.quantity} for line in request.lines],
        }
        created = self.client.request_json(
            "POST",
            "/v2/fulfillments",
            json_body=body,
            headers={"Idempotency-Key": idempotency_key},
            idempotent=True,  # ShipBay replays the original answer for the same key
        ).data
        return FulfillmentOrderAck(
            external_id=created["id"], request_id=request.request_id, status=created["status"]
        )

    def pull_stock_levels(self, *, cursor: str | None) -> PullResult[StockLevel]:
        params: dict[str, Any] = {"limit": self.page_size}
        if cursor:
            params["cursor"] = cursor
        page = self.client.request_json("GET", "/v2/stock", params=params).data
        now = self.clock.now()
        levels = tuple(
            StockLevel(
                sku=row["sku"],
                location=row["warehouse"],
                on_hand=int(row["on_hand"]),
                available=int(row["available"]),
                as_of=now,
            )
            for row in page["data"]
        )
        next_cursor = page.get("next_cursor")
        return PullResult(items=levels, next_cursor=next_cursor, has_more=bool(next_cursor))

    def pull_shipment_confirmations(
        self, *, cursor: str | None, since: datetime | None = None
    ) -> PullResult[FulfillmentConfirmation]:
        state = PassCursor.decode(cursor)
        now = self.clock.now()
        params: dict[str, Any] = {"limit": self.page_size}
        if state.mid_pass:
            params["cursor"] = state.next_page
        else:
            start = state.begin(default_since=now - self.backfill, updated_since=since, now=now)
            params["updated_after"] = start.isoformat()
        page = self.client.request_json("GET", "/v2/shipments", params=params).data
        shipments = tuple(
            FulfillmentConfirmation(
                external_id=row["id"],
                order_ref=row.get("order_number") or "",
                request_id=row["reference"],
                carrier=row["carrier"],
                tracking_numbers=(row["tracking_number"],),
                tracking_urls=(row["tracking_url"],) if row.get("tracking_url") else (),
                lines=tuple(FulfillmentLine(i["sku"], int(i["qty"])) for i in row["items"]),
                shipped_at=datetime.fromisoformat(row["shipped_at"]),
                location=row.get("warehouse") or "",
            )
            for row in page["data"]
        )
        state.see(datetime.fromisoformat(row["updated_at"]) for row in page["data"])
        has_more = state.advance(page.get("next_cursor"), now=now, overlap=timedelta(minutes=2))
        return PullResult(items=shipments, next_cursor=state.encode(), has_more=has_more)

    def push_inbound(self, *, shipment: InboundShipment, idempotency_key: str) -> InboundAck:
        created = self.client.request_json(
            "POST",
            "/v2/inbounds",
            json_body={
                "reference": shipment.reference,
                "warehouse": shipment.location,
                "expected_at": shipment.expected_at.isoformat() if shipment.expected_at else None,
                "items": [{"sku": line.sku, "qty": line.quantity} for line in shipment.lines],
            },
            headers={"Idempotency-Key": idempotency_key},
            idempotent=True,
        ).data
        return InboundAck(
            external_id=created["id"], reference=shipment.reference, status=created["status"]
        )
