"""A fake ShipBob-shaped 3PL API (served under ``/1.0``).

Documented behaviour reproduced (limits are constructor arguments):

- sliding-window rate limit: ``limit`` requests (150) in any ``window`` seconds (60), per
  token; answers carry ``x-remaining-calls``; past the limit, ``429`` with
  ``x-retry-after`` (whole seconds until the oldest request leaves the window) and the body
  ``{"statusCode": 429, "message": "Rate limit is exceeded. Try again in N seconds."}``;
- bearer-token auth (401 after :meth:`FakeThreePL.revoke_token`), ``shipbob_channel_id``
  required on writes;
- ``POST /order`` validates the recipient address (400 on an invalid one), refuses a second
  order with the same ``reference_id`` (422) and records every attempt in ``intake``;
- ``GET /inventory`` paginated with ``Page``/``Limit`` and a ``next-page`` header;
- ``GET /shipment`` ordered by last update, continued through an opaque ``Cursor`` in the
  ``next-page`` header (keyset, so updates during a pass never make it skip a shipment);
- ``POST /receiving`` / ``GET /receiving?PurchaseOrderNumbers=``.

:meth:`FakeThreePL.ship` turns an accepted order into a shipment, as the warehouse would.
"""

from __future__ import annotations

import base64
import collections
import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from connectors.clock import Clock
from connectors.fakeapi import FakeAPI, FakeRequest, FakeResponse

PREFIX = "/1.0"
DEFAULT_CENTERS = ((10, "Moreno Valley (CA)"), (11, "Cicero (IL)"))


def throttled(retry_after: float) -> FakeResponse:
    """ShipBob's 429 for "try again in ``retry_after`` seconds"."""
    seconds = max(1, math.ceil(retry_after))
    return FakeResponse.json(
        {"statusCode": 429, "message": f"Rate limit is exceeded. Try again in {seconds} seconds."},
        429,
        headers={"x-retry-after": str(seconds), "x-remaining-calls": "0"},
    )


