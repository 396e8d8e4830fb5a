"""A fake Amazon Selling Partner API (Orders v0, Tokens, Listings Items, Sellers) with its
Login with Amazon (LWA) token endpoint, on one loopback server.

Documented behaviour reproduced (every limit is a constructor argument, ``plans``):

- LWA: ``POST /auth/o2/token`` (form) exchanges the refresh token for an access token valid
  ``token_ttl`` seconds; a wrong refresh token is ``400 invalid_grant``, a wrong client
  ``401 invalid_client``. SP-API calls carry the token in ``x-amz-access-token``; a missing,
  unknown, expired or revoked token is ``403 Unauthorized``.
- Usage plans: a token bucket per operation (``getOrders`` 0.0167/s burst 20, ``getOrderItems``
  0.5/s burst 30, ``createRestrictedDataToken`` 1/s burst 10, …); every answer carries
  ``x-amzn-RateLimit-Limit`` (the rate applied); an empty bucket answers ``429`` with a
  ``QuotaExceeded`` error and that header (and ``Retry-After`` only if ``retry_after`` is
  set: Amazon does not promise one).
- ``getOrders``: ``MarketplaceIds`` plus ``LastUpdatedAfter`` (or ``CreatedAfter``), at most
  ``MaxResultsPerPage`` (≤ 100) orders oldest update first, and a ``NextToken`` for the rest; a
  request with ``NextToken`` continues that listing, an unknown or expired one is ``400``.
- Restricted data: ``createRestrictedDataToken`` issues an RDT for the listed restricted
  resources (method, path, ``dataElements``). ``getOrders`` read with an RDT covering
  ``buyerInfo``/``shippingAddress`` returns ``BuyerInfo`` and the full ``ShippingAddress``;
  read with a plain LWA token they are left out (city, region, postal code and country
  only). The restricted operations ``getOrderAddress``/``getOrderBuyerInfo`` without an RDT
  answer ``403``, as does an RDT used outside its resources.
- ``patchListingsItem`` replacing ``/attributes/fulfillment_availability`` sets a listing's
  merchant-fulfilled quantity (``ACCEPTED``); FBA listings answer ``INVALID`` with an issue.
  Placing an order (:meth:`add_orders`) takes its units off the listing, as Amazon does.
"""

from __future__ import annotations

import base64
import json
import random
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote

from connectors.amazon.ratelimit import DEFAULT_PLANS
from connectors.clock import Clock
from connectors.fakeapi import FakeAPI, FakeRequest, FakeResponse
from connectors.state import MemoryState

FIRST = ("Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara")
LAST = ("Lovelace", "Hopper", "Torvalds", "Hamilton", "Turing", "Liskov")
CITIES = (("Seattle", "WA", "98109"), ("Austin", "TX", "73301"), ("Denver", "CO", "80202"))
TOKEN_PATH = "/auth/o2/token"
ORDERS = "/orders/v0/orders"

# (method, path regex, operation, restricted data elements)
_OPERATIONS: tuple[tuple[str, str, str], ...] = (
    ("GET", r"/orders/v0/orders", "getOrders"),
    ("GET", r"/orders/v0/orders/[^/]+/orderItems", "getOrderItems"),
    ("GET", r"/orders/v0/orders/[^/]+/address", "getOrderAddress"),
    ("GET", r"/orders/v0/orders/[^/]+/buyerInfo", "getOrderBuyerInfo"),
    ("POST", r"/tokens/2021-03-01/restrictedDataToken", "createRestrictedDataToken"),
    ("GET", r"/sellers/v1/marketplaceParticipations", "getMarketplaceParticipations"),
    ("GET", r"/listings/2021-08-01/items/[^/]+", "searchListingsItems"),
    ("PATCH", r"/listings/2021-08-01/items/[^/]+/[^/]+", "patchListingsItem"),
)
RESTRICTED_OPERATIONS = frozenset({"getOrderAddress", "getOrderBuyerInfo"})


