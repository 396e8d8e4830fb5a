"""A fake Shopify Admin API (REST + the GraphQL inventory calls) and a webhook sender.

Documented behaviour reproduced (every limit is a constructor argument):

- REST leaky bucket: ``bucket_size`` requests (40), leaking ``leak_rate`` per second (2);
  every answer carries ``X-Shopify-Shop-Api-Call-Limit: used/size``; an overflowing request
  gets ``429`` with ``Retry-After`` (seconds, as Shopify sends ``2.0``) and is not served.
- Cursor pagination: ``orders.json`` / ``products.json`` answer at most ``limit`` (≤ 250)
  items and a ``Link`` header with ``rel="next"`` (and ``rel="previous"``) URLs carrying an
  opaque ``page_info``; a request combining ``page_info`` with filters is refused (400), as
  is an unknown or expired ``page_info`` — so only verbatim use of the link works.
- ``status`` defaults to ``open`` (``any`` for everything); ``updated_at_min`` is inclusive.
- Auth: ``X-Shopify-Access-Token`` must match; :meth:`FakeShopify.revoke_token` makes every
  call answer 401 (an uninstalled app / rotated token).
- GraphQL cost bucket (``graphql_capacity``/``graphql_restore_rate``): a query costing more
  than is available answers 200 with a ``THROTTLED`` error and ``throttleStatus``.
- ``inventorySetQuantities`` compare-and-swap, all-or-nothing, by the API version in the
  path: before ``2026-01`` ``compareQuantity`` (``COMPARE_QUANTITY_STALE`` when the stored
  quantity differs; ``ignoreCompareQuantity`` skips it); from ``2026-01`` ``changeFromQuantity``
  overrides both (``null`` skips the check, a mismatch is ``CHANGE_FROM_QUANTITY_STALE``);
  from ``2026-04`` ``changeFromQuantity`` is mandatory, ``compareQuantity`` and
  ``ignoreCompareQuantity`` no longer exist, and the mutation needs an ``@idempotent`` key
  (from ``2026-01`` a repeated key replays the first result; the same key with other input
  is ``IDEMPOTENCY_KEY_PARAMETER_MISMATCH``). :meth:`interleave_sales` simulates a sale
  landing between a client's read and its write; :meth:`change_available` changes a
  quantity behind the client's back (a sale or an admin edit); :meth:`add_orders_for`
  places orders for one SKU and, like Shopify, takes them off the available quantity.
- Fulfillment orders and ``POST fulfillments.json`` with ``line_items_by_fulfillment_order``.

Orders are generated deterministically from ``seed`` and rendered to JSON once, so a 50,000
order backfill is served from memory quickly. Faults come from :meth:`FakeAPI.fail_next`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import random
import re
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx

from connectors.clock import Clock
from connectors.fakeapi import FakeAPI, FakeRequest, FakeResponse
from connectors.shopify.webhooks import sign

SHOP_TZ = timezone(timedelta(hours=-4))
FIRST_NAMES = ("Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Ken", "Radia")
LAST_NAMES = ("Lovelace", "Hopper", "Torvalds", "Hamilton", "Turing", "Liskov", "Thompson")
CITIES = (
    ("Brooklyn", "NY", "11201"),
    ("Austin", "TX", "73301"),
    ("Portland", "OR", "97201"),
    ("Denver", "CO", "80202"),
    ("Chicago", "IL", "60601"),
)
SHIPPING = (
    ("Standard", "Standard Shipping", "5.00"),
    ("Standard", "Standard Shipping", "5.00"),
    ("Standard", "Standard Shipping", "5.00"),
    ("EXPRESS", "Express 2-Day", "14.00"),
    ("OVERNIGHT", "Overnight", "29.00"),
)
SIZES = ("S", "M", "L")
_VERSION = re.compile(r"^/admin/api/([0-9-]+)/")
INVALID_TOKEN = {
    "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
}


def _ts(value: datetime) -> str:
    return value.astimezone(SHOP_TZ).isoformat()


class FakeShopify(FakeAPI):
    """See the module docstring. ``orders`` base orders exist from the start, placed
    ``order_spacing`` apart and ending just before the clock's current time."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        shop: str = "keel-test.myshopify.com",
        access_token: str = "shpat_fake_access_token_0001",
        api_version: str = "2024-10",
        orders: int = 0,
        seed: int = 7,
        products: int = 10,
        bucket_size: int = 40,
        leak_rate: float = 2.0,
        retry_after: float | None = None,
        max_limit: int = 250,
        graphql_capacity: float = 1000.0,
        graphql_restore_rate: float = 50.0,
        graphql_cost: float = 10.0,
        order_spacing: timedelta = timedelta(minutes=3),
        location_id: int = 1001,
        currency: str = "USD",
    ) -> None:
        super().__init__(clock=clock)
        self.shop = shop
        self.access_token = access_token
        self.api_version = api_version
        self.seed = seed
        self.bucket_size = bucket_size
        self.leak_rate = leak_rate
        self.retry_after = retry_after
        self.max_limit = max_limit
        self.graphql_capacity = graphql_capacity
        self.graphql_restore_rate = graphql_restore_rate
        self.graphql_cost = graphql_cost
        self.location_id = location_id
        self.currency = currency
        self.token_revoked = False
        self.page_info_generation = 0
        self._level = 0.0
        self._level_at: float | None = None
        self._gql_available = graphql_capacity
        self._gql_at: float | None = None
        self._sales_before_write = 0
        # Products: `products` × 3 sizes, each variant stocked at the default location.
        self.variants: list[dict[str, Any]] = []
        rng = random.Random(seed)
        for p in range(products):
            for s, size in enumerate(SIZES):
                self.variants.append(
                    {
                        "product_id": 7_000_000 + p,
                        "id": 8_000_000 + p * 10 + s,
                        "inventory_item_id": 9_000_000 + p * 10 + s,
                        "sku": f"KEEL-{p:03d}-{size}",
                        "title": size,
                        "product_title": f"Keel Tee {p:03d}",
                        "price": f"{rng.randint(18, 60)}.00",
                    }
                )
        self.inventory: dict[tuple[int, int], int] = {
            (v["inventory_item_id"], location_id): 50 for v in self.variants
        }
        self.inventory_writes: list[dict[str, Any]] = []
        #: Every inventorySetQuantities answer: {"version", "outcome", "codes"}.
        self.inventory_attempts: list[dict[str, Any]] = []
        self._idempotency: dict[str, tuple[str, dict[str, Any]]] = {}
        # Orders, as parallel arrays indexed by position (= id order).
        start = self.clock.now() - order_spacing * (orders + 1)
        self._order_start = start
        self._order_spacing = order_spacing
        self._ids: list[int] = []
        self._updated: list[float] = []
        self._bodies: list[bytes | None] = []
        self._overrides: dict[int, dict[str, Any]] = {}
        self._index: dict[int, int] = {}
        for i in range(orders):
            self._append(start + order_spacing * i)
        self.fulfilled: dict[int, dict[int, int]] = {}
        self.fulfillments: dict[int, list[dict[str, Any]]] = {}

        api = r"/admin/api/(?P<version>[0-9-]+)"
        self.route("GET", api + r"/shop\.json", self._shop)
        self.route("GET", api + r"/orders\.json", self._orders)
        self.route("GET", api + r"/orders/(?P<id>\d+)\.json", self._order)
        self.route(
            "GET", api + r"/orders/(?P<id>\d+)/fulfillment_orders\.json", self._fulfillment_orders
        )
        self.route("GET", api + r"/orders/(?P<id>\d+)/fulfillments\.json", self._fulfillments)
        self.route("POST", api + r"/fulfillments\.json", self._create_fulfillment)
        self.route("GET", api + r"/products\.json", self._products)
        self.route("POST", api + r"/graphql\.json", self._graphql)

    # -- test controls --------------------------------------------------------------------------

    def revoke_token(self) -> None:
        """Every later call answers 401, as after an app uninstall or token rotation."""
        self.token_revoked = True

    def expire_page_info(self) -> None:
        """Invalidate every ``page_info`` handed out so far."""
        with self.lock:
            self.page_info_generation += 1

    def throttle_next(self, retry_after: float = 2.0, times: int = 1) -> None:
        """The next ``times`` requests answer 429 with ``Retry-After: retry_after``."""
        self.fail_next(throttled_response(retry_after), times)

    def consume(self, calls: int) -> None:
        """Spend ``calls`` of the REST bucket now, as another worker or app would."""
        with self.lock:
            now = self.clock.monotonic()
            if self._level_at is not None:
                self._level = max(0.0, self._level - (now - self._level_at) * self.leak_rate)
            self._level_at = now
            self._level = min(float(self.bucket_size), self._level + calls)

    def drain_graphql(self) -> None:
        """Empty the GraphQL cost bucket (someone else spent it)."""
        with self.lock:
            self._gql_available = 0.0
            self._gql_at = self.clock.monotonic()

    def interleave_sales(self, count: int) -> None:
        """Before each of the next ``count`` inventory writes, sell one unit of the first
        item in the write (so the client's compareQuantity is stale)."""
        with self.lock:
            self._sales_before_write = count

    def change_available(self, inventory_item_id: int, delta: int) -> int:
        """Change an available quantity behind the client's back (a sale Keel has not
        ingested yet, a merchant's edit); returns the new quantity."""
        with self.lock:
            key = (inventory_item_id, self.location_id)
            self.inventory[key] += delta
            return self.inventory[key]

    def variant_for(self, sku: str) -> dict[str, Any]:
        return next(v for v in self.variants if v["sku"] == sku)

    def add_orders_for(self, sku: str, count: int, *, quantity: int = 1) -> list[int]:
        """Place ``count`` orders of one line (``quantity`` × ``sku``) now. Shopify takes
        each order's units off the location's available quantity, so the quantity Keel
        last published is stale afterwards."""
        variant = self.variant_for(sku)
        with self.lock:
            ids = self.add_orders(count)
            for order_id in ids:
                index = self._index[order_id]
                base = self._base_order(index)
                price = variant["price"]
                line = {
                    **base["line_items"][0],
                    "variant_id": variant["id"],
                    "product_id": variant["product_id"],
                    "sku": variant["sku"],
                    "title": variant["product_title"],
                    "variant_title": variant["title"],
                    "quantity": quantity,
                    "price": price,
                    "fulfillable_quantity": quantity,
                }
                subtotal = f"{int(price.split('.')[0]) * quantity}.00"
                base.update(
                    line_items=[line],
                    subtotal_price=subtotal,
                    total_tax="0.00",
                    total_price=f"{int(price.split('.')[0]) * quantity + 5}.00",
                    shipping_lines=[
                        {"code": "Standard", "title": "Standard Shipping", "price": "5.00"}
                    ],
                    total_shipping_price_set={
                        "shop_money": {"amount": "5.00", "currency_code": self.currency}
                    },
                )
                self._overrides[index] = base
                self._bodies[index] = None
                key = (variant["inventory_item_id"], self.location_id)
                if key in self.inventory:
                    self.inventory[key] -= quantity
            return ids

    def prerender(self) -> None:
        """Render every order's JSON now, so serving pages costs what Shopify's would
        (benchmarks measure the client, not the fake's order generator)."""
        with self.lock:
            for index in range(len(self._ids)):
                self._body(index)

    @property
    def order_ids(self) -> list[int]:
        with self.lock:
            return list(self._ids)

    def add_orders(self, count: int) -> list[int]:
        """Place ``count`` new orders now (a millisecond apart); returns their ids."""
        with self.lock:
            now = self.clock.now()
            first = len(self._ids)
            for k in range(count):
                self._append(now + timedelta(milliseconds=k))
            return self._ids[first:]

    def update_order(self, order_id: int, **fields: Any) -> dict[str, Any]:
        """Change an order as a merchant would; ``updated_at`` becomes now."""
        with self.lock:
            index = self._index[order_id]
            order = dict(self.order(order_id))
            order.update(fields)
            now = self.clock.now()
            order["updated_at"] = _ts(now)
            self._overrides[index] = order
            self._updated[index] = now.timestamp()
            self._bodies[index] = None
            return order

    def cancel_order(self, order_id: int) -> dict[str, Any]:
        return self.update_order(
            order_id, cancelled_at=_ts(self.clock.now()), cancel_reason="customer"
        )

    def order(self, order_id: int) -> dict[str, Any]:
        with self.lock:
            index = self._index[order_id]
            if index in self._overrides:
                return self._overrides[index]
            return self._base_order(index)

    def set_available(self, inventory_item_id: int, quantity: int) -> None:
        with self.lock:
            self.inventory[(inventory_item_id, self.location_id)] = quantity

    def available(self, inventory_item_id: int) -> int | None:
        with self.lock:
            return self.inventory.get((inventory_item_id, self.location_id))

    def webhook_for(
        self,
        order_id: int,
        *,
        secret: str,
        topic: str = "orders/create",
        event_id: str | None = None,
    ) -> ShopifyDelivery:
        """A signed delivery carrying the order exactly as the REST API shows it now."""
        sender = ShopifyWebhookSender(
            secret=secret, shop_domain=self.shop, api_version=self.api_version, clock=self.clock
        )
        return sender.delivery(topic, self.order(order_id), event_id=event_id)

    # -- order generation -----------------------------------------------------------------------

    def _append(self, created: datetime) -> None:
        index = len(self._ids)
        order_id = 5_000_000_000 + index * 17 + 3
        self._ids.append(order_id)
        self._index[order_id] = index
        self._updated.append(created.timestamp())
        self._bodies.append(None)

    def _base_order(self, index: int) -> dict[str, Any]:
        order_id = self._ids[index]
        created = datetime.fromtimestamp(self._updated[index], tz=UTC)
        rng = random.Random(self.seed * 1_000_003 + index)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        city, region, zip_code = rng.choice(CITIES)
        code, title, ship_price = rng.choice(SHIPPING)
        lines = []
        subtotal = 0
        for k, variant in enumerate(rng.sample(self.variants, k=min(3, rng.randint(1, 3)))):
            quantity = rng.randint(1, 3)
            subtotal += int(variant["price"].split(".")[0]) * 100 * quantity
            lines.append(
                {
                    "id": order_id * 10 + k,
                    "variant_id": variant["id"],
                    "product_id": variant["product_id"],
                    "sku": variant["sku"],
                    "title": variant["product_title"],
                    "variant_title": variant["title"],
                    "quantity": quantity,
                    "price": variant["price"],
                    "total_discount": "0.00",
                    "requires_shipping": True,
                    "fulfillable_quantity": quantity,
                }
            )
        tax = subtotal * 8 // 100
        ship_cents = int(ship_price.replace(".", ""))
        total = subtotal + tax + ship_cents
        email = f"{first}.{last}{index}@example.com".lower()
        return {
            "id": order_id,
            "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
            "name": f"#{1001 + index}",
            "order_number": 1001 + index,
            "email": email,
            "created_at": _ts(created),
            "processed_at": _ts(created),
            "updated_at": _ts(created),
            "cancelled_at": None,
            "closed_at": None,
            "currency": self.currency,
            "financial_status": "paid",
            "fulfillment_status": None,
            "source_name": "web",
            "tags": "",
            "test": False,
            "note": None,
            "subtotal_price": f"{subtotal / 100:.2f}",
            "total_tax": f"{tax / 100:.2f}",
            "total_discounts": "0.00",
            "total_price": f"{total / 100:.2f}",
            "total_shipping_price_set": {
                "shop_money": {"amount": ship_price, "currency_code": self.currency}
            },
            "customer": {
                "id": 6_000_000 + index,
                "email": email,
                "first_name": first,
                "last_name": last,
            },
            "shipping_address": {
                "first_name": first,
                "last_name": last,
                "address1": f"{rng.randint(1, 999)} Main St",
                "address2": "",
                "city": city,
                "province_code": region,
                "zip": zip_code,
                "country_code": "US",
                "phone": "",
            },
            "shipping_lines": [{"code": code, "title": title, "price": ship_price}],
            "line_items": lines,
        }

    def _body(self, index: int) -> bytes:
        body = self._bodies[index]
        if body is None:
            order = self._overrides.get(index) or self._base_order(index)
            body = json.dumps(order, separators=(",", ":")).encode()
            self._bodies[index] = body
        return body

    def _status_of(self, index: int) -> str:
        order = self._overrides.get(index)
        if order is None:
            return "open"
        if order.get("cancelled_at"):
            return "cancelled"
        if order.get("closed_at"):
            return "closed"
        return "open"

    # -- cross-cutting --------------------------------------------------------------------------

    def before_route(self, request: FakeRequest) -> FakeResponse | None:
        version = _VERSION.match(request.path)
        if version is None or version.group(1) != self.api_version:
            return FakeResponse.json({"errors": "Not Found"}, 404)
        token = request.header("x-shopify-access-token")
        if self.token_revoked or token != self.access_token:
            return FakeResponse.json(INVALID_TOKEN, 401)
        if request.path.endswith("/graphql.json"):
            return None  # GraphQL has its own cost bucket
        now = request.at
        if self._level_at is not None:
            self._level = max(0.0, self._level - (now - self._level_at) * self.leak_rate)
        self._level_at = now
        if self._level + 1 > self.bucket_size:
            wait = self.retry_after
            if wait is None:
                wait = (self._level + 1 - self.bucket_size) / self.leak_rate
            return throttled_response(wait, used=math.ceil(self._level), size=self.bucket_size)
        self._level += 1
        return None

    def after_route(self, request: FakeRequest, response: FakeResponse) -> FakeResponse:
        if not request.path.endswith("/graphql.json"):
            response.headers["X-Shopify-Shop-Api-Call-Limit"] = (
                f"{math.ceil(self._level)}/{self.bucket_size}"
            )
        return response

    # -- REST handlers --------------------------------------------------------------------------

    def _link(self, resource: str, token: str, rel: str) -> str:
        return (
            f"<http://{self.origin_host}/admin/api/{self.api_version}/{resource}"
            f'?limit={{limit}}&page_info={token}>; rel="{rel}"'
        )

    def _encode_page(self, data: Mapping[str, Any]) -> str:
        raw = json.dumps({**data, "g": self.page_info_generation}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def _decode_page(self, token: str) -> dict[str, Any] | None:
        try:
            padded = token + "=" * (-len(token) % 4)
            data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("g") != self.page_info_generation:
            return None
        return data

    def _page_args(
        self, request: FakeRequest, filters: Iterable[str]
    ) -> tuple[dict[str, Any], int] | FakeResponse:
        try:
            limit = int(request.arg("limit", "50") or 50)
        except ValueError:
            return FakeResponse.json({"errors": {"limit": ["is not a number"]}}, 400)
        if not 1 <= limit <= self.max_limit:
            return FakeResponse.json({"errors": {"limit": ["must be between 1 and 250"]}}, 400)
        token = request.arg("page_info")
        if token is None:
            return {}, limit
        if any(name in request.query for name in filters):
            return FakeResponse.json(
                {"errors": {"page_info": ["can't be combined with other filters"]}}, 400
            )
        state = self._decode_page(token)
        if state is None or state.get("d") != "next":
            return FakeResponse.json({"errors": {"page_info": ["Invalid value."]}}, 400)
        return state, limit

    def _shop(self, request: FakeRequest) -> FakeResponse:
        return FakeResponse.json(
            {"shop": {"id": 1, "domain": self.shop, "currency": self.currency}}
        )

    def _orders(self, request: FakeRequest) -> FakeResponse:
        parsed = self._page_args(request, ("status", "updated_at_min", "created_at_min", "ids"))
        if isinstance(parsed, FakeResponse):
            return parsed
        state, limit = parsed
        if not state:
            status = request.arg("status", "open")
            since = request.arg("updated_at_min")
            try:
                since_ts = datetime.fromisoformat(since).timestamp() if since else None
            except ValueError:
                return FakeResponse.json({"errors": {"updated_at_min": ["is invalid"]}}, 400)
            state = {"a": -1, "s": since_ts, "st": status}
        picked: list[int] = []
        more = False
        for index in range(state["a"] + 1, len(self._ids)):
            if state["s"] is not None and self._updated[index] < state["s"]:
                continue
            if state["st"] != "any" and self._status_of(index) != state["st"]:
                continue
            if len(picked) == limit:
                more = True
                break
            picked.append(index)
        links = []
        if state["a"] >= 0:
            links.append(
                self._link("orders.json", self._encode_page({**state, "d": "prev"}), "previous")
            )
        if more:
            nxt = self._encode_page({**state, "a": picked[-1], "d": "next"})
            links.append(self._link("orders.json", nxt, "next"))
        headers = {"Link": ", ".join(links).replace("{limit}", str(limit))} if links else {}
        body = b'{"orders":[' + b",".join(self._body(i) for i in picked) + b"]}"
        return FakeResponse.raw_json(body, headers=headers)

    def _order(self, request: FakeRequest) -> FakeResponse:
        order_id = int(request.params["id"])
        if order_id not in self._index:
            return FakeResponse.json({"errors": "Not Found"}, 404)
        return FakeResponse.json({"order": self.order(order_id)})

    def _fo_for(self, order_id: int) -> dict[str, Any]:
        order = self.order(order_id)
        done = self.fulfilled.get(order_id, {})
        items = [
            {
                "id": line["id"] * 10 + 1,
                "fulfillment_order_id": order_id * 10 + 1,
                "line_item_id": line["id"],
                "variant_id": line["variant_id"],
                "inventory_item_id": line["variant_id"] + 1_000_000,
                "quantity": line["quantity"],
                "fulfillable_quantity": line["quantity"] - done.get(line["id"], 0),
            }
            for line in order["line_items"]
        ]
        remaining = sum(i["fulfillable_quantity"] for i in items)
        status = "open" if remaining else "closed"
        if order.get("cancelled_at"):
            status = "cancelled"
        return {
            "id": order_id * 10 + 1,
            "order_id": order_id,
            "status": status,
            "assigned_location_id": self.location_id,
            "line_items": items,
        }

    def _fulfillment_orders(self, request: FakeRequest) -> FakeResponse:
        order_id = int(request.params["id"])
        if order_id not in self._index:
            return FakeResponse.json({"errors": "Not Found"}, 404)
        return FakeResponse.json({"fulfillment_orders": [self._fo_for(order_id)]})

    def _fulfillments(self, request: FakeRequest) -> FakeResponse:
        order_id = int(request.params["id"])
        if order_id not in self._index:
            return FakeResponse.json({"errors": "Not Found"}, 404)
        return FakeResponse.json({"fulfillments": self.fulfillments.get(order_id, [])})

    def _create_fulfillment(self, request: FakeRequest) -> FakeResponse:
        try:
            payload = request.json()["fulfillment"]
            groups = payload["line_items_by_fulfillment_order"]
        except (ValueError, KeyError, TypeError):
            return FakeResponse.json({"errors": {"fulfillment": ["is invalid"]}}, 400)
        taken: dict[int, dict[int, int]] = {}
        for group in groups:
            fo_id = int(group["fulfillment_order_id"])
            order_id = (fo_id - 1) // 10
            if order_id not in self._index:
                return FakeResponse.json({"errors": "Not Found"}, 404)
            fo = self._fo_for(order_id)
            if fo["status"] != "open":
                return FakeResponse.json(
                    {"errors": ["Fulfillment order is not in an open state."]}, 422
                )
            by_id = {item["id"]: item for item in fo["line_items"]}
            for requested in group.get("fulfillment_order_line_items") or fo["line_items"]:
                item = by_id.get(int(requested["id"]))
                quantity = int(
                    requested.get("quantity") or (item or {}).get("fulfillable_quantity", 0)
                )
                if item is None or not 0 < quantity <= item["fulfillable_quantity"]:
                    return FakeResponse.json(
                        {"errors": ["Invalid fulfillment order line item quantity requested."]},
                        422,
                    )
                taken.setdefault(order_id, {})[item["line_item_id"]] = quantity
        tracking = payload.get("tracking_info") or {}
        results = []
        for order_id, lines in taken.items():
            done = self.fulfilled.setdefault(order_id, {})
            for line_id, quantity in lines.items():
                done[line_id] = done.get(line_id, 0) + quantity
            fulfillment = {
                "id": 4_000_000 + sum(len(v) for v in self.fulfillments.values()),
                "order_id": order_id,
                "status": "success",
                "tracking_company": tracking.get("company"),
                "tracking_number": tracking.get("number"),
                "tracking_numbers": [tracking["number"]] if tracking.get("number") else [],
                "tracking_urls": [tracking["url"]] if tracking.get("url") else [],
                "line_items": [{"id": k, "quantity": v} for k, v in lines.items()],
            }
            self.fulfillments.setdefault(order_id, []).append(fulfillment)
            remaining = sum(i["fulfillable_quantity"] for i in self._fo_for(order_id)["line_items"])
            self.update_order(order_id, fulfillment_status="partial" if remaining else "fulfilled")
            results.append(fulfillment)
        return FakeResponse.json({"fulfillment": results[0]}, 201)

    def _products(self, request: FakeRequest) -> FakeResponse:
        parsed = self._page_args(request, ("ids", "status", "updated_at_min"))
        if isinstance(parsed, FakeResponse):
            return parsed
        state, limit = parsed
        after = state.get("a", -1)
        product_ids = sorted({v["product_id"] for v in self.variants})
        page = product_ids[after + 1 : after + 1 + limit]
        products = [
            {
                "id": pid,
                "title": next(v["product_title"] for v in self.variants if v["product_id"] == pid),
                "status": "active",
                "variants": [
                    {k: v[k] for k in ("id", "sku", "title", "price", "inventory_item_id")}
                    for v in self.variants
                    if v["product_id"] == pid
                ],
            }
            for pid in page
        ]
        headers = {}
        if after + 1 + limit < len(product_ids):
            token = self._encode_page({"a": after + limit, "d": "next"})
            headers["Link"] = self._link("products.json", token, "next").replace(
                "{limit}", str(limit)
            )
        return FakeResponse.json({"products": products}, headers=headers)

    # -- GraphQL --------------------------------------------------------------------------------

    def _graphql(self, request: FakeRequest) -> FakeResponse:
        now = request.at
        if self._gql_at is not None:
            self._gql_available = min(
                self.graphql_capacity,
                self._gql_available + (now - self._gql_at) * self.graphql_restore_rate,
            )
        self._gql_at = now
        try:
            document = request.json()
            query, variables = document["query"], document.get("variables") or {}
        except (ValueError, KeyError, TypeError):
            return FakeResponse.json({"errors": [{"message": "Parse error"}]}, 400)
        cost = {
            "requestedQueryCost": self.graphql_cost,
            "actualQueryCost": None,
            "throttleStatus": {
                "maximumAvailable": self.graphql_capacity,
                "currentlyAvailable": self._gql_available,
                "restoreRate": self.graphql_restore_rate,
            },
        }
        if self._gql_available < self.graphql_cost:
            return FakeResponse.json(
                {
                    "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
                    "extensions": {"cost": cost},
                }
            )
        self._gql_available -= self.graphql_cost
        cost["actualQueryCost"] = self.graphql_cost
        cost["throttleStatus"]["currentlyAvailable"] = self._gql_available
        if "inventorySetQuantities" in query:
            version = request.params.get("version") or self.api_version
            problem = self._mutation_problem(version, query, variables)
            if problem is not None:
                return FakeResponse.json(
                    {"errors": [{"message": problem}], "extensions": {"cost": cost}}
                )
            data = self._idempotent_set(version, query, variables)
        elif "inventoryLevel" in query and "nodes" in query:
            data = self._levels(variables)
        else:
            return FakeResponse.json({"errors": [{"message": "unsupported by the fake"}]})
        return FakeResponse.json({"data": data, "extensions": {"cost": cost}})

    @staticmethod
    def _id(gid: str) -> int:
        return int(str(gid).rsplit("/", 1)[-1])

    def _levels(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        location = self._id(variables["locationId"])
        known = {v["inventory_item_id"] for v in self.variants}
        nodes = []
        for gid in variables.get("ids") or ():
            item = self._id(gid)
            if item not in known:
                nodes.append(None)
                continue
            quantity = self.inventory.get((item, location))
            level = (
                None
                if quantity is None
                else {"quantities": [{"name": "available", "quantity": quantity}]}
            )
            nodes.append({"id": gid, "inventoryLevel": level})
        return {"nodes": nodes}

    @staticmethod
    def _mutation_problem(version: str, query: str, variables: Mapping[str, Any]) -> str | None:
        """What 2026-04 refuses outright (a top-level error, nothing applied)."""
        if version < "2026-04":
            return None
        data = variables.get("input") or {}
        if "ignoreCompareQuantity" in data:
            return "InventorySetQuantitiesInput has no field ignoreCompareQuantity"
        for q in data.get("quantities") or ():
            if "compareQuantity" in q:
                return "InventoryQuantityInput has no field compareQuantity"
            if "changeFromQuantity" not in q:
                return "changeFromQuantity is required (pass null to skip the check)"
        if "@idempotent" not in query or not variables.get("idempotencyKey"):
            return "inventorySetQuantities requires the @idempotent directive"
        return None

    def _idempotent_set(
        self, version: str, query: str, variables: Mapping[str, Any]
    ) -> dict[str, Any]:
        data = variables.get("input") or {}
        key = variables.get("idempotencyKey") if "@idempotent" in query else None
        if key and version >= "2026-01":
            fingerprint = json.dumps(data, sort_keys=True)
            if key in self._idempotency:
                first, answer = self._idempotency[key]
                if first != fingerprint:
                    return {
                        "inventorySetQuantities": {
                            "inventoryAdjustmentGroup": None,
                            "userErrors": [
                                _user_error(
                                    "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                                    ["idempotencyKey"],
                                    "The same idempotency key cannot be used with different "
                                    "operation parameters.",
                                )
                            ],
                        }
                    }
                return answer
            answer = self._set_quantities(data, version)
            self._idempotency[key] = (fingerprint, answer)
            return answer
        return self._set_quantities(data, version)

    def _compare_error(
        self, version: str, data: Mapping[str, Any], q: Mapping[str, Any], field: list[str]
    ) -> dict[str, Any] | None:
        current = self.inventory[(self._id(q["inventoryItemId"]), self._id(q["locationId"]))]
        if version >= "2026-01" and "changeFromQuantity" in q:
            # Any value, null included, overrides compareQuantity/ignoreCompareQuantity.
            expected = q["changeFromQuantity"]
            if expected is not None and int(expected) != current:
                return _user_error(
                    "CHANGE_FROM_QUANTITY_STALE",
                    [*field, "changeFromQuantity"],
                    "The changeFromQuantity value does not match persisted value.",
                )
            return None
        if data.get("ignoreCompareQuantity"):
            return None
        if "compareQuantity" not in q:
            return _user_error("COMPARE_QUANTITY_REQUIRED", field, "required")
        if int(q["compareQuantity"]) != current:
            return _user_error(
                "COMPARE_QUANTITY_STALE",
                [*field, "compareQuantity"],
                "The compareQuantity value does not match persisted value.",
            )
        return None

    def _set_quantities(self, data: Mapping[str, Any], version: str = "") -> dict[str, Any]:
        version = version or self.api_version
        quantities = data.get("quantities") or []
        if quantities and self._sales_before_write > 0:
            self._sales_before_write -= 1
            first = quantities[0]
            key = (self._id(first["inventoryItemId"]), self._id(first["locationId"]))
            if key in self.inventory:
                self.inventory[key] -= 1
        known = {v["inventory_item_id"] for v in self.variants}
        errors = []
        for position, q in enumerate(quantities):
            item, location = self._id(q["inventoryItemId"]), self._id(q["locationId"])
            field = ["input", "quantities", str(position)]
            if item not in known:
                errors.append(_user_error("INVALID_INVENTORY_ITEM", field, "not found"))
            elif (item, location) not in self.inventory:
                errors.append(
                    _user_error("ITEM_NOT_STOCKED_AT_LOCATION", field, "not stocked here")
                )
            elif int(q["quantity"]) < 0:
                errors.append(_user_error("INVALID_QUANTITY_NEGATIVE", field, "negative"))
            else:
                stale = self._compare_error(version, data, q, field)
                if stale is not None:
                    errors.append(stale)
        self.inventory_attempts.append(
            {
                "version": version,
                "outcome": "rejected" if errors else "applied",
                "codes": [e["code"] for e in errors],
                "quantities": [dict(q) for q in quantities],
            }
        )
        if errors:
            return {
                "inventorySetQuantities": {"inventoryAdjustmentGroup": None, "userErrors": errors}
            }
        for q in quantities:
            key = (self._id(q["inventoryItemId"]), self._id(q["locationId"]))
            self.inventory_writes.append(
                {"item": key[0], "from": self.inventory[key], "to": int(q["quantity"])}
            )
            self.inventory[key] = int(q["quantity"])
        return {
            "inventorySetQuantities": {
                "inventoryAdjustmentGroup": {"reason": data.get("reason", "correction")},
                "userErrors": [],
            }
        }


def _user_error(code: str, field: list[str], message: str) -> dict[str, Any]:
    return {"code": code, "field": field, "message": message}


def throttled_response(
    retry_after: float, *, used: int | None = None, size: int = 40
) -> FakeResponse:
    """Shopify's REST 429: ``Retry-After`` in seconds (as ``2.0``) and the bucket header."""
    return FakeResponse.json(
        {
            "errors": "Exceeded 2 calls per second for api client. Reduce request rates to "
            "resume uninterrupted service."
        },
        429,
        headers={
            "Retry-After": f"{retry_after:.1f}",
            "X-Shopify-Shop-Api-Call-Limit": f"{used if used is not None else size}/{size}",
        },
    )


# -- webhooks -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ShopifyDelivery:
    topic: str
    event_id: str
    webhook_id: str
    headers: Mapping[str, str]
    body: bytes


@dataclasses.dataclass(frozen=True)
class SendRecord:
    delivery: ShopifyDelivery
    status: int
    elapsed: float


class ShopifyWebhookSender:
    """Signs and delivers webhooks the way Shopify does: HMAC-SHA256 of the raw body in
    ``X-Shopify-Hmac-Sha256``, topic/shop/API-version/event/webhook-id/triggered-at headers.

    :meth:`send_all` reproduces what receivers must survive: the same delivery several times
    (``duplicates``), deliveries out of order (``shuffle_seed``), dropped deliveries
    (``drop_ratio``, to exercise reconciliation) and concurrent deliveries (``concurrency``).
    """

    def __init__(
        self,
        *,
        secret: str,
        shop_domain: str = "keel-test.myshopify.com",
        api_version: str = "2024-10",
        clock: Clock | None = None,
    ) -> None:
        self.secret = secret
        self.shop_domain = shop_domain
        self.api_version = api_version
        self.clock = clock
        self._counter = 0
        self._lock = threading.Lock()

    def _next_id(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def delivery(
        self,
        topic: str,
        payload: Mapping[str, Any] | bytes,
        *,
        event_id: str | None = None,
        webhook_id: str | None = None,
        triggered_at: datetime | None = None,
        secret: str | None = None,
    ) -> ShopifyDelivery:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        n = self._next_id()
        event_id = event_id or f"evt-{n:08d}-{random.Random(n).getrandbits(32):08x}"
        webhook_id = webhook_id or f"wh-{n:08d}"
        when = triggered_at or (self.clock.now() if self.clock else datetime.now(UTC))
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": sign(body, secret or self.secret),
            "X-Shopify-Shop-Domain": self.shop_domain,
            "X-Shopify-API-Version": self.api_version,
            "X-Shopify-Webhook-Id": webhook_id,
            "X-Shopify-Event-Id": event_id,
            "X-Shopify-Triggered-At": when.isoformat(),
        }
        return ShopifyDelivery(topic, event_id, webhook_id, headers, body)

    def send(self, url: str, delivery: ShopifyDelivery, *, timeout: float = 10.0) -> SendRecord:
        with httpx.Client(timeout=timeout) as client:
            return self._send(client, url, delivery)

    @staticmethod
    def _send(client: httpx.Client, url: str, delivery: ShopifyDelivery) -> SendRecord:
        started = datetime.now(UTC)
        response = client.post(url, content=delivery.body, headers=dict(delivery.headers))
        elapsed = (datetime.now(UTC) - started).total_seconds()
        return SendRecord(delivery, response.status_code, elapsed)

    def send_all(
        self,
        url: str,
        deliveries: Iterable[ShopifyDelivery],
        *,
        duplicates: int = 0,
        shuffle_seed: int | None = None,
        drop_ratio: float = 0.0,
        concurrency: int = 1,
        timeout: float = 10.0,
    ) -> list[SendRecord]:
        plan = []
        rng = random.Random(shuffle_seed if shuffle_seed is not None else 0)
        for delivery in deliveries:
            if drop_ratio and rng.random() < drop_ratio:
                continue
            plan.extend([delivery] * (1 + duplicates))
        if shuffle_seed is not None:
            rng.shuffle(plan)
        records: list[SendRecord] = []
        lock = threading.Lock()
        queue = list(reversed(plan))

        def worker() -> None:
            with httpx.Client(timeout=timeout) as client:
                while True:
                    with lock:
                        if not queue:
                            return
                        delivery = queue.pop()
                    record = self._send(client, url, delivery)
                    with lock:
                        records.append(record)

        threads = [threading.Thread(target=worker) for _ in range(max(1, concurrency))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return records
