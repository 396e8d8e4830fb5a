"""Amazon SP-API connector against the fake SP-API: the contract kit, RELIABILITY 23's SP-API
part (usage-plan pacing, 429 QuotaExceeded, Restricted Data Token before PII, no RDT or
PII in logs), pagination, mapping and quantity pushes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from decimal import Decimal
from urllib.parse import parse_qs

import httpx
import pytest

import connectors.amazon as amazon_plugin
from connectors.clock import SystemClock, VirtualClock
from connectors.errors import AuthError, ConfigurationError, RateLimited
from connectors.fakeapi import FakeResponse
from connectors.http import EgressPolicy, HttpContext
from connectors.manager import make_test_manager
from connectors.state import MemoryState
from connectors.testing import ConnectorContract, ContractHarness
from connectors.types import AvailableQuantity, OrderStatus, OrderType, PushOutcome, ServiceLevel
from tests.fakes.amazon import FakeAmazon

ORDERS = r"^/orders/v0/orders$"
ITEMS = r"/orderItems$"


def amazon_settings(fake: FakeAmazon, **overrides: object) -> dict[str, object]:
    return {
        "seller_id": fake.seller_id,
        "marketplace_ids": [fake.marketplace_id],
        "lwa_client_id": fake.client_id,
        "api_base_url": fake.url,
        "lwa_token_url": fake.token_url,
        **overrides,
    }


def amazon_credentials(fake: FakeAmazon, **overrides: str) -> dict[str, str]:
    return {
        "lwa_client_secret": fake.client_secret,
        "refresh_token": fake.refresh_token,
        **overrides,
    }


def build(fake: FakeAmazon, http: HttpContext, clock, *, state=None, credentials=None, **settings):
    pm = make_test_manager(amazon_plugin)
    return pm.hook.keel_connector_factory(
        name="amazon",
        settings=amazon_settings(fake, **settings),
        credentials=credentials or amazon_credentials(fake),
        http=http,
        state=state if state is not None else MemoryState(),
        clock=clock,
    )


def pull_all(connector, cursor=None, limit=1000):
    orders, pages = [], 0
    while pages < limit:
        result = connector.pull_orders(cursor=cursor)
        pages += 1
        orders += result.items
        cursor = result.next_cursor
        if not result.has_more:
            return orders, cursor, pages
    raise AssertionError("pull did not finish")


def assert_conforms(times: list[float], *, rate: float, burst: int) -> None:
    """No window of requests holds more than the burst plus the tokens restored in it."""
    for i, start in enumerate(times):
        for j in range(i, len(times)):
            allowed = burst + rate * 1.05 * (times[j] - start)
            assert j - i + 1 <= allowed + 1e-6, (i, j, times[j] - start)


def quota_exceeded(retry_after: float | None = None, rate: str = "0.0167") -> FakeResponse:
    headers = {"x-amzn-RateLimit-Limit": rate}
    if retry_after is not None:
        headers["Retry-After"] = f"{retry_after:g}"
    return FakeResponse.json(
        {
            "errors": [
                {
                    "code": "QuotaExceeded",
                    "message": "You exceeded your quota for the requested resource.",
                    "details": "",
                }
            ]
        },
        429,
        headers,
    )


@pytest.fixture
def amazon(clock: VirtualClock) -> Iterator[FakeAmazon]:
    with FakeAmazon(clock=clock) as fake:
        yield fake


# -- contract kit ----------------------------------------------------------------------------------


class TestAmazonContract(ConnectorContract):
    @pytest.fixture
    def harness(self) -> Iterator[ContractHarness]:
        clock = VirtualClock()
        with FakeAmazon(clock=clock) as fake:

            def seed(n: int) -> set[str]:
                clock.advance(1)
                return set(fake.add_orders(n))

            yield ContractHarness(
                plugin=amazon_plugin,
                name="amazon",
                clock=clock,
                fake=fake,
                settings=amazon_settings(fake, orders_page_size=20, backfill_days=0),
                credentials=amazon_credentials(fake),
                seed_items=seed,
                page_items=55,
                pull=lambda c, cursor: c.pull_orders(
                    cursor=cursor, updated_since=clock.now() if cursor is None else None
                ),
                probe=lambda c: c.check_connection(),
                throttle_response=lambda s: quota_exceeded(s),
                revoke_credentials=fake.revoke,
                # A token exchanged by an earlier task, so the probe is one request.
                state=fake.primed_state(),
            )


# -- orders: pagination, cursor, mapping -----------------------------------------------------------


def test_pulls_every_order_once_through_next_token_pages(
    amazon: FakeAmazon, http: HttpContext, clock: VirtualClock
):
    expected = set(amazon.add_orders(250))
    connector = build(amazon, http, clock)
    orders, _, pages = pull_all(connector)
    ids = [o.external_id for o in orders]
    assert len(ids) == len(set(ids)) == 250 and set(ids) == expected
    assert pages == 3
    entries = amazon.journal.entries("GET", ORDERS)
    first = parse_qs(entries[0].raw_query)
    assert first["MaxResultsPerPage"] == ["100"] and "LastUpdatedAfter" in first
    assert first["MarketplaceIds"] == [amazon.marketplace_id]
    # later pages send the NextToken the previous page returned, and no other filter
    for entry in entries[1:]:
        assert set(parse_qs(entry.raw_query)) == {"MarketplaceIds", "NextToken"}
    assert amazon.journal.count("GET", ITEMS) == 250
    assert 429 not in amazon.journal.statuses()


def test_next_poll_sees_new_and_updated_orders_and_expired_next_token_restarts(
    amazon: FakeAmazon, http: HttpContext, clock: VirtualClock
):
    first_batch = amazon.add_orders(150)
    connector = build(amazon, http, clock)
    page1 = connector.pull_orders(cursor=None)
    amazon.expire_next_tokens()
    rest, cursor, _ = pull_all(connector, page1.next_cursor)
    assert {o.external_id for o in page1.items + tuple(rest)} == set(first_batch)
    assert 400 in amazon.journal.statuses("GET", ORDERS)
    # when orders change after the pass
    clock.advance(900)
    amazon.update_order(first_batch[0], OrderStatus="Canceled")
    new = amazon.add_orders(3)
    clock.advance(60)
    changed, _, _ = pull_all(connector, cursor)
    by_id = {o.external_id: o for o in changed}
    assert {first_batch[0], *new} <= set(by_id)
    assert by_id[first_batch[0]].status is OrderStatus.CANCELLED


def test_orders_map_to_canonical_marketplace_orders(
    amazon: FakeAmazon, http: HttpContext, clock: VirtualClock
):
    [mfn] = amazon.add_orders(1, sku="AMZ-002", quantity=2)
    [fba] = amazon.add_orders(1, sku="AMZ-003", fulfillment="AFN")
    amazon.update_order(mfn, ShipmentServiceLevelCategory="NextDay", IsBusinessOrder=True)
    orders = {o.external_id: o for o in pull_all(build(amazon, http, clock))[0]}
    order = orders[mfn]
    raw = amazon.orders[mfn]
    assert order.order_type is OrderType.MARKETPLACE
    assert order.service_level is ServiceLevel.OVERNIGHT
    assert order.status is OrderStatus.OPEN
    assert "business" in order.flags and "fba" not in order.flags
    [line] = order.lines
    assert (line.sku, line.quantity, line.listing_id) == ("AMZ-002", 2, "B0KEEL0002")
    assert line.unit_price.amount == Decimal("22.00") and line.requires_shipping
    assert order.totals.total.amount == Decimal(raw["OrderTotal"]["Amount"])
    assert order.placed_at.tzinfo is not None
    # PII went to the canonical fields and not into raw
    assert (
        order.ship_to is not None and order.ship_to.line1 == raw["ShippingAddress"]["AddressLine1"]
    )
    assert order.customer is not None and order.customer.email == raw["BuyerInfo"]["BuyerEmail"]
    assert "BuyerInfo" not in order.raw and "ShippingAddress" not in order.raw
    assert order.raw["OrderItems"][0]["SellerSKU"] == "AMZ-002"
    # FBA: Amazon ships from its own stock, the brand ships (and reserves) nothing
    assert "fba" in orders[fba].flags
    assert [line.requires_shipping for line in orders[fba].lines] == [False]


# -- RELIABILITY 23: usage plans -------------------------------------------------------------------


def test_sustained_get_orders_rate_stays_within_the_usage_plan(
    http: HttpContext, clock: VirtualClock
):
    # 350 orders in pages of 10: 35 getOrders calls, 15 beyond the burst of 20 at 0.0167/s.
    # getOrderItems gets a bigger plan here, so getOrders' own plan is what paces the pull.
    items_plan = {"getOrderItems": (10.0, 30)}
    with FakeAmazon(clock=clock, plans=items_plan) as fake:
        fake.add_orders(350)
        connector = build(
            fake,
            http,
            clock,
            orders_page_size=10,
            rate_limits={"getOrderItems": "10/30"},
        )
        orders, _, pages = pull_all(connector)
        times = fake.journal.times("GET", ORDERS)
        item_times = fake.journal.times("GET", ITEMS)
        statuses = fake.journal.statuses()
    assert len({o.external_id for o in orders}) == 350 and pages == 35
    assert 429 not in statuses
    # Politeness as the fake's token bucket sees it: in every window, at most the burst
    # plus what the plan restored (+5 %) — so the sustained rate stays within the plan.
    assert_conforms(times, rate=0.0167, burst=20)
    assert (len(times) - 20) / (times[-1] - times[0]) <= 0.0167 * 1.05
    # ... and once the bucket is empty the client does not idle: one call per token
    gaps = [b - a for a, b in zip(times[-6:], times[-5:], strict=False)]
    assert all(1 / 0.0167 - 1e-6 <= gap <= 1.05 / 0.0167 for gap in gaps), gaps
    # getOrderItems has its own plan
    assert_conforms(item_times, rate=10.0, burst=30)


def test_get_order_items_is_paced_by_its_published_plan(
    amazon: FakeAmazon, http: HttpContext, clock: VirtualClock
):
    amazon.add_orders(80)
    pull_all(build(amazon, http, clock))
    times = amazon.journal.times("GET", ITEMS)
    assert len(times) == 80 and 429 not in amazon.journal.statuses()
    assert_conforms(times, rate=0.5, burst=30)
    assert (len(times) - 30) / (times[-1] - times[0]) <= 0.5 * 1.05


def test_rate_limit_header_resynchronises_the_pacing(clock: VirtualClock, http: HttpContext):
    # The seller's plan is bigger than the published default; Amazon says so in the header.
    plans = {"getOrders": (0.5, 20), "getOrderItems": (10.0, 30)}
    with FakeAmazon(clock=clock, plans=plans) as fake:
        fake.add_orders(60)
        connector = build(
            fake,
            http,
            clock,
            orders_page_size=2,
            rate_limits={"getOrderItems": "10/30"},
        )
        _, _, pages = pull_all(connector)
        times = fake.journal.times("GET", ORDERS)
        statuses = fake.journal.statuses()
    assert pages == 30 and 429 not in statuses
    gaps = [b - a for a, b in zip(times[20:], times[21:], strict=False)]
    assert gaps and max(gaps) <= 2.0 * 1.05  # 0.5/s, not one request a minute
    assert_conforms(times, rate=0.5, burst=20)


def test_quota_exceeded_without_retry_after_waits_for_the_next_token(
    amazon: FakeAmazon, http: HttpContext, clock: VirtualClock
):
    amazon.add_orders(30)
    connector = build(amazon, http, clock, orders_page_size=10)
    first = connector.pull_orders(cursor=None)
    # another process spent the bucket: Amazon answers QuotaExceeded, no Retry-After
    amazon.fail_next(quota_exceeded())
    rest, _, _ = pull_all(connector, first.next_cursor)
    assert len({o.external_id for o in first.items + tuple(rest)}) == 30
    entries = amazon.journal.entries("GET", ORDERS)
    throttled = [i for i, e in enumerate(entries) if e.status == 429]
    assert len(throttled) == 1
    # the bucket is assumed empty: the retry waits one token (1 / 0.0167 s)
    assert entries[throttled[0] + 1].at - entries[throttled[0]].at >= 1 / 0.0167 - 1e-6


def test_no_request_before_retry_after_expires(
    amazon: FakeAmazon, http: HttpContext, clock: VirtualClock
):
    amazon.add_orders(30)
    connector = build(amazon, http, clock, orders_page_size=10)
    first = connector.pull_orders(cursor=None)
    amazon.fail_next(quota_exceeded(retry_after=90))
    pull_all(connector, first.next_cursor)
    entries = amazon.journal.entries()
    [index] = [i for i, e in enumerate(entries) if e.status == 429]
    expires = entries[index].at + 90
    assert [e for e in entries if entries[index].at < e.at < expires] == []
    assert entries[index + 1].at >= expires


def test_a_long_wait_reschedules_the_task_and_the_next_task_does_not_burst(
    clock: VirtualClock, http: HttpContext
):
    fast_items = {"getOrderItems": "10/30"}
    with FakeAmazon(clock=clock, plans={"getOrderItems": (10.0, 30)}) as amazon:
        amazon.add_orders(250)
        state = MemoryState()

        def task():
            return build(
                amazon,
                http,
                clock,
                state=state,
                orders_page_size=10,
                max_wait_seconds=30,
                rate_limits=fast_items,
            )

        connector = task()
        cursor, seen = None, set()
        with pytest.raises(RateLimited) as caught:
            while True:
                result = connector.pull_orders(cursor=cursor)
                seen |= {o.external_id for o in result.items}
                cursor = result.next_cursor
        connector.close()
        # the burst of 20 went out; the 21st call, a long wait away, was not sent
        assert amazon.journal.count("GET", ORDERS) == 20
        assert 30 < caught.value.retry_after <= 1.2 / 0.0167
        # a new task (new instance, same connection state) right away waits, not bursts
        again = task()
        with pytest.raises(RateLimited):
            again.pull_orders(cursor=cursor)
        assert amazon.journal.count("GET", ORDERS) == 20
        # once the wait is over it continues, without a 429
        clock.advance(caught.value.retry_after)
        result = again.pull_orders(cursor=cursor)
        assert len(seen | {o.external_id for o in result.items}) == 210
        assert 429 not in amazon.journal.statuses()


def test_real_clock_pacing_with_short_limits_has_no_429():
    # Limits are settings: a fast plan keeps the wall-clock variant quick (order items get a
    # plan that never binds, so getOrders' plan is the one measured).
    clock = SystemClock()
    http = HttpContext(clock=clock, egress=EgressPolicy.permissive())
    plans = {"getOrders": (5.0, 5), "getOrderItems": (1000.0, 100)}
    with FakeAmazon(clock=clock, plans=plans) as fake:
        fake.add_orders(40)
        connector = build(
            fake,
            http,
            clock,
            orders_page_size=2,
            rate_limits={k: f"{r}/{b}" for k, (r, b) in plans.items()},
        )
        orders, _, pages = pull_all(connector)
        times = fake.journal.times("GET", ORDERS)
        statuses = fake.journal.statuses()
    assert len({o.external_id for o in orders}) == 40 and pages == 20
    assert 429 not in statuses
    assert (len(times) - 5) / (times[-1] - times[0]) <= 5.0 * 1.05


# -- restricted data -------------------------------------------------------------------------------


def test_rdt_is_obtained_before_reading_pii_and_used_only_for_the_order_list(
    amazon: FakeAmazon, http: HttpContext, clock: VirtualClock
):
    amazon.add_orders(5)
    orders, _, _ = pull_all(build(amazon, http, clock))
    entries = amazon.journal.entries()
    paths = [e.path for e in entries]
    rdt_at = paths.index("/tokens/2021-03-01/restrictedDataToken")
    assert rdt_at < paths.index("/orders/v0/orders")
    rdts, access = set(amazon.rdts), set(amazon.access_tokens)
    for entry in entries:
        token = entry.headers.get("x-amz-access-token")
        if entry.path == "/orders/v0/orders":
            assert token in rdts  # the order list (with PII) is read with the RDT
        elif entry.path != "/auth/o2/token":
            assert token in access  # everything else with the LWA token
    assert 403 not in amazon.journal.statuses()
    assert all(o.ship_to and o.ship_to.line1 and o.customer and o.customer.name for o in orders)


def test_without_pii_no_rdt_is_requested_and_orders_carry_no_buyer_data(
    amazon: FakeAmazon, http: HttpContext, clock: VirtualClock
):
    amazon.add_orders(5)
    orders, _, _ = pull_all(build(amazon, http, clock, include_pii=False))
    assert amazon.rdts_issued == 0
    assert all(o.customer is None for o in orders)
    assert all(o.ship_to and o.ship_to.city and not o.ship_to.line1 for o in orders)


def test_without_the_restricted_role_pii_import_fails_with_a_clear_auth_error(
    amazon: FakeAmazon, http: HttpContext, clock: VirtualClock
):
    amazon.add_orders(2)
    amazon.restricted_role = False
    connector = build(amazon, http, clock)
    with pytest.raises(AuthError) as caught:
        connector.pull_orders(cursor=None)
    assert "Direct-to-Consumer Delivery role" in str(caught.value)
    assert amazon.journal.count("GET", ORDERS) == 0  # never read orders without the RDT
    # the same account without PII import works
    orders, _, _ = pull_all(build(amazon, http, clock, include_pii=False))
    assert len(orders) == 2


def test_fake_refuses_pii_calls_without_an_rdt(amazon: FakeAmazon):
    [order_id] = amazon.add_orders(1)
    token, _ = amazon.issue_access_token()
    with httpx.Client(base_url=amazon.url) as client:
        address = f"/orders/v0/orders/{order_id}/address"
        assert client.get(address, headers={"x-amz-access-token": token}).status_code == 403
        listed = client.get(
            "/orders/v0/orders",
            params={
                "MarketplaceIds": amazon.marketplace_id,
                "CreatedAfter": "2020-01-01T00:00:00Z",
            },
            headers={"x-amz-access-token": token},
        ).json()["payload"]["Orders"][0]
        assert "BuyerInfo" not in listed and "AddressLine1" not in listed["ShippingAddress"]
        rdt = client.post(
            "/tokens/2021-03-01/restrictedDataToken",
            json={
                "restrictedResources": [
                    {"method": "GET", "path": "/orders/v0/orders/{orderId}/address"}
                ]
            },
            headers={"x-amz-access-token": token},
        ).json()["restrictedDataToken"]
        assert client.get(address, headers={"x-amz-access-token": rdt}).status_code == 200
        # an RDT authorises its resources only
        other = f"/orders/v0/orders/{order_id}/buyerInfo"
        assert client.get(other, headers={"x-amz-access-token": rdt}).status_code == 403


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _texts(record: logging.LogRecord) -> Iterator[str]:
    yield record.getMessage()
    yield repr(record.args)
    if record.exc_info:
        yield logging.Formatter().formatException(record.exc_info)
    yield repr(vars(record))


def test_rdt_tokens_and_buyer_pii_never_reach_logs_or_errors(
    amazon: FakeAmazon, http: HttpContext, clock: VirtualClock
):
    amazon.add_orders(40)
    capture = _Capture()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    errors: list[str] = []
    try:
        connector = build(amazon, http, clock, orders_page_size=10)
        first = connector.pull_orders(cursor=None)
        amazon.fail_next(FakeResponse.json({"errors": [{"code": "InternalFailure"}]}, 503))
        amazon.fail_next(quota_exceeded(retry_after=3))
        second = connector.pull_orders(cursor=first.next_cursor)
        # a vendor error echoing a token must not carry it into our error
        echo = ", ".join([*amazon.rdts, *amazon.access_tokens])
        amazon.fail_next(FakeResponse.json({"errors": [{"message": f"bad {echo}"}]}, 422))
        with pytest.raises(Exception) as caught:
            connector.pull_orders(cursor=second.next_cursor)
        errors.append(str(caught.value))
        amazon.revoke()
        with pytest.raises(AuthError) as denied:
            connector.pull_orders(cursor=second.next_cursor)
        errors.append(str(denied.value))
        connector.close()
    finally:
        root.removeHandler(capture)
        root.setLevel(previous)
    assert capture.records, "nothing was logged: is logging wired?"
    assert any(r.name == "connectors.http" and r.levelno == logging.DEBUG for r in capture.records)
    forbidden = {
        *amazon.rdts,
        *amazon.access_tokens,
        *amazon.pii_values(),
        amazon.client_secret,
        amazon.refresh_token,
    }
    assert amazon.rdts and len(forbidden) > 100
    texts = [t for r in capture.records for t in _texts(r)] + errors
    leaks = {value for value in forbidden for text in texts if value in text}
    assert leaks == set()


# -- auth ------------------------------------------------------------------------------------------


def test_access_token_is_reused_across_tasks_and_refreshed_before_it_expires(
    amazon: FakeAmazon, http: HttpContext, clock: VirtualClock
):
    state = MemoryState()
    for _ in range(3):
        connector = build(amazon, http, clock, state=state)
        connector.check_connection()
        connector.close()
    assert amazon.journal.count("POST", "/auth/o2/token") == 1
    clock.advance(3600 - 30)  # inside the refresh margin
    connector = build(amazon, http, clock, state=state)
    connector.check_connection()
    assert amazon.journal.count("POST", "/auth/o2/token") == 2
    assert 403 not in amazon.journal.statuses()


def test_wrong_client_secret_is_an_auth_error_without_retries(
    amazon: FakeAmazon, http: HttpContext, clock: VirtualClock
):
    connector = build(
        amazon,
        http,
        clock,
        credentials=amazon_credentials(amazon, lwa_client_secret="amzn1.oa2-cs.v1.wrong-000"),
    )
    for _ in range(3):
        with pytest.raises(AuthError):
            connector.pull_orders(cursor=None)
    assert amazon.journal.statuses() == [401]


def test_settings_are_validated_without_echoing_values(
    amazon: FakeAmazon, http: HttpContext, clock: VirtualClock
):
    with pytest.raises(ConfigurationError) as caught:
        build(amazon, http, clock, seller_id="not a seller")
    assert "seller_id" in str(caught.value) and "not a seller" not in str(caught.value)
    with pytest.raises(ConfigurationError) as caught:
        build(amazon, http, clock, credentials={"lwa_client_secret": "x", "refresh_token": "y"})
    assert "refresh_token" in str(caught.value)
    for bad in ({"getOrders": "fast"}, {"getOrders": "0/20"}, {"noSuchOperation": "1/1"}):
        with pytest.raises(ConfigurationError):
            build(amazon, http, clock, rate_limits=bad)


# -- listings and quantities -----------------------------------------------------------------------


def test_list_listings_pages_through_every_sku(clock: VirtualClock, http: HttpContext):
    with FakeAmazon(clock=clock, listings=45) as fake:
        connector = build(fake, http, clock)
        cursor, listings = None, []
        while True:
            page = connector.list_listings(cursor=cursor)
            listings += page.items
            cursor = page.next_cursor
            if not page.has_more:
                break
    assert len(listings) == 45 and {item.inventory_ref for item in listings} == set(fake.listings)
    assert all(item.active and item.product_id.startswith("B0") for item in listings)


def test_push_available_sets_merchant_fulfilled_quantities(
    amazon: FakeAmazon, http: HttpContext, clock: VirtualClock
):
    amazon.listings["AMZ-003"]["fba"] = True
    connector = build(amazon, http, clock)
    levels = [
        AvailableQuantity(inventory_ref="AMZ-001", available=7),
        AvailableQuantity(inventory_ref="AMZ-003", available=2),
        AvailableQuantity(inventory_ref="NO-SUCH-SKU", available=1),
        AvailableQuantity(inventory_ref="AMZ-002", available=0),
    ]
    results = connector.push_available(levels=levels)
    assert [r.outcome for r in results] == [
        PushOutcome.APPLIED,
        PushOutcome.REJECTED,
        PushOutcome.REJECTED,
        PushOutcome.APPLIED,
    ]
    assert "managed by Amazon" in results[1].message
    assert (
        amazon.listings["AMZ-001"]["quantity"] == 7 and amazon.listings["AMZ-002"]["quantity"] == 0
    )
    # an absolute set: pushing again changes nothing and is safe to repeat
    again = connector.push_available(levels=levels[:1])
    assert again[0].outcome is PushOutcome.APPLIED
    assert [w["to"] for w in amazon.quantity_writes] == [7, 0, 7]


def test_placing_orders_takes_units_off_the_listing(amazon: FakeAmazon):
    before = amazon.listings["AMZ-000"]["quantity"]
    amazon.add_orders(4, sku="AMZ-000")
    amazon.add_orders(1, sku="AMZ-000", fulfillment="AFN")
    assert amazon.listings["AMZ-000"]["quantity"] == before - 4