class FakeThreePL(FakeAPI):
    def __init__(
        self,
        *,
        clock: Clock | None = None,
        access_token: str = "shipbob_fake_pat_000000000001",
        channel_id: int = 4242,
        limit: int = 150,
        window: float = 60.0,
        max_page: int = 250,
        centers: Iterable[tuple[int, str]] = DEFAULT_CENTERS,
        skus: Iterable[str] = tuple(f"KEEL-{p:03d}-{s}" for p in range(10) for s in "SML"),
        stock: int = 100,
    ) -> None:
        super().__init__(clock=clock)
        self.access_token = access_token
        self.channel_id = channel_id
        self.limit = limit
        self.window = window
        self.max_page = max_page
        self.centers = tuple(centers)
        self.token_revoked = False
        self._admitted: collections.deque[float] = collections.deque()
        self.skus = list(skus)
        # inventory[sku][center] = [on_hand, fulfillable]
        self.inventory: dict[str, dict[int, list[int]]] = {
            sku: {cid: [stock, stock] for cid, _ in self.centers} for sku in self.skus
        }
        self.orders: dict[str, dict[str, Any]] = {}
        self.intake: list[dict[str, Any]] = []  # every POST /order body, accepted or not
        self.shipments: list[dict[str, Any]] = []
        self.receiving: dict[str, dict[str, Any]] = {}
        self._ids = 100_000

        self.route("GET", PREFIX + "/channel", self._channels)
        self.route("POST", PREFIX + "/order", self._create_order)
        self.route("GET", PREFIX + "/order", self._orders)
        self.route("GET", PREFIX + "/inventory", self._inventory)
        self.route("GET", PREFIX + "/shipment", self._shipments)
        self.route("POST", PREFIX + "/receiving", self._create_receiving)
        self.route("GET", PREFIX + "/receiving", self._receivings)

    @property
    def base_url(self) -> str:
        return self.url + PREFIX

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    # -- test controls --------------------------------------------------------------------------

    def revoke_token(self) -> None:
        self.token_revoked = True

    def throttle_next(self, retry_after: float = 25, times: int = 1) -> None:
        self.fail_next(throttled(retry_after), times)

    def ship(
        self,
        reference_id: str,
        *,
        tracking_number: str | None = None,
        carrier: str = "USPS",
        center: int | None = None,
    ) -> dict[str, Any]:
        """The warehouse ships the whole order now; stock leaves the center."""
        with self.lock:
            order = self.orders[reference_id]
            center = center if center is not None else self.centers[0][0]
            now = self.clock.now()
            for product in order["products"]:
                level = self.inventory[product["reference_id"]][center]
                level[0] -= product["quantity"]
            shipment_id = self._next_id()
            shipment = {
                "id": shipment_id,
                "order_id": order["id"],
                "order_number": order["order_number"],
                "reference_id": reference_id,
                "status": "Completed",
                "ship_option": order["shipping_method"],
                "location": {"id": center, "name": dict(self.centers)[center]},
                "tracking": {
                    "carrier": carrier,
                    "tracking_number": tracking_number or f"9400{shipment_id:018d}",
                    "tracking_url": f"https://tools.usps.com/go/TrackConfirmAction?tLabels={shipment_id}",
                    "shipping_date": now.isoformat(),
                },
                "products": [
                    {"reference_id": p["reference_id"], "quantity": p["quantity"]}
                    for p in order["products"]
                ],
                "updated_at": now.isoformat(),
            }
            order["status"] = "Completed"
            self.shipments.append(shipment)
            return shipment

    def touch_shipment(self, shipment_id: int) -> None:
        """The 3PL updates a shipment (e.g. a tracking correction): it moves to the end."""
        with self.lock:
            for shipment in self.shipments:
                if shipment["id"] == shipment_id:
                    shipment["updated_at"] = self.clock.now().isoformat()

    # -- cross-cutting --------------------------------------------------------------------------

    def before_route(self, request: FakeRequest) -> FakeResponse | None:
        auth = request.header("authorization") or ""
        if self.token_revoked or auth != f"Bearer {self.access_token}":
            return FakeResponse.json({"message": "Authorization has been denied."}, 401)
        now = request.at
        while self._admitted and self._admitted[0] <= now - self.window:
            self._admitted.popleft()
        if len(self._admitted) >= self.limit:
            return throttled(self._admitted[0] + self.window - now)
        self._admitted.append(now)
        if request.method == "POST" and request.header("shipbob_channel_id") != str(
            self.channel_id
        ):
            return FakeResponse.json({"shipbob_channel_id": ["is required"]}, 400)
        return None

    def after_route(self, request: FakeRequest, response: FakeResponse) -> FakeResponse:
        response.headers["x-remaining-calls"] = str(max(0, self.limit - len(self._admitted)))
        return response

    # -- handlers -------------------------------------------------------------------------------

    def _channels(self, request: FakeRequest) -> FakeResponse:
        return FakeResponse.json(
            [{"id": self.channel_id, "name": "Keel", "scopes": ["orders_write"]}]
        )

    def _create_order(self, request: FakeRequest) -> FakeResponse:
        try:
            body = request.json()
        except ValueError:
            return FakeResponse.json({"message": "invalid JSON"}, 400)
        self.intake.append(body)
        reference = body.get("reference_id")
        if not reference:
            return FakeResponse.json({"reference_id": ["is required"]}, 422)
        address = (body.get("recipient") or {}).get("address") or {}
        if not all(address.get(k) for k in ("address1", "city", "zip_code", "country")):
            return FakeResponse.json({"recipient.address": ["Address is invalid"]}, 400)
        if reference in self.orders:
            return FakeResponse.json(
                {"reference_id": ["An order with this reference id already exists"]}, 422
            )
        products = body.get("products") or []
        unknown = [
            p.get("reference_id") for p in products if p.get("reference_id") not in self.inventory
        ]
        if not products or unknown:
            return FakeResponse.json({"products": [f"unknown products: {unknown}"]}, 422)
        for product in products:
            level = self.inventory[product["reference_id"]][self.centers[0][0]]
            level[1] -= int(product["quantity"])
        order = {
            "id": self._next_id(),
            "reference_id": reference,
            "order_number": body.get("order_number"),
            "status": "Processing",
            "type": body.get("type", "DTC"),
            "shipping_method": body.get("shipping_method", "Standard"),
            "recipient": body["recipient"],
            "products": [
                {"reference_id": p["reference_id"], "quantity": int(p["quantity"])}
                for p in products
            ],
            "created_date": self.clock.now().isoformat(),
        }
        self.orders[reference] = order
        return FakeResponse.json(order, 201)

    def _orders(self, request: FakeRequest) -> FakeResponse:
        wanted = set((request.arg("ReferenceIds") or "").split(",")) - {""}
        return FakeResponse.json([o for r, o in self.orders.items() if not wanted or r in wanted])

    def _page(self, request: FakeRequest) -> tuple[int, int] | FakeResponse:
        try:
            page = int(request.arg("Page", "1") or 1)
            limit = int(request.arg("Limit", "50") or 50)
        except ValueError:
            return FakeResponse.json({"message": "Page and Limit must be integers"}, 400)
        if page < 1 or not 1 <= limit <= self.max_page:
            return FakeResponse.json({"message": "Page or Limit out of range"}, 400)
        return page, limit

    def _inventory(self, request: FakeRequest) -> FakeResponse:
        parsed = self._page(request)
        if isinstance(parsed, FakeResponse):
            return parsed
        page, limit = parsed
        names = dict(self.centers)
        items = []
        for index, sku in enumerate(self.skus):
            centers = self.inventory[sku]
            items.append(
                {
                    "id": 70_000 + index,
                    "name": sku,
                    "sku": sku,
                    "is_active": True,
                    "total_onhand_quantity": sum(v[0] for v in centers.values()),
                    "total_fulfillable_quantity": sum(v[1] for v in centers.values()),
                    "fulfillable_quantity_by_fulfillment_center": [
                        {
                            "id": cid,
                            "name": names[cid],
                            "onhand_quantity": v[0],
                            "fulfillable_quantity": v[1],
                        }
                        for cid, v in centers.items()
                    ],
                }
            )
        chunk = items[(page - 1) * limit : page * limit]
        headers = {
            "total-pages": str(max(1, math.ceil(len(items) / limit))),
            "page-number": str(page),
        }
        if page * limit < len(items):
            headers["next-page"] = f"{PREFIX}/inventory?Page={page + 1}&Limit={limit}"
        return FakeResponse.json(chunk, headers=headers)

    @staticmethod
    def _encode(key: tuple[str, int], since: str | None, limit: int) -> str:
        raw = json.dumps({"k": list(key), "s": since, "l": limit}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _shipments(self, request: FakeRequest) -> FakeResponse:
        cursor = request.arg("Cursor")
        if cursor:
            try:
                state = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
                after, since, limit = tuple(state["k"]), state["s"], int(state["l"])
            except (ValueError, KeyError, TypeError):
                return FakeResponse.json({"message": "invalid Cursor"}, 400)
        else:
            after, since = None, request.arg("UpdatedSince")
            try:
                limit = int(request.arg("Limit", "50") or 50)
                if since:
                    datetime.fromisoformat(since)
            except ValueError:
                return FakeResponse.json({"message": "invalid UpdatedSince or Limit"}, 400)
        since_dt = datetime.fromisoformat(since) if since else None

        def key(s: Mapping[str, Any]) -> tuple[str, int]:
            stamp = datetime.fromisoformat(s["updated_at"])
            return (f"{stamp.timestamp():020.6f}", s["id"])

        rows = sorted(
            (
                s
                for s in self.shipments
                if since_dt is None or datetime.fromisoformat(s["updated_at"]) >= since_dt
            ),
            key=key,
        )
        if after is not None:
            rows = [s for s in rows if key(s) > after]
        chunk = rows[:limit]
        headers = {}
        if len(rows) > limit:
            headers["next-page"] = (
                f"{PREFIX}/shipment?Cursor={self._encode(key(chunk[-1]), since, limit)}"
            )
        return FakeResponse.json(chunk, headers=headers)

    def _create_receiving(self, request: FakeRequest) -> FakeResponse:
        body = request.json()
        reference = body.get("purchase_order_number") or ""
        boxes = body.get("boxes") or []
        if not boxes or not all(box.get("box_items") for box in boxes):
            return FakeResponse.json({"boxes": ["at least one box with items"]}, 422)
        order = {
            "id": self._next_id(),
            "purchase_order_number": reference,
            "status": "Awaiting",
            "boxes": boxes,
            "fulfillment_center": body.get("fulfillment_center"),
        }
        self.receiving[f"{reference}#{order['id']}"] = order
        return FakeResponse.json(order, 201)

    def _receivings(self, request: FakeRequest) -> FakeResponse:
        wanted = set((request.arg("PurchaseOrderNumbers") or "").split(",")) - {""}
        return FakeResponse.json(
            [
                o
                for o in self.receiving.values()
                if not wanted or o["purchase_order_number"] in wanted
            ]
        )
