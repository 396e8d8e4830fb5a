"""A local fake of the ShipBay v2 API, for this plugin's tests and Keel's contract kit.

Shipped inside the package (not only in ``tests/``) so that anyone running this connector —
Keel's CI included — can run the contract kit against the same fake. It reproduces ShipBay's
documented behaviour: key authentication, idempotent writes (same key → original answer,
same key with another body → 422), cursor pagination in the body, invalid addresses → 400,
and a per-second request limit answered with ``429`` + ``Retry-After``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from connectors.clock import Clock
from connectors.fakeapi import FakeAPI, FakeRequest, FakeResponse

DEFAULT_SKUS = tuple(f"KEEL-{p:03d}-{s}" for p in range(10) for s in "SML")


def throttled(retry_after: float) -> FakeResponse:
    """ShipBay's 429."""
    return FakeResponse.json(
        {"error": {"code": "rate_limited", "message": "Too many requests"}},
        429,
        headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
    )


class FakeShipBay(FakeAPI):
    def __init__(
        self,
        *,
        clock: Clock | None = None,
        api_key: str = "sbk_live_0123456789abcdef",
        per_second: int = 5,
        skus: tuple[str, ...] = DEFAULT_SKUS,
        warehouses: tuple[str, ...] = ("SB-EAST", "SB-WEST"),
        stock: int = 80,
    ) -> None:
        super().__init__(clock=clock)
        self.api_key = api_key
        self.per_second = per_second
        self.key_revoked = False
        self._window_start: float | None = None
        self._window_count = 0
        self.stock = {(sku, wh): [stock, stock] for sku in skus for wh in warehouses}
        self.fulfillments: dict[str, dict[str, Any]] = {}
        self.inbounds: dict[str, dict[str, Any]] = {}
        self.shipments: list[dict[str, Any]] = []
        self._idempotency: dict[str, tuple[str, FakeResponse]] = {}
        self._next = 0
        self.route("GET", "/v2/account", lambda r: FakeResponse.json({"account": {"id": "acct_1"}}))
        self.route("POST", "/v2/fulfillments", self._create_fulfillment)
        self.route("POST", "/v2/inbounds", self._create_inbound)
        self.route("GET", "/v2/stock", self._stock)
        self.route("GET", "/v2/shipments", self._shipments)

    def _id(self, prefix: str) -> str:
        self._next += 1
        return f"{prefix}_{self._next:06d}"

    # -- test controls --------------------------------------------------------------------------

    def revoke_key(self) -> None:
        self.key_revoked = True

    def ship(self, reference: str, *, carrier: str = "UPS") -> dict[str, Any]:
        """ShipBay ships the fulfillment with this reference, now."""
        with self.lock:
            fulfillment = self.fulfillments[reference]
            now = self.clock.now().isoformat()
            shipment = {
                "id": self._id("shp"),
                "reference": reference,
                "order_number": fulfillment["order_number"],
                "fulfillment_id": fulfillment["id"],
                "carrier": carrier,
                "tracking_number": f"1Z{len(self.shipments) + 1:016d}",
                "tracking_url": "",
                "shipped_at": now,
                "updated_at": now,
                "warehouse": "SB-EAST",
                "items": fulfillment["items"],
            }
            self.shipments.append(shipment)
            fulfillment["status"] = "shipped"
            return shipment

    # -- cross-cutting --------------------------------------------------------------------------

    def before_route(self, request: FakeRequest) -> FakeResponse | None:
        if self.key_revoked or request.header("x-shipbay-key") != self.api_key:
            return FakeResponse.json({"error": {"code": "unauthorized"}}, 401)
        second = math.floor(request.at)
        if self._window_start != second:
            self._window_start, self._window_count = second, 0
        if self._window_count >= self.per_second:
            return throttled(second + 1 - request.at)
        self._window_count += 1
        return None

    def after_route(self, request: FakeRequest, response: FakeResponse) -> FakeResponse:
        response.headers["X-RateLimit-Remaining"] = str(self.per_second - self._window_count)
        return response

    def _idempotent(self, request: FakeRequest, create: Any) -> FakeResponse:
        key = request.header("idempotency-key")
        if not key:
            return FakeResponse.json({"error": {"code": "idempotency_key_required"}}, 400)
        fingerprint = hashlib.sha256(request.body).hexdigest()
        if key in self._idempotency:
            stored_fingerprint, response = self._idempotency[key]
            if stored_fingerprint != fingerprint:
                return FakeResponse.json({"error": {"code": "idempotency_key_reused"}}, 422)
            replay = FakeResponse(200, response.body, {**response.headers})
            replay.headers["Idempotent-Replayed"] = "true"
            return replay
        response = create(request.json())
        if response.status < 500:
            self._idempotency[key] = (fingerprint, response)
        return response

    # -- handlers -------------------------------------------------------------------------------

    def _create_fulfillment(self, request: FakeRequest) -> FakeResponse:
        def create(body: dict[str, Any]) -> FakeResponse:
            ship_to = body.get("ship_to") or {}
            if not (ship_to.get("street") and ship_to.get("postcode") and ship_to.get("country")):
                return FakeResponse.json({"error": {"code": "invalid_address"}}, 400)
            unknown = [
                i["sku"] for i in body.get("items", []) if (i["sku"], "SB-EAST") not in self.stock
            ]
            if unknown or not body.get("items"):
                return FakeResponse.json({"error": {"code": "unknown_sku", "skus": unknown}}, 422)
            fulfillment = {
                "id": self._id("ful"),
                "reference": body["reference"],
                "order_number": body.get("order_number"),
                "status": "received",
                "items": body["items"],
            }
            self.fulfillments[body["reference"]] = fulfillment
            return FakeResponse.json(fulfillment, 201)

        return self._idempotent(request, create)

    def _create_inbound(self, request: FakeRequest) -> FakeResponse:
        def create(body: dict[str, Any]) -> FakeResponse:
            inbound = {"id": self._id("inb"), "reference": body["reference"], "status": "expected"}
            self.inbounds[body["reference"]] = inbound
            return FakeResponse.json(inbound, 201)

        return self._idempotent(request, create)

    @staticmethod
    def _cursor(offset: int, since: str | None) -> str:
        raw = json.dumps({"o": offset, "s": since}).encode()
        return base64.urlsafe_b64encode(raw).decode()

    @staticmethod
    def _decode(cursor: str) -> tuple[int, str | None] | None:
        try:
            data = json.loads(base64.urlsafe_b64decode(cursor.encode()))
            return int(data["o"]), data["s"]
        except (ValueError, KeyError, TypeError):
            return None

    def _page(self, request: FakeRequest, rows: list[dict[str, Any]]) -> FakeResponse:
        limit = int(request.arg("limit", "50") or 50)
        since = request.arg("updated_after")
        cursor = request.arg("cursor")
        offset = 0
        if cursor:
            if since:
                return FakeResponse.json({"error": {"code": "cursor_with_filters"}}, 400)
            decoded = self._decode(cursor)
            if decoded is None:
                return FakeResponse.json({"error": {"code": "invalid_cursor"}}, 400)
            offset, since = decoded  # a cursor pins the filter of its first page
        if since:
            floor = datetime.fromisoformat(since)
            rows = [r for r in rows if datetime.fromisoformat(r["updated_at"]) >= floor]
        chunk = rows[offset : offset + limit]
        more = offset + limit < len(rows)
        return FakeResponse.json(
            {"data": chunk, "next_cursor": self._cursor(offset + limit, since) if more else None}
        )

    def _stock(self, request: FakeRequest) -> FakeResponse:
        rows = [
            {"sku": sku, "warehouse": wh, "on_hand": v[0], "available": v[1]}
            for (sku, wh), v in sorted(self.stock.items())
        ]
        return self._page(request, rows)

    def _shipments(self, request: FakeRequest) -> FakeResponse:
        rows = sorted(
            self.shipments, key=lambda s: (datetime.fromisoformat(s["updated_at"]), s["id"])
        )
        return self._page(request, rows)


