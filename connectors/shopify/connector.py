"""Shopify channel connector (Admin REST API for orders, products and fulfillments; GraphQL
for compare-and-swap inventory writes).

Behaviour worth knowing:

- **Orders** are read with ``GET /admin/api/{version}/orders.json?status=any&limit=250&
  updated_at_min=…`` and followed through ``Link: <…page_info=…>; rel="next"`` URLs used
  verbatim (Shopify rejects filters next to ``page_info``). The cursor carries the next URL
  mid-pass, so a killed sync resumes on the page it stopped at; if Shopify has expired that
  ``page_info``, the pass restarts from its own ``updated_at_min`` (duplicates are fine:
  the platform upserts). When a pass ends, the next one starts at the newest ``updated_at``
  seen — but never later than the pass's start minus ``poll_overlap_seconds``, because an
  order updated while we paginated may have moved behind our position.
- **Rate limits**: the REST leaky bucket (``rest_bucket_size``/``rest_leak_rate``, 40 and 2/s
  on standard plans) is paced client-side from ``X-Shopify-Shop-Api-Call-Limit``; a 429's
  ``Retry-After`` is honoured by the SDK client. GraphQL's cost bucket is honoured from
  ``extensions.cost.throttleStatus`` on ``THROTTLED`` errors.
- **Inventory** uses ``inventorySetQuantities`` as a compare-and-swap: the compare value is
  the quantity Keel last saw on Shopify for that item and location (kept in the connection's
  ``ConnectionState``: what it last wrote or read), so a change made on Shopify since then —
  a sale Keel has not ingested yet, an edit in the admin — makes the write fail instead of
  being overwritten blindly. An item Keel has never seen is read first. On a stale answer
  (``CHANGE_FROM_QUANTITY_STALE``, or ``COMPARE_QUANTITY_STALE`` before 2026-01) the current
  quantities are re-read and the write retried at most three times, then reported ``stale``
  for the sync engine to record and push again later. From API ``2026-01`` the compare value
  goes in ``changeFromQuantity`` (mandatory from ``2026-04``, where ``compareQuantity`` and
  ``ignoreCompareQuantity`` are gone) and every mutation carries an ``@idempotent`` key (a
  UUID per attempt, so the HTTP client's retry of a lost answer is replayed, not re-applied;
  mandatory from ``2026-04``). Shopify applies one call atomically, so a batch with any stale
  item is retried whole.
- **Fulfillments** go through fulfillment orders (``POST fulfillments.json`` with
  ``line_items_by_fulfillment_order`` and ``tracking_info``). Shopify offers no idempotency
  key here, so a repeated push first checks what is still fulfillable and returns the
  existing fulfillment carrying the same tracking number.
- **Webhooks**: HMAC-SHA256 over the raw body (see :mod:`.webhooks`); during a declared
  rotation window (``previous_webhook_secret`` + ``previous_webhook_secret_valid_until``)
  the old secret is accepted too. ``X-Shopify-Shop-Domain``, when present, must be this
  connection's shop. The event id is ``X-Shopify-Event-Id`` (what Shopify says identifies
  duplicates), falling back to ``X-Shopify-Webhook-Id``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from connectors.clock import Clock
from connectors.config import validate_connection
from connectors.cursor import PassCursor
from connectors.errors import (
    AuthError,
    PermanentError,
    RateLimited,
    WebhookVerificationError,
)
from connectors.http import ApiClient, HttpContext, parse_link_header
from connectors.ratelimit import LeakyBucketLimiter
from connectors.shopify import mapping, webhooks
from connectors.state import ConnectionState, MemoryState
from connectors.types import (
    AvailablePushResult,
    AvailableQuantity,
    ChannelFulfillmentResult,
    ConnectorInfo,
    FulfillmentConfirmation,
    Listing,
    Order,
    PullResult,
    PushOutcome,
    WebhookEvent,
)

MAX_STALE_RETRIES = 3
STALE_CODES = frozenset({"COMPARE_QUANTITY_STALE", "CHANGE_FROM_QUANTITY_STALE"})
#: First Admin API version with ``changeFromQuantity`` and the ``@idempotent`` directive.
CHANGE_FROM_VERSION = "2026-01"
#: ConnectionState key: {"<item gid>@<location gid>": quantity Keel last saw on Shopify}.
SEEN_KEY = "shopify.inventory_seen"
SEEN_LIMIT = 20_000
MAX_THROTTLE_RETRIES = 5
INVENTORY_BATCH = 100
ORDER_TOPICS_WITHOUT_ORDER = frozenset({"orders/delete", "orders/edited"})

INVENTORY_QUERY = """
query KeelInventoryLevels($ids: [ID!]!, $locationId: ID!) {
  nodes(ids: $ids) {
    ... on InventoryItem {
      id
      inventoryLevel(locationId: $locationId) {
        quantities(names: ["available"]) { name quantity }
      }
    }
  }
}
""".strip()

SET_QUANTITIES_MUTATION = """
mutation KeelInventorySet($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) {
    inventoryAdjustmentGroup { reason }
    userErrors { code field message }
  }
}
""".strip()

# 2026-01 and later: the idempotency key travels in the @idempotent directive.
SET_QUANTITIES_IDEMPOTENT_MUTATION = """
mutation KeelInventorySet($input: InventorySetQuantitiesInput!, $idempotencyKey: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $idempotencyKey) {
    inventoryAdjustmentGroup { reason }
    userErrors { code field message }
  }
}
""".strip()


def _gid(kind: str, ref: str) -> str:
    return ref if ref.startswith("gid://") else f"gid://shopify/{kind}/{ref}"


class ShopifyConnector:
    """One Shopify shop connection. See the module docstring."""

    def __init__(
        self,
        *,
        info: ConnectorInfo,
        settings: Mapping[str, Any],
        credentials: Mapping[str, str],
        http: HttpContext,
        clock: Clock,
        state: ConnectionState | None = None,
    ) -> None:
        self.info = info
        config = validate_connection(info, settings, credentials)
        self.state: ConnectionState = state if state is not None else MemoryState()
        self.shop_domain: str = config["shop_domain"]
        self.api_version: str = config["api_version"]
        self.location_id: str = str(config.get("location_id") or "")
        self.page_size: int = config["orders_page_size"]
        self.backfill = timedelta(days=config["backfill_days"])
        self.overlap = timedelta(seconds=config["poll_overlap_seconds"])
        self.notify_customer: bool = config["notify_customer"]
        self.service_levels: Mapping[str, str] = config.get("service_levels") or {}
        self.marketplace_sources: Sequence[str] = config["marketplace_sources"]
        self.wholesale_tags: Sequence[str] = config["wholesale_tags"]
        self.currency: str = config.get("currency") or "USD"
        self._base_url = config.get("api_base_url") or f"https://{self.shop_domain}"
        self._token = credentials["access_token"]
        self._webhook_secret = credentials["webhook_secret"]
        self._previous_secret = credentials.get("previous_webhook_secret") or ""
        until = config.get("previous_webhook_secret_valid_until")
        self._previous_until = mapping.parse_time(until) if until else None
        self._bucket = (config["rest_bucket_size"], float(config["rest_leak_rate"]))
        self._http = http
        self.clock = clock
        self._client: ApiClient | None = None

    # -- plumbing -------------------------------------------------------------------------------

    @property
    def client(self) -> ApiClient:
        # Built on first use: verifying a webhook must not pay for DNS or a connection pool.
        if self._client is None:
            capacity, leak = self._bucket
            self._client = self._http.client(
                name=self.info.name,
                base_url=self._base_url,
                headers={"X-Shopify-Access-Token": self._token, "Accept": "application/json"},
                secrets=[self._token, self._webhook_secret, self._previous_secret],
                limiter=LeakyBucketLimiter(
                    capacity=capacity, leak_rate=leak, header="X-Shopify-Shop-Api-Call-Limit"
                ),
            )
        return self._client

    def _path(self, resource: str) -> str:
        return f"/admin/api/{self.api_version}/{resource}"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def check_connection(self) -> None:
        self.client.request_json("GET", self._path("shop.json"))

    # -- orders ---------------------------------------------------------------------------------

    def _parse(self, order: Mapping[str, Any]) -> Order:
        return mapping.parse_order(
            order,
            channel=self.info.name,
            service_levels=self.service_levels,
            marketplace_sources=self.marketplace_sources,
            wholesale_tags=self.wholesale_tags,
        )

    def pull_orders(
        self, *, cursor: str | None, updated_since: datetime | None = None
    ) -> PullResult[Order]:
        state = PassCursor.decode(cursor)
        now = self.clock.now()
        page = None
        if state.mid_pass:
            try:
                page = self.client.request_json("GET", state.next_page)
            except PermanentError as exc:
                if exc.status != 400 or state.since is None:
                    raise
                # page_info expired (or was invalidated): restart this pass from its start.
                state.restart(since=state.since, now=now)
        else:
            state.begin(default_since=now - self.backfill, updated_since=updated_since, now=now)
        if page is None:
            page = self.client.request_json(
                "GET",
                self._path("orders.json"),
                params={
                    "limit": self.page_size,
                    "status": "any",
                    "updated_at_min": state.since.isoformat() if state.since else None,
                },
            )
        raw_orders = page.data.get("orders") if isinstance(page.data, dict) else None
        if not isinstance(raw_orders, list):
            raise PermanentError("Shopify orders response without an orders list")
        orders = tuple(self._parse(o) for o in raw_orders)
        state.see(o.updated_at for o in orders)
        next_url = parse_link_header(page.response.headers.get("link")).get("next")
        has_more = state.advance(next_url, now=now, overlap=self.overlap)
        return PullResult(items=orders, next_cursor=state.encode(), has_more=has_more)

    # -- listings -------------------------------------------------------------------------------

    def list_listings(self, *, cursor: str | None) -> PullResult[Listing]:
        if cursor:
            page = self.client.request_json("GET", cursor)
        else:
            page = self.client.request_json(
                "GET", self._path("products.json"), params={"limit": 250}
            )
        listings = tuple(
            listing
            for product in page.data.get("products") or ()
            for listing in mapping.parse_listings(product, self.currency)
        )
        next_url = parse_link_header(page.response.headers.get("link")).get("next")
        return PullResult(items=listings, next_cursor=next_url, has_more=next_url is not None)

    # -- webhooks -------------------------------------------------------------------------------

    def _accepted_secrets(self) -> list[str]:
        secrets = [self._webhook_secret]
        until = self._previous_until
        if self._previous_secret and until is not None and self.clock.now() <= until:
            secrets.append(self._previous_secret)
        return secrets

    def verify_webhook(self, *, headers: Mapping[str, str], body: bytes) -> None:
        lowered = webhooks.lower_headers(headers)
        webhooks.verify(lowered, body, self._accepted_secrets())
        shop = lowered.get("x-shopify-shop-domain")
        if shop is not None and shop.lower() != self.shop_domain:
            # Apps share one secret across shops: a valid signature for another shop's
            # delivery must not be accepted on this connection.
            raise WebhookVerificationError("webhook is for another shop")

    def parse_webhook(self, *, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        lowered = webhooks.lower_headers(headers)
        topic = lowered.get("x-shopify-topic") or ""
        event_id = lowered.get("x-shopify-event-id") or lowered.get("x-shopify-webhook-id") or ""
        if not topic or not event_id:
            raise PermanentError("webhook without X-Shopify-Topic or event id")
        try:
            payload = json.loads(body)
        except ValueError:
            raise PermanentError(f"webhook {topic} body is not JSON") from None
        occurred = mapping.parse_time(lowered.get("x-shopify-triggered-at")) or self.clock.now()
        order = None
        if topic.startswith("orders/") and topic not in ORDER_TOPICS_WITHOUT_ORDER:
            order = self._parse(payload)
        return WebhookEvent(
            event_id=event_id,
            topic=topic,
            occurred_at=occurred,
            payload=payload if isinstance(payload, dict) else {"value": payload},
            delivery_id=lowered.get("x-shopify-webhook-id") or "",
            order=order,
        )

    # -- inventory ------------------------------------------------------------------------------

    def _graphql(self, query: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        """POST a GraphQL document, honouring the cost bucket's THROTTLED answers.

        Marked idempotent: the queries are reads and the only mutation is compare-and-swap,
        so repeating either after an ambiguous failure cannot apply a change twice.
        """
        wait = 0.0
        for _ in range(MAX_THROTTLE_RETRIES):
            page = self.client.request_json(
                "POST",
                self._path("graphql.json"),
                json_body={"query": query, "variables": dict(variables)},
                idempotent=True,
            )
            data = page.data if isinstance(page.data, dict) else {}
            errors = data.get("errors") or []
            codes = {(e.get("extensions") or {}).get("code") for e in errors}
            if "THROTTLED" in codes:
                wait = self._throttle_wait(data)
                self.clock.sleep(wait)
                continue
            if "ACCESS_DENIED" in codes:
                raise AuthError("Shopify GraphQL: access denied (missing scope?)")
            if errors:
                messages = "; ".join(str(e.get("message", "")) for e in errors)[:300]
                raise PermanentError(f"Shopify GraphQL error: {messages}")
            return data.get("data") or {}
        raise RateLimited("Shopify GraphQL stayed throttled", retry_after=wait)

    @staticmethod
    def _throttle_wait(data: Mapping[str, Any]) -> float:
        cost = (data.get("extensions") or {}).get("cost") or {}
        status = cost.get("throttleStatus") or {}
        requested = float(cost.get("requestedQueryCost") or 0)
        available = float(status.get("currentlyAvailable") or 0)
        restore = float(status.get("restoreRate") or 50)
        return max(0.5, (requested - available) / restore)

    def _read_available(self, items: Sequence[str], location: str) -> dict[str, int | None]:
        data = self._graphql(INVENTORY_QUERY, {"ids": list(items), "locationId": location})
        found: dict[str, int | None] = dict.fromkeys(items)
        for node in data.get("nodes") or ():
            if not node:
                continue
            level = node.get("inventoryLevel")
            quantities = (level or {}).get("quantities") or []
            available = next((q["quantity"] for q in quantities if q["name"] == "available"), None)
            found[node["id"]] = available if level is not None else None
        return found

    def push_available(self, *, levels: Sequence[AvailableQuantity]) -> list[AvailablePushResult]:
        results: dict[int, AvailablePushResult] = {}
        by_location: dict[str, list[tuple[int, AvailableQuantity]]] = {}
        for index, level in enumerate(levels):
            location = level.location_ref or self.location_id
            if not location:
                results[index] = AvailablePushResult(
                    inventory_ref=level.inventory_ref,
                    location_ref="",
                    outcome=PushOutcome.REJECTED,
                    message="no location: set location_id on the connection",
                )
                continue
            by_location.setdefault(location, []).append((index, level))
        for location, entries in by_location.items():
            for start in range(0, len(entries), INVENTORY_BATCH):
                results.update(self._set_batch(location, entries[start : start + INVENTORY_BATCH]))
        return [results[i] for i in range(len(levels))]

    @staticmethod
    def _seen_key(item_gid: str, location_gid: str) -> str:
        return f"{item_gid}@{location_gid}"

    def _remember(self, observed: Mapping[str, int]) -> None:
        """Record quantities Keel now knows Shopify holds (read, or written by us)."""
        if not observed:
            return

        def merge(seen: Any) -> dict[str, int]:
            seen = dict(seen or {})
            seen.update(observed)
            if len(seen) > SEEN_LIMIT:
                # Bounded: forgetting an item only costs one read before its next write.
                seen = dict(list(seen.items())[-SEEN_LIMIT:])
            return seen

        self.state.update(SEEN_KEY, merge, default={})

    def _uses_change_from(self) -> bool:
        return self.api_version >= CHANGE_FROM_VERSION

    def _write_quantities(
        self, location_gid: str, writes: Sequence[tuple[str, int, int]]
    ) -> list[dict[str, Any]]:
        """One atomic ``inventorySetQuantities`` of (item gid, quantity, compare value);
        returns its userErrors."""
        if self._uses_change_from():
            field, extra = "changeFromQuantity", {}
            query = SET_QUANTITIES_IDEMPOTENT_MUTATION
        else:
            field, extra = "compareQuantity", {"ignoreCompareQuantity": False}
            query = SET_QUANTITIES_MUTATION
        variables: dict[str, Any] = {
            "input": {
                "name": "available",
                "reason": "correction",
                **extra,
                "quantities": [
                    {
                        "inventoryItemId": gid,
                        "locationId": location_gid,
                        "quantity": quantity,
                        field: compare,
                    }
                    for gid, quantity, compare in writes
                ],
            }
        }
        if self._uses_change_from():
            # One key per attempt: the HTTP client repeating this exact body after a lost
            # answer gets Shopify's first result back; a CAS retry is a new attempt.
            variables["idempotencyKey"] = str(uuid.uuid4())
        data = self._graphql(query, variables)
        return (data.get("inventorySetQuantities") or {}).get("userErrors") or []

    def _set_batch(
        self, location: str, entries: list[tuple[int, AvailableQuantity]]
    ) -> dict[int, AvailablePushResult]:
        location_gid = _gid("Location", location)
        results: dict[int, AvailablePushResult] = {}
        pending = list(entries)
        seen: Mapping[str, int] = self.state.get(SEEN_KEY, {}) or {}
        attempts = 0
        reread = False
        while pending and attempts <= MAX_STALE_RETRIES:
            attempts += 1
            gids = [_gid("InventoryItem", level.inventory_ref) for _, level in pending]
            known: dict[str, int | None] = {}
            if not reread:
                known = {
                    gid: seen[self._seen_key(gid, location_gid)]
                    for gid in gids
                    if self._seen_key(gid, location_gid) in seen
                }
            unknown = [gid for gid in gids if gid not in known]
            if unknown:
                current = self._read_available(unknown, location_gid)
                known.update(current)
                self._remember(
                    {
                        self._seen_key(gid, location_gid): quantity
                        for gid, quantity in current.items()
                        if quantity is not None
                    }
                )
            writable = []
            for (index, level), gid in zip(pending, gids, strict=True):
                if known.get(gid) is None:
                    results[index] = AvailablePushResult(
                        level.inventory_ref,
                        location,
                        PushOutcome.REJECTED,
                        attempts=attempts,
                        message="item not stocked at this location",
                    )
                else:
                    writable.append((index, level, gid, known[gid]))
            if not writable:
                break
            errors = self._write_quantities(
                location_gid,
                [(gid, level.available, previous) for _, level, gid, previous in writable],
            )
            if not errors:
                for index, level, _, previous in writable:
                    results[index] = AvailablePushResult(
                        level.inventory_ref, location, PushOutcome.APPLIED, previous, attempts
                    )
                self._remember(
                    {
                        self._seen_key(gid, location_gid): level.available
                        for _, level, gid, _ in writable
                    }
                )
                return results
            if not any(e.get("code") in STALE_CODES for e in errors) and not any(
                _error_position(e.get("field")) is not None for e in errors
            ):
                message = f"{errors[0].get('code')}: {errors[0].get('message', '')}"[:200]
                for index, level, _, previous in writable:
                    results[index] = AvailablePushResult(
                        level.inventory_ref,
                        location,
                        PushOutcome.REJECTED,
                        previous,
                        attempts,
                        message,
                    )
                return results
            rejected: dict[int, str] = {}
            for error in errors:
                position = _error_position(error.get("field"))
                if error.get("code") not in STALE_CODES and position is not None:
                    rejected[position] = f"{error.get('code')}: {error.get('message', '')}"[:200]
            for position, message in rejected.items():
                if 0 <= position < len(writable):
                    index, level, _, previous = writable[position]
                    results[index] = AvailablePushResult(
                        level.inventory_ref,
                        location,
                        PushOutcome.REJECTED,
                        previous,
                        attempts,
                        message,
                    )
            # Nothing was applied (the call is atomic): re-read what Shopify holds now and
            # retry everything not rejected.
            pending = [(index, level) for index, level, _, _ in writable if index not in results]
            reread = True
        for index, level in pending:
            results[index] = AvailablePushResult(
                level.inventory_ref,
                location,
                PushOutcome.STALE,
                attempts=attempts,
                message="quantity kept changing on Shopify; retry later",
            )
        return results

    # -- fulfillment ----------------------------------------------------------------------------

    def push_fulfillment(self, *, shipment: FulfillmentConfirmation) -> ChannelFulfillmentResult:
        order_id = shipment.order_ref
        fulfillment_orders = (
            self.client.request_json(
                "GET", self._path(f"orders/{order_id}/fulfillment_orders.json")
            ).data.get("fulfillment_orders")
            or []
        )
        wanted: dict[str, int] = {}
        for line in shipment.lines:
            if not line.external_line_id:
                raise PermanentError("Shopify fulfillment lines need the order's line item id")
            wanted[line.external_line_id] = wanted.get(line.external_line_id, 0) + line.quantity
        groups = []
        for fo in fulfillment_orders:
            if fo.get("status") not in ("open", "in_progress", "scheduled"):
                continue
            items = []
            for item in fo.get("line_items") or ():
                line_id = str(item.get("line_item_id"))
                available = int(item.get("fulfillable_quantity") or 0)
                if shipment.lines:
                    take = min(wanted.get(line_id, 0), available)
                    wanted[line_id] = wanted.get(line_id, 0) - take
                else:
                    take = available
                if take > 0:
                    items.append({"id": item["id"], "quantity": take})
            if items:
                groups.append(
                    {"fulfillment_order_id": fo["id"], "fulfillment_order_line_items": items}
                )
        if not groups:
            existing = self._existing_fulfillment(order_id, shipment)
            if existing is not None:
                return existing
            raise PermanentError(f"Shopify order {order_id} has nothing left to fulfill")
        tracking: dict[str, Any] = {"company": shipment.carrier}
        if shipment.tracking_numbers:
            tracking["number"] = shipment.tracking_numbers[0]
        if shipment.tracking_urls:
            tracking["url"] = shipment.tracking_urls[0]
        created = (
            self.client.request_json(
                "POST",
                self._path("fulfillments.json"),
                json_body={
                    "fulfillment": {
                        "line_items_by_fulfillment_order": groups,
                        "tracking_info": tracking,
                        "notify_customer": self.notify_customer and shipment.notify_customer,
                    }
                },
            ).data.get("fulfillment")
            or {}
        )
        return ChannelFulfillmentResult(external_id=str(created.get("id", "")), order_ref=order_id)

    def _existing_fulfillment(
        self, order_id: str, shipment: FulfillmentConfirmation
    ) -> ChannelFulfillmentResult | None:
        data = self.client.request_json(
            "GET", self._path(f"orders/{order_id}/fulfillments.json")
        ).data
        numbers = set(shipment.tracking_numbers)
        for fulfillment in data.get("fulfillments") or ():
            theirs = set(fulfillment.get("tracking_numbers") or ())
            if fulfillment.get("tracking_number"):
                theirs.add(fulfillment["tracking_number"])
            if numbers & theirs:
                return ChannelFulfillmentResult(
                    external_id=str(fulfillment["id"]), order_ref=order_id, already_existed=True
                )
        return None


def _error_position(field: Any) -> int | None:
    # userErrors point at ["input", "quantities", "3", "compareQuantity"].
    if isinstance(field, list) and len(field) >= 3 and field[1] == "quantities":
        try:
            return int(field[2])
        except (TypeError, ValueError):
            return None
    return None