def _errors(code: str, message: str, status: int, **headers: str) -> FakeResponse:
    return FakeResponse.json(
        {"errors": [{"code": code, "message": message, "details": ""}]}, status, headers
    )


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class FakeAmazon(FakeAPI):
    """See the module docstring. ``listings`` SKUs exist from the start (``AMZ-000``…),
    each with ``initial_quantity`` merchant-fulfilled units."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        client_id: str = "amzn1.application-oa2-client.keelfake0001",
        client_secret: str = "amzn1.oa2-cs.v1.fake-client-secret-0001",
        refresh_token: str = "Atzr|fake-refresh-token-0001",
        seller_id: str = "A2KEELSELLER01",
        marketplace_id: str = "ATVPDKIKX0DER",
        currency: str = "USD",
        listings: int = 5,
        initial_quantity: int = 50,
        plans: Mapping[str, tuple[float, int]] | None = None,
        retry_after: float | None = None,
        token_ttl: float = 3600.0,
        rdt_ttl: float = 3600.0,
        max_page_size: int = 100,
        seed: int = 11,
    ) -> None:
        super().__init__(clock=clock)
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.seller_id = seller_id
        self.marketplace_id = marketplace_id
        self.currency = currency
        self.plans: dict[str, tuple[float, int]] = {
            **DEFAULT_PLANS,
            "getOrderAddress": (0.5, 30),
            "getOrderBuyerInfo": (0.5, 30),
            **(plans or {}),
        }
        self.retry_after = retry_after
        self.token_ttl = token_ttl
        self.rdt_ttl = rdt_ttl
        self.max_page_size = max_page_size
        self.rng = random.Random(seed)
        self.revoked = False
        #: Whether the application holds the restricted role RDTs for buyer data need.
        self.restricted_role = True
        self.access_tokens: dict[str, float] = {}
        #: RDT → (expires at, {(method, path, element)}).
        self.rdts: dict[str, tuple[float, frozenset[tuple[str, str, str]]]] = {}
        self.rdts_issued = 0
        self._buckets: dict[str, list[float]] = {}
        self._generation = 0
        self.orders: dict[str, dict[str, Any]] = {}
        self.items: dict[str, list[dict[str, Any]]] = {}
        self.listings: dict[str, dict[str, Any]] = {
            f"AMZ-{i:03d}": {
                "asin": f"B0KEEL{i:04d}",
                "title": f"Keel Tee {i:03d}",
                "quantity": initial_quantity,
                "fba": False,
                "price": f"{20 + i}.00",
            }
            for i in range(listings)
        }
        self.quantity_writes: list[dict[str, Any]] = []
        self.route("POST", TOKEN_PATH, self._token)
        self.route("POST", r"/tokens/2021-03-01/restrictedDataToken", self._rdt)
        self.route("GET", ORDERS, self._orders)
        self.route("GET", ORDERS + r"/(?P<id>[^/]+)/orderItems", self._order_items)
        self.route("GET", ORDERS + r"/(?P<id>[^/]+)/address", self._address)
        self.route("GET", ORDERS + r"/(?P<id>[^/]+)/buyerInfo", self._buyer_info)
        self.route("GET", r"/sellers/v1/marketplaceParticipations", self._participations)
        self.route("GET", r"/listings/2021-08-01/items/(?P<seller>[^/]+)", self._search_listings)
        self.route(
            "PATCH", r"/listings/2021-08-01/items/(?P<seller>[^/]+)/(?P<sku>[^/]+)", self._patch
        )

    # -- test controls --------------------------------------------------------------------------

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    def revoke(self) -> None:
        """The seller removed the authorization: the refresh token and every access token
        issued so far stop working."""
        with self.lock:
            self.revoked = True
            self.access_tokens.clear()

    def expire_next_tokens(self) -> None:
        """Invalidate every ``NextToken`` handed out so far."""
        with self.lock:
            self._generation += 1

    def issue_access_token(self) -> tuple[str, float]:
        """A valid LWA token as if exchanged earlier: (token, wall-clock expiry)."""
        with self.lock:
            token = "Atza|" + secrets.token_urlsafe(24)
            self.access_tokens[token] = self.clock.monotonic() + self.token_ttl
            return token, self.clock.now().timestamp() + self.token_ttl

    def primed_state(self) -> MemoryState:
        """A ConnectionState holding a valid access token, as a previous task leaves it."""
        token, expires = self.issue_access_token()
        return MemoryState(
            {
                "amazon.lwa": {
                    "access_token": token,
                    "expires_at": expires,
                    "client_id": self.client_id,
                }
            }
        )

    def add_orders(
        self,
        count: int,
        *,
        sku: str | None = None,
        quantity: int = 1,
        fulfillment: str = "MFN",
        status: str = "Unshipped",
    ) -> list[str]:
        """Place ``count`` orders now (a millisecond apart), one line each; returns ids."""
        with self.lock:
            now = self.clock.now()
            ids = []
            for k in range(count):
                n = len(self.orders)
                order_id = f"113-{1000000 + n:07d}-{(n * 7919) % 10000000:07d}"
                at = now + timedelta(milliseconds=k)
                line_sku = sku or sorted(self.listings)[n % len(self.listings)]
                listing = self.listings[line_sku]
                first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
                city, region, postal = self.rng.choice(CITIES)
                price = int(listing["price"].split(".")[0]) * quantity
                self.orders[order_id] = {
                    "AmazonOrderId": order_id,
                    "PurchaseDate": _iso(at),
                    "LastUpdateDate": _iso(at),
                    "OrderStatus": status,
                    "FulfillmentChannel": fulfillment,
                    "SalesChannel": "Amazon.com",
                    "ShipServiceLevel": "Std US D2D Dom",
                    "ShipmentServiceLevelCategory": "Standard",
                    "OrderType": "StandardOrder",
                    "OrderTotal": {"CurrencyCode": self.currency, "Amount": f"{price}.00"},
                    "NumberOfItemsShipped": 0,
                    "NumberOfItemsUnshipped": quantity,
                    "MarketplaceId": self.marketplace_id,
                    "IsPrime": n % 3 == 0,
                    "IsBusinessOrder": False,
                    "BuyerInfo": {
                        "BuyerEmail": f"{first}{n}@marketplace.amazon.com".lower(),
                        "BuyerName": f"{first} {last}",
                    },
                    "ShippingAddress": {
                        "Name": f"{first} {last}",
                        "AddressLine1": f"{100 + n} Pine St",
                        "City": city,
                        "StateOrRegion": region,
                        "PostalCode": postal,
                        "CountryCode": "US",
                        "Phone": f"+1206555{n:04d}",
                    },
                }
                self.items[order_id] = [
                    {
                        "ASIN": listing["asin"],
                        "SellerSKU": line_sku,
                        "OrderItemId": f"{60000000000000 + n}",
                        "Title": listing["title"],
                        "QuantityOrdered": quantity,
                        "QuantityShipped": 0,
                        "ItemPrice": {"CurrencyCode": self.currency, "Amount": f"{price}.00"},
                        "ItemTax": {"CurrencyCode": self.currency, "Amount": "0.00"},
                        "PromotionDiscount": {"CurrencyCode": self.currency, "Amount": "0.00"},
                        "IsGift": "false",
                    }
                ]
                if fulfillment == "MFN":
                    listing["quantity"] -= quantity
                ids.append(order_id)
            return ids

    def update_order(self, order_id: str, **fields: Any) -> None:
        with self.lock:
            self.orders[order_id].update(fields, LastUpdateDate=_iso(self.clock.now()))

    def pii_values(self) -> set[str]:
        """Every buyer PII value the fake holds (for log scans)."""
        with self.lock:
            values = set()
            for order in self.orders.values():
                values.update(order["BuyerInfo"].values())
                address = order["ShippingAddress"]
                values.update(str(address[k]) for k in ("Name", "AddressLine1", "Phone"))
            return values

    # -- cross-cutting --------------------------------------------------------------------------

    def _operation(self, request: FakeRequest) -> str | None:
        for method, pattern, operation in _OPERATIONS:
            if method == request.method and re.fullmatch(pattern, request.path):
                return operation
        return None

    def _take(self, operation: str, now: float) -> bool:
        rate, burst = self.plans[operation]
        bucket = self._buckets.setdefault(operation, [float(burst), now])
        bucket[0] = min(float(burst), bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        # A hair of tolerance: a client pacing exactly at the rate lands on the boundary.
        if bucket[0] < 1.0 - 1e-6:
            return False
        bucket[0] -= 1.0
        return True

    def _authorised(self, request: FakeRequest, operation: str) -> bool:
        token = request.header("x-amz-access-token") or ""
        now = self.clock.monotonic()
        if token in self.rdts:
            expires, resources = self.rdts[token]
            if self.revoked or expires <= now:
                return False
            # An RDT authorises exactly the restricted resources it was issued for.
            return any(
                method == request.method and _path_matches(path, request.path)
                for method, path, _ in resources
            )
        if operation in RESTRICTED_OPERATIONS:
            return False
        expires = self.access_tokens.get(token)
        return expires is not None and expires > now

    def before_route(self, request: FakeRequest) -> FakeResponse | None:
        if request.path == TOKEN_PATH:
            return None
        operation = self._operation(request)
        if operation is None:
            return None
        if not self._authorised(request, operation):
            return _errors("Unauthorized", "Access to requested resource is denied.", 403)
        if not self._take(operation, request.at):
            headers = {"x-amzn-RateLimit-Limit": str(self.plans[operation][0])}
            if self.retry_after is not None:
                headers["Retry-After"] = f"{self.retry_after:g}"
            return _errors(
                "QuotaExceeded",
                "You exceeded your quota for the requested resource.",
                429,
                **headers,
            )
        return None

    def after_route(self, request: FakeRequest, response: FakeResponse) -> FakeResponse:
        operation = self._operation(request)
        if operation is not None:
            response.headers["x-amzn-RateLimit-Limit"] = str(self.plans[operation][0])
        response.headers.setdefault("x-amzn-RequestId", secrets.token_hex(8))
        return response

    # -- LWA and tokens -------------------------------------------------------------------------

    def _token(self, request: FakeRequest) -> FakeResponse:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if form.get("client_id") != self.client_id or form.get("client_secret") != (
            self.client_secret
        ):
            return FakeResponse.json(
                {"error": "invalid_client", "error_description": "Client authentication failed"},
                401,
            )
        if (
            form.get("grant_type") != "refresh_token"
            or self.revoked
            or form.get("refresh_token") != self.refresh_token
        ):
            return FakeResponse.json(
                {
                    "error": "invalid_grant",
                    "error_description": "The request has an invalid grant parameter : "
                    "refresh_token",
                },
                400,
            )
        token = "Atza|" + secrets.token_urlsafe(24)
        self.access_tokens[token] = self.clock.monotonic() + self.token_ttl
        return FakeResponse.json(
            {
                "access_token": token,
                "refresh_token": self.refresh_token,
                "token_type": "bearer",
                "expires_in": int(self.token_ttl),
            }
        )

    def _rdt(self, request: FakeRequest) -> FakeResponse:
        if not self.restricted_role:
            return _errors("Unauthorized", "Access to requested resource is denied.", 403)
        try:
            resources = request.json()["restrictedResources"]
            granted = frozenset(
                (r["method"], r["path"], element)
                for r in resources
                for element in (r.get("dataElements") or ["*"])
            )
        except (ValueError, KeyError, TypeError):
            return _errors("InvalidInput", "restrictedResources is required", 400)
        token = "Atz.sprdt|" + secrets.token_urlsafe(24)
        self.rdts[token] = (self.clock.monotonic() + self.rdt_ttl, granted)
        self.rdts_issued += 1
        return FakeResponse.json({"restrictedDataToken": token, "expiresIn": int(self.rdt_ttl)})

    def _elements(self, request: FakeRequest) -> set[str]:
        token = request.header("x-amz-access-token") or ""
        _, resources = self.rdts.get(token, (0.0, frozenset()))
        return {
            element
            for method, path, element in resources
            if method == request.method and _path_matches(path, request.path)
        }

    # -- orders ---------------------------------------------------------------------------------

    def _render(self, order: Mapping[str, Any], elements: set[str]) -> dict[str, Any]:
        shown = {k: v for k, v in order.items() if k not in ("BuyerInfo", "ShippingAddress")}
        address = order["ShippingAddress"]
        if "shippingAddress" in elements:
            shown["ShippingAddress"] = dict(address)
        else:
            shown["ShippingAddress"] = {
                k: address[k] for k in ("City", "StateOrRegion", "PostalCode", "CountryCode")
            }
        if "buyerInfo" in elements:
            shown["BuyerInfo"] = dict(order["BuyerInfo"])
        return shown

    def _encode(self, data: Mapping[str, Any]) -> str:
        raw = json.dumps({**data, "g": self._generation}, separators=(",", ":")).encode()
        return base64.b64encode(raw).decode()

    def _decode(self, token: str) -> dict[str, Any] | None:
        try:
            data = json.loads(base64.b64decode(token.encode()))
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("g") != self._generation:
            return None
        return data

    def _orders(self, request: FakeRequest) -> FakeResponse:
        if request.arg("MarketplaceIds") is None:
            return _errors("InvalidInput", "MarketplaceIds is required", 400)
        next_token = request.arg("NextToken")
        if next_token:
            state = self._decode(next_token)
            if state is None:
                return _errors("InvalidInput", "Invalid NextToken", 400)
            since, offset, size = state["since"], state["offset"], state["size"]
        else:
            since = request.arg("LastUpdatedAfter") or request.arg("CreatedAfter")
            if not since:
                return _errors(
                    "InvalidInput", "Either CreatedAfter or LastUpdatedAfter is required", 400
                )
            try:
                size = int(request.arg("MaxResultsPerPage") or 100)
            except ValueError:
                size = 0
            if not 1 <= size <= self.max_page_size:
                return _errors("InvalidInput", "MaxResultsPerPage must be 1-100", 400)
            offset = 0
        floor = datetime.fromisoformat(since.replace("Z", "+00:00"))
        matching = sorted(
            (
                o
                for o in self.orders.values()
                if datetime.fromisoformat(o["LastUpdateDate"].replace("Z", "+00:00")) >= floor
            ),
            key=lambda o: (o["LastUpdateDate"], o["AmazonOrderId"]),
        )
        page = matching[offset : offset + size]
        elements = self._elements(request)
        payload: dict[str, Any] = {
            "Orders": [self._render(o, elements) for o in page],
            "LastUpdatedBefore": _iso(self.clock.now()),
        }
        if offset + size < len(matching):
            payload["NextToken"] = self._encode(
                {"since": since, "offset": offset + size, "size": size}
            )
        return FakeResponse.json({"payload": payload})

    def _order_items(self, request: FakeRequest) -> FakeResponse:
        order_id = unquote(request.params["id"])
        if order_id not in self.items:
            return _errors("InvalidInput", "Invalid AmazonOrderId", 404)
        return FakeResponse.json(
            {"payload": {"AmazonOrderId": order_id, "OrderItems": self.items[order_id]}}
        )

    def _address(self, request: FakeRequest) -> FakeResponse:
        order_id = unquote(request.params["id"])
        if order_id not in self.orders:
            return _errors("InvalidInput", "Invalid AmazonOrderId", 404)
        address = self.orders[order_id]["ShippingAddress"]
        return FakeResponse.json(
            {"payload": {"AmazonOrderId": order_id, "ShippingAddress": dict(address)}}
        )

    def _buyer_info(self, request: FakeRequest) -> FakeResponse:
        order_id = unquote(request.params["id"])
        if order_id not in self.orders:
            return _errors("InvalidInput", "Invalid AmazonOrderId", 404)
        buyer = self.orders[order_id]["BuyerInfo"]
        return FakeResponse.json({"payload": {"AmazonOrderId": order_id, **buyer}})

    # -- sellers and listings -------------------------------------------------------------------

    def _participations(self, request: FakeRequest) -> FakeResponse:
        return FakeResponse.json(
            {
                "payload": [
                    {
                        "marketplace": {"id": self.marketplace_id, "countryCode": "US"},
                        "participation": {"isParticipating": True, "hasSuspendedListings": False},
                    }
                ]
            }
        )

    def _search_listings(self, request: FakeRequest) -> FakeResponse:
        if request.params["seller"] != self.seller_id:
            return _errors("Unauthorized", "Access to requested resource is denied.", 403)
        size = int(request.arg("pageSize") or 10)
        token = request.arg("pageToken")
        offset = int(base64.b64decode(token).decode()) if token else 0
        skus = sorted(self.listings)
        page = skus[offset : offset + size]
        data: dict[str, Any] = {
            "numberOfResults": len(skus),
            "items": [
                {
                    "sku": sku,
                    "summaries": [
                        {
                            "marketplaceId": self.marketplace_id,
                            "asin": self.listings[sku]["asin"],
                            "productType": "SHIRT",
                            "itemName": self.listings[sku]["title"],
                            "status": ["BUYABLE", "DISCOVERABLE"],
                        }
                    ],
                }
                for sku in page
            ],
            "pagination": {},
        }
        if offset + size < len(skus):
            data["pagination"]["nextToken"] = base64.b64encode(str(offset + size).encode()).decode()
        return FakeResponse.json(data)

    def _patch(self, request: FakeRequest) -> FakeResponse:
        sku = unquote(request.params["sku"])
        if request.params["seller"] != self.seller_id:
            return _errors("Unauthorized", "Access to requested resource is denied.", 403)
        if sku not in self.listings:
            return _errors("NOT_FOUND", f"SKU {sku} not found", 404)
        try:
            body = request.json()
            patch = body["patches"][0]
            assert patch["op"] == "replace"
            assert patch["path"] == "/attributes/fulfillment_availability"
            quantity = int(patch["value"][0]["quantity"])
            assert quantity >= 0 and body.get("productType")
        except (ValueError, KeyError, TypeError, IndexError, AssertionError):
            return _errors("InvalidInput", "invalid patch", 400)
        listing = self.listings[sku]
        submission = secrets.token_hex(16)
        if listing["fba"]:
            return FakeResponse.json(
                {
                    "sku": sku,
                    "status": "INVALID",
                    "submissionId": submission,
                    "issues": [
                        {
                            "code": "90220",
                            "message": "Quantity of an Amazon-fulfilled offer is managed by "
                            "Amazon.",
                            "severity": "ERROR",
                            "attributeNames": ["fulfillment_availability"],
                        }
                    ],
                }
            )
        self.quantity_writes.append({"sku": sku, "from": listing["quantity"], "to": quantity})
        listing["quantity"] = quantity
        return FakeResponse.json(
            {"sku": sku, "status": "ACCEPTED", "submissionId": submission, "issues": []}
        )


def _path_matches(resource: str, path: str) -> bool:
    """An RDT for ``/orders/v0/orders`` covers that path only; ``{orderId}`` placeholders
    match one segment."""
    theirs, ours = resource.strip("/").split("/"), path.strip("/").split("/")
    if len(theirs) != len(ours):
        return False
    return all(
        t == o or (t.startswith("{") and t.endswith("}")) for t, o in zip(theirs, ours, strict=True)
    )


__all__ = ["FakeAmazon"]
