"""The sync engine's central invariant as a hypothesis property, against the real database
and the Shopify fake over HTTP: whatever mix of webhook deliveries (new events, Shopify's
retries of the same event, stale versions arriving late, in any order), processing runs and
polls, each channel order exists exactly once, holds its newest version, and each event is
stored once.

Each example runs inside a savepoint that is rolled back, so examples start from the same
empty brand (the fixtures are shared across examples on purpose).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from orders.models import Order
from sync import services
from sync.models import WebhookReceipt
from tests.fakes.shopify import FakeShopify, ShopifyDelivery, ShopifyWebhookSender
from tests.sync.conftest import SHOP_SECRET, connect_shopify
from tests.sync.test_webhooks import deliver

ORDERS = 3
VERSIONS = 3

actions = st.lists(
    st.one_of(
        # a new delivery of version v of order i (a fresh event id)
        st.tuples(
            st.just("send"),
            st.integers(min_value=0, max_value=ORDERS - 1),
            st.integers(min_value=0, max_value=VERSIONS - 1),
        ),
        # Shopify retrying an earlier delivery (same event id)
        st.tuples(st.just("resend"), st.integers(min_value=0, max_value=100), st.just(0)),
        st.just(("process", 0, 0)),
        st.just(("poll", 0, 0)),
    ),
    max_size=14,
)


class _Rollback(Exception):
    pass


@dataclass
class World:
    fake: FakeShopify
    versions: dict[int, list[dict]]  # order id → its versions, oldest first


def _build_world(clock) -> World:
    fake = FakeShopify(clock=clock, orders=ORDERS)
    versions: dict[int, list[dict]] = {i: [fake.order(i)] for i in fake.order_ids}
    for version in range(1, VERSIONS):
        clock.advance(60)
        for order_id in fake.order_ids:
            # Each version ships somewhere else, so the stored address says which one won.
            address = {**versions[order_id][0]["shipping_address"], "city": f"City v{version}"}
            versions[order_id].append(fake.update_order(order_id, shipping_address=address))
    return World(fake, versions)


def _stamp(value: str) -> datetime:
    return datetime.fromisoformat(value)


@settings(
    max_examples=15,
    deadline=None,
    # Explaining a failure re-runs hundreds of database examples; the shrunk plan is enough.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    plan=actions,
    # after the poll: versions re-sent as new events (a channel's delayed, reordered queue)
    late=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=ORDERS - 1),
            st.integers(min_value=0, max_value=VERSIONS - 1),
        ),
        max_size=4,
    ),
)
def test_any_mix_of_deliveries_retries_and_polls_makes_one_current_order_each(
    brand_a, in_alpha, tasks, clock, plan, late
):
    world = _build_world(clock)
    with world.fake as fake:
        try:
            with transaction.atomic():
                _run(brand_a, world, fake, tasks, clock, plan, late)
                raise _Rollback
        except _Rollback:
            pass


def _run(brand_a, world: World, fake: FakeShopify, tasks, clock, plan, late) -> None:
    tasks.sent.clear()
    conn = connect_shopify(fake)
    sender = ShopifyWebhookSender(secret=SHOP_SECRET, shop_domain=fake.shop, clock=clock)
    ids = fake.order_ids
    sent: list[ShopifyDelivery] = []

    for kind, a, b in plan:
        if kind == "send":
            order_id = ids[a]
            topic = "orders/create" if b == 0 else "orders/updated"
            sent.append(sender.delivery(topic, world.versions[order_id][b]))
            assert deliver(brand_a, conn, sent[-1].headers, sent[-1].body) == 200
        elif kind == "resend" and sent:
            again = sent[a % len(sent)]
            assert deliver(brand_a, conn, again.headers, again.body) == 200
        elif kind == "process":
            tasks.drain(clock=clock)
        elif kind == "poll":
            services.request_sync(conn, trigger="manual", streams=["orders"])
            tasks.drain(clock=clock)

    # the reconciliation poll, then stale deliveries still trickling in
    tasks.drain(clock=clock)
    clock.advance(120)
    services.request_sync(conn, trigger="manual", streams=["orders"])
    tasks.drain(clock=clock)
    for a, b in late:
        sent.append(sender.delivery("orders/updated", world.versions[ids[a]][b]))
        assert deliver(brand_a, conn, sent[-1].headers, sent[-1].body) == 200
    tasks.drain(clock=clock)

    # then: one order per channel order, each in its newest version
    orders = {o.external_id: o for o in Order.objects.filter(channel=conn.channel_key)}
    assert Order.objects.filter(channel=conn.channel_key).count() == len(orders) == ORDERS
    for order_id in ids:
        newest = world.versions[order_id][-1]
        order = orders[str(order_id)]
        assert order.channel_updated_at == _stamp(newest["updated_at"])
        assert order.ship_city == newest["shipping_address"]["city"]
    # and each event stored once, however often it was delivered
    stored = list(WebhookReceipt.objects.filter(connection=conn).values_list("event_id", flat=True))
    assert sorted(stored) == sorted({d.event_id for d in sent})