@contextlib.contextmanager
def contract_harness() -> Iterator[Any]:
    """A started fake plus the :class:`connectors.testing.ContractHarness` describing it.

    Used by this package's tests and by anyone (Keel's CI included) who wants to run the
    contract kit against this connector.
    """
    import keel_shipbay
    from connectors.clock import VirtualClock
    from connectors.testing import ContractHarness
    from connectors.types import (
        Address,
        FulfillmentLine,
        FulfillmentRequest,
        InboundLine,
        InboundShipment,
    )

    clock = VirtualClock()
    with FakeShipBay(clock=clock) as fake:
        seeded = 0

        def seed(count: int) -> set[str]:
            nonlocal seeded
            ids = set()
            for _ in range(count):
                seeded += 1
                reference = f"SEED-{seeded}"
                fake.fulfillments[reference] = {
                    "id": f"ful_seed_{seeded}",
                    "reference": reference,
                    "order_number": f"#{seeded}",
                    "status": "received",
                    "items": [{"sku": "KEEL-000-S", "qty": 1}],
                }
                clock.advance(1)
                ids.add(fake.ship(reference)["id"])
            return ids

        yield ContractHarness(
            plugin=keel_shipbay,
            name=keel_shipbay.NAME,
            clock=clock,
            fake=fake,
            settings={"api_base_url": fake.url, "page_size": 10},
            credentials={"api_key": fake.api_key},
            seed_items=seed,
            page_items=25,
            pull=lambda c, cursor: c.pull_shipment_confirmations(cursor=cursor),
            probe=lambda c: c.check_connection(),
            throttle_response=throttled,
            revoke_credentials=fake.revoke_key,
            fulfillment_request=FulfillmentRequest(
                request_id="FR-contract",
                order_ref="#1",
                ship_to=Address(
                    name="Ada Lovelace",
                    line1="12 St James's Square",
                    city="London",
                    postal_code="SW1Y 4JH",
                    country="GB",
                ),
                lines=(FulfillmentLine("KEEL-001-M", 2),),
            ),
            count_created=lambda: len(fake.fulfillments),
            inbound_shipment=InboundShipment(
                reference="PO-contract-1",
                location="SB-EAST",
                lines=(InboundLine("KEEL-001-M", 24),),
            ),
            count_inbound=lambda: len(fake.inbounds),
        )
