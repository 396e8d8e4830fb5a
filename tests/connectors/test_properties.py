"""Invariants of the SDK and the Shopify connector, as hypothesis properties.

- Changed-since pulls lose nothing: whatever the page size, however often the worker dies
  between pages (a fresh instance resumes from the stored, JSON round-tripped cursor) and
  whatever the shop changes meanwhile, the pass in flight plus the next poll return every
  order in its current version.
- The leaky-bucket pacing never overflows the vendor's bucket and never idles more than one
  request's worth while a caller is waiting (the backfill benchmark's "neither idles nor
  trips the limit", for every request pattern rather than one).
- The redactor leaves no credential value in text, URLs or headers it cleans.

No Django: these also run with ``-p no:django``.
"""

from __future__ import annotations

import json
import math
import random
from datetime import datetime
from urllib.parse import quote, quote_plus

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import connectors.shopify as shopify_plugin
from connectors.clock import VirtualClock
from connectors.http import EgressPolicy, HttpContext, Redactor
from connectors.manager import make_test_manager
from connectors.ratelimit import LeakyBucketLimiter
from connectors.state import MemoryState
from tests.connectors.conftest import shopify_credentials, shopify_settings
from tests.fakes.shopify import FakeShopify

# -- changed-since pulls ---------------------------------------------------------------------

steps = st.lists(
    st.one_of(
        st.just(("page",)),
        st.just(("kill",)),
        st.tuples(st.just("update"), st.integers(min_value=0, max_value=10_000)),
        st.tuples(st.just("add"), st.integers(min_value=1, max_value=5)),
        st.tuples(st.just("tick"), st.integers(min_value=1, max_value=120)),
    ),
    max_size=25,
)


def _connector(fake: FakeShopify, clock: VirtualClock, page_size: int):
    http = HttpContext(
        clock=clock, egress=EgressPolicy.permissive(), uniform=random.Random(5).uniform
    )
    return make_test_manager(shopify_plugin).hook.keel_connector_factory(
        name="shopify",
        settings=shopify_settings(fake, orders_page_size=page_size),
        credentials=shopify_credentials(fake),
        http=http,
        state=MemoryState(),
        clock=clock,
    )


def _stamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    initial=st.integers(min_value=0, max_value=30),
    page_size=st.integers(min_value=1, max_value=12),
    plan=steps,
)
def test_pulls_with_kills_and_concurrent_changes_lose_no_order_or_update(
    initial: int, page_size: int, plan: list[tuple]
):
    clock = VirtualClock()
    with FakeShopify(clock=clock, orders=initial) as fake:
        # the newest version of each order the platform has seen, by external id
        seen: dict[str, float] = {}
        worker = _connector(fake, clock, page_size)
        cursor: str | None = None

        def pull_one() -> bool:
            nonlocal cursor
            result = worker.pull_orders(cursor=cursor)
            for order in result.items:
                stamp = order.updated_at.timestamp()
                seen[order.external_id] = max(seen.get(order.external_id, stamp), stamp)
            # what the platform commits with the page: the cursor, as JSON text
            cursor = json.loads(json.dumps(result.next_cursor))
            return result.has_more

        try:
            for step in plan:
                if step[0] == "page":
                    pull_one()
                elif step[0] == "kill":
                    worker.close()
                    worker = _connector(fake, clock, page_size)
                elif step[0] == "update" and fake.order_ids:
                    ids = fake.order_ids
                    clock.advance(1)
                    fake.update_order(ids[step[1] % len(ids)], note=f"edit {step[1]}")
                elif step[0] == "add":
                    fake.add_orders(step[1])
                elif step[0] == "tick":
                    clock.advance(step[1])
            # the pass in flight finishes, then the next scheduled poll runs a whole pass
            while pull_one():
                pass
            clock.advance(60)
            while pull_one():
                pass
        finally:
            worker.close()

        current = {str(i): _stamp(fake.order(i)["updated_at"]) for i in fake.order_ids}
    assert set(seen) == set(current), "orders lost (or invented)"
    stale = {i for i, stamp in current.items() if seen[i] < stamp - 1e-6}
    assert not stale, f"the latest update of {len(stale)} order(s) was never pulled"


# -- leaky-bucket pacing ---------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(min_value=2, max_value=80),
    leak_rate=st.sampled_from([0.5, 1.0, 2.0, 4.0, 20.0]),
    pauses=st.lists(
        st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=30.0)),
        min_size=1,
        max_size=300,
    ),
    already_used=st.integers(min_value=0, max_value=80),
)
def test_leaky_bucket_pacing_never_overflows_and_never_idles(
    capacity: int, leak_rate: float, pauses: list[float], already_used: int
):
    # given: a vendor bucket that another process already part filled, and one sequential
    # caller pausing between requests as it processes pages
    limiter = LeakyBucketLimiter(capacity=capacity, leak_rate=leak_rate)
    header = limiter.header
    assert header is not None
    server = float(min(already_used, capacity - 1))
    server_at = 0.0
    now = 0.0
    for pause in pauses:
        now += pause
        wait = limiter.reserve(now)
        assert wait >= 0.0
        sent = now + wait
        # the vendor's view at the moment the request arrives
        server = max(0.0, server - (sent - server_at) * leak_rate)
        server_at = sent
        # then: never a request the vendor would answer with 429 ...
        assert server + 1 <= capacity + 1e-6, f"overflow: {server + 1:.3f} > {capacity}"
        # ... and no waiting while there was room beyond the headroom and one request of
        # slack (the vendor reports whole requests, rounded up, and the client trusts it)
        if wait > 1e-9:
            assert server + 1 >= capacity - limiter.headroom - 1 - 1e-6, (
                f"idled {wait:.3f}s with the bucket at {server:.3f}/{capacity}"
            )
        server += 1
        response = httpx.Response(200, headers={header: f"{math.ceil(server)}/{capacity}"})
        limiter.observe(response, sent)
        now = sent


# -- redaction -------------------------------------------------------------------------------

# Credentials as vendors issue them: tokens of letters, digits and a few separators.
secret_values = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.~+/=", min_size=6, max_size=40
)
surrounding = st.text(max_size=60)


@settings(max_examples=300, deadline=None)
@given(secret=secret_values, before=surrounding, after=surrounding, other=secret_values)
def test_redacted_text_urls_and_headers_never_hold_a_secret(
    secret: str, before: str, after: str, other: str
):
    redactor = Redactor([secret, other])
    variants = {secret, quote(secret, safe=""), quote_plus(secret)}

    texts = [redactor.text(f"{before}{v}{after}") for v in variants]
    url = redactor.url(
        f"https://api.example.com/v1/{quote(secret, safe='')}?q={quote_plus(secret)}&x=1"
    )
    headers = redactor.headers(
        {"Authorization": f"Bearer {secret}", "X-Trace": f"{before}{secret}{after}"}
    )

    for cleaned in [*texts, url, *headers.values()]:
        for value in variants:
            assert value not in cleaned
