"""Amazon Selling Partner API channel connector.

Behaviour worth knowing:

- **Auth**: a Login with Amazon (LWA) access token, exchanged for the seller's refresh token
  (``grant_type=refresh_token``), travels in ``x-amz-access-token`` (no SigV4). It lives an
  hour; the connector keeps it in the connection's (encrypted) ``ConnectionState`` and
  exchanges a new one a minute before it expires. A refused refresh token
  (``invalid_grant``) or client (``invalid_client``) is an :class:`AuthError`, after which the
  instance sends nothing more.
- **Buyer PII** (buyer name and email, street address) is restricted: it is only returned to
  a call made with a Restricted Data Token. With ``include_pii`` the connector first asks the
  Tokens API (``createRestrictedDataToken`` for ``GET /orders/v0/orders`` with
  ``dataElements`` ``buyerInfo`` + ``shippingAddress``) and reads the order list with the RDT
  in ``x-amz-access-token``; the RDT and the LWA token are added to every client's redaction
  list before first use, so neither reaches a log line, and PII is stripped from
  ``Order.raw``. Without ``include_pii`` orders arrive with city/region/postal code only.
- **Orders**: ``getOrders`` with ``LastUpdatedAfter`` and ``MarketplaceIds`` (``MaxResultsPerPage``
  ≤ 100), then ``NextToken`` pages; each order's lines come from ``getOrderItems`` (its own
  ``NextToken`` pages). The cursor is a :class:`~connectors.cursor.PassCursor` carrying the
  NextToken mid-pass (an expired NextToken — 400 — restarts the pass from its start) and a
  watermark between passes that overlaps the pass start by ``poll_overlap_seconds``.
- **Rate limits**: one token bucket per operation (:mod:`connectors.amazon.ratelimit`;
  ``getOrders`` 0.0167/s burst 20, ``getOrderItems`` 0.5/s burst 30…, overridable with
  ``rate_limits``), resynchronised from ``x-amzn-RateLimit-Limit``; a 429 ``QuotaExceeded``
  empties the bucket (and a ``Retry-After``, when sent, closes the client's gate). The
  buckets' levels are saved in ``ConnectionState``, so the next task does not burst into a
  bucket this one emptied. A wait longer than ``max_wait_seconds`` raises
  :class:`RateLimited` with the wait, for the platform to reschedule the task.
- **Quantities**: Listings Items API ``patchListingsItem`` replacing
  ``/attributes/fulfillment_availability`` (``fulfillment_channel_code: DEFAULT``) for the
  seller SKU in each marketplace. An absolute set — Amazon offers no compare-and-swap — so it
  is safe to repeat. FBA quantities are Amazon's: such SKUs come back rejected.
- **Listings**: ``searchListingsItems`` (``pageToken`` pages); the seller SKU is the inventory
  reference.
- **Notifications**: SP-API delivers order notifications to an Amazon SQS queue (or
  EventBridge), not to an HTTPS webhook, so the connector declares no webhooks and the
  platform polls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from connectors.amazon import mapping
from connectors.amazon.ratelimit import DEFAULT_PLANS, UsagePlanLimiter
from connectors.clock import Clock
from connectors.config import validate_connection
from connectors.cursor import PassCursor
from connectors.errors import (
    AuthError,
    ConfigurationError,
    NotFoundError,
    PermanentError,
    RateLimited,
)
from connectors.http import ApiClient, HttpContext, JsonResponse, Redactor
from connectors.state import ConnectionState
from connectors.types import (
    AvailablePushResult,
    AvailableQuantity,
    ConnectorInfo,
    Listing,
    Order,
    PullResult,
    PushOutcome,
)

ORDERS_PATH = "/orders/v0/orders"
RDT_PATH = "/tokens/2021-03-01/restrictedDataToken"
LISTINGS_PATH = "/listings/2021-08-01/items"
PARTICIPATIONS_PATH = "/sellers/v1/marketplaceParticipations"
PII_ELEMENTS = ("buyerInfo", "shippingAddress")
TOKEN_KEY = "amazon.lwa"
BUCKETS_KEY = "amazon.buckets"
#: Refresh tokens this long before Amazon says they expire.
TOKEN_MARGIN = 60.0
MAX_ITEM_PAGES = 20


class AmazonConnector:
    """One selling partner authorization. See the module docstring."""

    def __init__(
        self,
        *,
        info: ConnectorInfo,
        settings: Mapping[str, Any],
        credentials: Mapping[str, str],
        http: HttpContext,
        state: ConnectionState,
        clock: Clock,
    ) -> None:
        self.info = info
        config = validate_connection(info, settings, credentials)
        self.seller_id: str = config["seller_id"]
        self.marketplace_ids: list[str] = list(config["marketplace_ids"])
        self.currency: str = config["currency"]
        self.include_pii: bool = config["include_pii"]
        self.page_size: int = config["orders_page_size"]
        self.backfill = timedelta(days=config["backfill_days"])
        self.overlap = timedelta(seconds=config["poll_overlap_seconds"])
        self.max_wait = float(config["max_wait_seconds"])
        self.plans: dict[str, tuple[float, int]] = dict(DEFAULT_PLANS)
        for operation, plan in (config.get("rate_limits") or {}).items():
            rate, _, burst = str(plan).partition("/")
            if float(rate) <= 0:
                raise ConfigurationError(f"{info.name}: rate_limits.{operation}: rate must be > 0")
            self.plans[operation] = (float(rate), int(burst))
        self._base_url = str(config["api_base_url"])
        self._token_url = str(config["lwa_token_url"])
        self._client_id = str(config["lwa_client_id"])
        self._client_secret = credentials["lwa_client_secret"]
        self._refresh_token = credentials["refresh_token"]
        self._http = http
        self.state = state
        self.clock = clock
        self._secrets: list[str] = [self._client_secret, self._refresh_token]
        self._clients: dict[str, ApiClient] = {}
        self._limiters: dict[str, UsagePlanLimiter] = {}
        self._lwa: ApiClient | None = None
        self._token: tuple[str, float] | None = None
        self._rdt: tuple[str, float] | None = None
        self._auth_failure: str | None = None

    # -- plumbing -------------------------------------------------------------------------------

    def _remember_secret(self, value: str) -> None:
        """Redact ``value`` (a token just obtained) in every client's logs and errors."""
        if value in self._secrets:
            return
        self._secrets.append(value)
        redactor = Redactor((*self._http.secrets, *self._secrets))
        for client in (*self._clients.values(), *([self._lwa] if self._lwa else [])):
            client.redactor = redactor

    def _limiter(self, operation: str) -> UsagePlanLimiter:
        limiter = self._limiters.get(operation)
        if limiter is None:
            rate, burst = self.plans[operation]
            limiter = UsagePlanLimiter(rate=rate, burst=burst)
            saved = (self.state.get(BUCKETS_KEY, {}) or {}).get(operation)
            if saved:
                limiter.restore(saved, self.clock.monotonic(), self.clock.now().timestamp())
            self._limiters[operation] = limiter
        return limiter

    def _client(self, operation: str) -> ApiClient:
        client = self._clients.get(operation)
        if client is None:
            client = self._http.client(
                name=self.info.name,
                base_url=self._base_url,
                headers={"Accept": "application/json"},
                secrets=self._secrets,
                limiter=self._limiter(operation),
            )
            self._clients[operation] = client
        return client

    def _save_buckets(self) -> None:
        if not self._limiters:
            return
        now, wall = self.clock.monotonic(), self.clock.now().timestamp()
        levels = {op: limiter.export(now, wall) for op, limiter in self._limiters.items()}

        def merge(saved: Any) -> dict[str, Any]:
            return {**(saved or {}), **levels}

        self.state.update(BUCKETS_KEY, merge, default={})

    def close(self) -> None:
        try:
            self._save_buckets()
        finally:
            for client in (*self._clients.values(), *([self._lwa] if self._lwa else [])):
                client.close()
            self._clients.clear()
            self._lwa = None

    def _fail_auth(self, message: str, status: int | None) -> AuthError:
        self._auth_failure = message
        return AuthError(message, status=status)

    def _check_auth(self) -> None:
        if self._auth_failure is not None:
            # Credentials already failed on this instance: don't ask Amazon again.
            raise AuthError(self._auth_failure, status=None)

    # -- tokens ---------------------------------------------------------------------------------

    def _access_token(self) -> str:
        self._check_auth()
        now = self.clock.now().timestamp()
        if self._token is None:
            stored = self.state.get(TOKEN_KEY) or {}
            if stored.get("access_token") and stored.get("client_id") == self._client_id:
                self._token = (str(stored["access_token"]), float(stored["expires_at"]))
        if self._token is not None and self._token[1] - TOKEN_MARGIN > now:
            self._remember_secret(self._token[0])
            return self._token[0]
        if self._lwa is None:
            self._lwa = self._http.client(
                name=f"{self.info.name}.lwa",
                base_url=_origin(self._token_url),
                headers={"Accept": "application/json"},
                secrets=self._secrets,
            )
        try:
            response = self._lwa.request(
                "POST",
                self._token_url,
                content=_form(
                    grant_type="refresh_token",
                    refresh_token=self._refresh_token,
                    client_id=self._client_id,
                    client_secret=self._client_secret,
                ),
                headers={"Content-Type": "application/x-www-form-urlencoded;charset=UTF-8"},
                # The exchange creates nothing; repeating it after a lost answer is harmless.
                idempotent=True,
            )
        except AuthError as exc:
            raise self._fail_auth(
                "Amazon refused the LWA client credentials (invalid_client)", exc.status
            ) from None
        except PermanentError as exc:
            if exc.status == 400 and "invalid_grant" in (exc.detail or ""):
                raise self._fail_auth(
                    "Amazon refused the refresh token (invalid_grant): the seller must "
                    "authorize the application again",
                    400,
                ) from None
            raise
        try:
            data = response.json()
            token = str(data["access_token"])
            expires = float(data.get("expires_in") or 3600)
        except (ValueError, KeyError, TypeError):
            raise PermanentError("LWA token response without an access token") from None
        self._remember_secret(token)
        self._token = (token, now + expires)
        self.state.set(
            TOKEN_KEY,
            {"access_token": token, "expires_at": now + expires, "client_id": self._client_id},
        )
        return token

    def _restricted_token(self) -> str:
        """An RDT for reading the order list with buyer info and shipping addresses."""
        now = self.clock.now().timestamp()
        if self._rdt is not None and self._rdt[1] - TOKEN_MARGIN > now:
            return self._rdt[0]
        try:
            data = self._call(
                "createRestrictedDataToken",
                "POST",
                RDT_PATH,
                json_body={
                    "restrictedResources": [
                        {"method": "GET", "path": ORDERS_PATH, "dataElements": list(PII_ELEMENTS)}
                    ]
                },
                idempotent=True,  # a token request creates nothing
            ).data
        except AuthError as exc:
            raise self._fail_auth(
                "Amazon refused a Restricted Data Token for buyer data: the application needs "
                "the Direct-to-Consumer Delivery role, or turn off include_pii",
                exc.status,
            ) from None
        try:
            token = str(data["restrictedDataToken"])
            expires = float(data.get("expiresIn") or 3600)
        except (KeyError, TypeError, ValueError):
            raise PermanentError("Tokens API answer without a restrictedDataToken") from None
        self._remember_secret(token)
        self._rdt = (token, now + expires)
        return token

    def _call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        token: str | None = None,
        idempotent: bool | None = None,
    ) -> JsonResponse:
        """One SP-API operation, paced by its usage plan."""
        access = token or self._access_token()
        self._check_auth()
        wait = self._limiter(operation).wait_time(self.clock.monotonic())
        if wait > self.max_wait:
            self._save_buckets()
            raise RateLimited(
                f"Amazon {operation}: the usage plan allows the next call in {wait:.0f}s",
                retry_after=wait,
            )
        try:
            return self._client(operation).request_json(
                method,
                path,
                params=params,
                json_body=json_body,
                headers={"x-amz-access-token": access},
                idempotent=idempotent,
            )
        except AuthError as exc:
            raise self._fail_auth(exc.message, exc.status) from None

    # -- connection -----------------------------------------------------------------------------

    def check_connection(self) -> None:
        self._call("getMarketplaceParticipations", "GET", PARTICIPATIONS_PATH)

    # -- orders ---------------------------------------------------------------------------------

    def _order_items(self, order_id: str) -> list[Mapping[str, Any]]:
        items: list[Mapping[str, Any]] = []
        next_token: str | None = None
        for _ in range(MAX_ITEM_PAGES):
            page = self._call(
                "getOrderItems",
                "GET",
                f"{ORDERS_PATH}/{quote(order_id, safe='')}/orderItems",
                params={"NextToken": next_token} if next_token else None,
            ).data
            payload = (page or {}).get("payload") or {}
            items.extend(payload.get("OrderItems") or [])
            next_token = payload.get("NextToken")
            if not next_token:
                return items
        raise PermanentError(f"Amazon order {order_id}: more than {MAX_ITEM_PAGES} item pages")

    def pull_orders(
        self, *, cursor: str | None, updated_since: datetime | None = None
    ) -> PullResult[Order]:
        state = PassCursor.decode(cursor)
        now = self.clock.now()
        if not state.mid_pass:
            state.begin(default_since=now - self.backfill, updated_since=updated_since, now=now)
        token = self._restricted_token() if self.include_pii else None
        params: dict[str, Any] = {"MarketplaceIds": ",".join(self.marketplace_ids)}
        if state.mid_pass:
            params["NextToken"] = state.next_page
        else:
            params["LastUpdatedAfter"] = _iso(state.since or now)
            params["MaxResultsPerPage"] = self.page_size
        try:
            page = self._call("getOrders", "GET", ORDERS_PATH, params=params, token=token)
        except PermanentError as exc:
            if not (state.mid_pass and exc.status == 400 and state.since is not None):
                raise
            # The NextToken expired: restart this pass from its own start.
            state.restart(since=state.since, now=now)
            params = {
                "MarketplaceIds": ",".join(self.marketplace_ids),
                "LastUpdatedAfter": _iso(state.since or now),
                "MaxResultsPerPage": self.page_size,
            }
            page = self._call("getOrders", "GET", ORDERS_PATH, params=params, token=token)
        payload = (page.data or {}).get("payload") if isinstance(page.data, dict) else None
        if not isinstance(payload, dict) or not isinstance(payload.get("Orders"), list):
            raise PermanentError("SP-API getOrders response without payload.Orders")
        orders = tuple(
            mapping.parse_order(
                raw,
                self._order_items(str(raw.get("AmazonOrderId") or "")),
                channel=self.info.name,
                currency=self.currency,
            )
            for raw in payload["Orders"]
        )
        state.see(o.updated_at for o in orders)
        has_more = state.advance(payload.get("NextToken") or None, now=now, overlap=self.overlap)
        self._save_buckets()
        return PullResult(items=orders, next_cursor=state.encode(), has_more=has_more)

    # -- listings -------------------------------------------------------------------------------

    def list_listings(self, *, cursor: str | None) -> PullResult[Listing]:
        params: dict[str, Any] = {
            "marketplaceIds": self.marketplace_ids[0],
            "includedData": "summaries",
            "pageSize": 20,
        }
        if cursor:
            params["pageToken"] = cursor
        data = self._call(
            "searchListingsItems",
            "GET",
            f"{LISTINGS_PATH}/{quote(self.seller_id, safe='')}",
            params=params,
        ).data
        listings = tuple(
            mapping.parse_listing(item, self.marketplace_ids[0])
            for item in (data or {}).get("items") or ()
        )
        next_token = ((data or {}).get("pagination") or {}).get("nextToken")
        return PullResult(items=listings, next_cursor=next_token, has_more=bool(next_token))

    # -- quantities -----------------------------------------------------------------------------

    def push_available(self, *, levels: Sequence[AvailableQuantity]) -> list[AvailablePushResult]:
        results = [self._push_one(level) for level in levels]
        self._save_buckets()
        return results

    def _push_one(self, level: AvailableQuantity) -> AvailablePushResult:
        marketplace = level.location_ref or self.marketplace_ids[0]

        def result(outcome: PushOutcome, message: str = "") -> AvailablePushResult:
            return AvailablePushResult(
                level.inventory_ref, marketplace, outcome, message=message[:200]
            )

        try:
            data = self._call(
                "patchListingsItem",
                "PATCH",
                f"{LISTINGS_PATH}/{quote(self.seller_id, safe='')}/"
                f"{quote(level.inventory_ref, safe='')}",
                params={"marketplaceIds": marketplace},
                json_body={
                    "productType": "PRODUCT",
                    "patches": [
                        {
                            "op": "replace",
                            "path": "/attributes/fulfillment_availability",
                            "value": [
                                {
                                    "fulfillment_channel_code": "DEFAULT",
                                    "quantity": level.available,
                                }
                            ],
                        }
                    ],
                },
                # Setting an absolute quantity twice has the effect of setting it once.
                idempotent=True,
            ).data
        except NotFoundError:
            return result(PushOutcome.REJECTED, "no listing with this seller SKU")
        except PermanentError as exc:
            return result(PushOutcome.REJECTED, exc.message)
        errors = [
            issue
            for issue in (data or {}).get("issues") or ()
            if str(issue.get("severity", "")).upper() == "ERROR"
        ]
        if (data or {}).get("status") != "ACCEPTED" or errors:
            first = errors[0] if errors else {}
            message = f"{first.get('code', 'INVALID')}: {first.get('message', '')}"
            return result(PushOutcome.REJECTED, message)
        return result(PushOutcome.APPLIED)


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def _form(**fields: str) -> bytes:
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in fields.items()).encode()


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


__all__ = ["AmazonConnector"]
