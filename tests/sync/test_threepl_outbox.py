"""Fulfillment orders reach 3PLs through the outbox: routing an order to a warehouse a 3PL
connection serves writes a `threepl.push_fulfillment` message in the same transaction, and
its handler sends the order once (FulfillmentPush records it; the 3PL gets a stable
idempotency key). Uses the built-in ShipBob-style connector against its fake, which
records every POST /order it receives (`intake`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from catalog.services import map_listing
from inventory import services as stock
from orders.models import FulfillmentStatus
from outbox.models import MessageStatus, OutboxMessage
from sync import services
from sync.models import Connection, ConnectionStatus, FulfillmentPush, PushStatus
from tests.factories import SKUFactory, WarehouseFactory
from tests.fakes.threepl import FakeThreePL
from tests.sync.conftest import consume_outbox, stock_network
from tests.sync.test_threepl import place_order

PUSH = services.FULFILLMENT_TOPIC
CENTER = "10"


@pytest.fixture
def threepl(clock) -> Iterator[FakeThreePL]:
    with FakeThreePL(clock=clock) as fake:
        yield fake


@pytest.fixture
def network(in_alpha) -> dict:
    """EAST (served by the 3PL) holds every SKU the fake stocks, mapped on `shop`."""
    codes = [f"KEEL-{p:03d}-{s}" for p in range(10) for s in "SML"]
    return stock_network("shop", codes, quantity=100)


def connect(fake: FakeThreePL, **extra) -> Connection:
    return services.create_connection(
        connector="threepl",
        display_name="ShipBob",
        channel_key="shipbob",
        settings={"api_base_url": fake.base_url, "channel_id": str(fake.channel_id), **extra},
        credentials={"access_token": fake.access_token},
        warehouse_map={CENTER: "EAST"},
    )


def posts(fake: FakeThreePL) -> int:
    return len(fake.journal.entries("POST", "/1.0/order"))


def messages(topic: str = PUSH) -> list[OutboxMessage]:
    return list(OutboxMessage.objects.filter(topic=topic).order_by("id"))


def test_an_order_routed_to_a_3pl_warehouse_is_sent_once_through_the_outbox(
    network, threepl, tasks, clock
):
    # given: the 3PL serves EAST
    conn = connect(threepl)

    # when: an order is routed there
    order = place_order("5001", [("KEEL-001-M", 2)])
    fo = order.fulfillments.get()

    # then: the routing transaction wrote one message for that fulfillment order
    [message] = messages()
    assert message.payload["type"] == "fulfillment.opened"
    assert message.payload["data"]["fulfillment"] == fo.pk
    assert tasks.names() == []  # no sync run is involved

    # when: the outbox delivers it, then a duplicate task and a reconciliation run follow
    assert consume_outbox(PUSH) == {PUSH: ["done"]}
    from outbox import services as outbox

    assert outbox.consume(message.pk) == "duplicate"
    services.request_sync(conn, trigger="manual", streams=["fulfillments"])
    tasks.drain(clock=clock)

    # then: the 3PL received one request and holds one order; ours is with it
    assert posts(threepl) == 1
    assert list(threepl.orders) == [f"FO-{fo.pk}"]
    fo.refresh_from_db()
    assert fo.status == FulfillmentStatus.SENT
    push = FulfillmentPush.objects.get()
    assert (push.connection_id, push.status, push.attempts, push.external_id) == (
        conn.pk,
        PushStatus.SENT,
        1,
        str(threepl.orders[f"FO-{fo.pk}"]["id"]),
    )
    conn.refresh_from_db()
    assert conn.last_success_at is not None


def test_orders_at_warehouses_no_3pl_serves_cost_no_message(in_alpha, threepl):
    WarehouseFactory(code="EAST")
    connect(threepl)
    west = WarehouseFactory(code="WEST", state="CA", postal_code="90001")
    sku = SKUFactory(code="WEST-ONLY")
    map_listing(channel="shop", external_sku="WEST-ONLY", sku=sku)
    stock.receive(sku=sku, warehouse=west, quantity=10)

    order = place_order("5002", [("WEST-ONLY", 1)], state="CA")

    assert order.fulfillments.get().warehouse == west
    assert messages() == []


def test_a_redelivery_after_a_lost_commit_makes_one_order_at_the_3pl(network, threepl, monkeypatch):
    # given: the push reached the 3PL but the worker died before the outbox committed
    # (simulated: recording it fails, so the handler's writes roll back)
    connect(threepl)
    order = place_order("5003", [("KEEL-002-S", 1)])
    fo = order.fulfillments.get()

    def crash(*args, **kwargs):
        raise RuntimeError("worker lost")

    monkeypatch.setattr(services, "mark_sent", crash)
    assert consume_outbox(PUSH) == {PUSH: ["failed"]}
    assert FulfillmentPush.objects.count() == 0
    monkeypatch.undo()

    # when: the message is delivered again
    OutboxMessage.objects.filter(topic=PUSH).update(next_attempt_at=None)
    assert consume_outbox(PUSH) == {PUSH: ["done"]}

    # then: the second POST carried the same reference, so the 3PL kept one order, and the
    # push recorded it
    assert posts(threepl) == 2
    assert list(threepl.orders) == [f"FO-{fo.pk}"]
    fo.refresh_from_db()
    assert fo.status == FulfillmentStatus.SENT
    push = FulfillmentPush.objects.get()
    assert push.external_id == str(threepl.orders[f"FO-{fo.pk}"]["id"])


def test_a_refused_order_is_recorded_shown_and_retried_by_reconciliation_up_to_the_limit(
    network, threepl, tasks, clock
):
    # given: a SKU the 3PL does not stock
    conn = connect(threepl)
    sku = SKUFactory(code="NOT-AT-3PL")
    map_listing(channel="shop", external_sku="NOT-AT-3PL", sku=sku)
    stock.receive(sku=sku, warehouse=network["warehouse"], quantity=5)
    order = place_order("5004", [("NOT-AT-3PL", 1)])
    fo = order.fulfillments.get()

    # when: the outbox delivers it
    assert consume_outbox(PUSH) == {PUSH: ["done"]}

    # then: the refusal is on the push and the connection; the order stays open
    push = FulfillmentPush.objects.get()
    assert (push.status, push.attempts) == (PushStatus.FAILED, 1)
    assert "unknown products" in push.error
    conn.refresh_from_db()
    assert f"refused fulfillment order FO-{fo.pk}" in conn.last_error
    assert conn.status == ConnectionStatus.ACTIVE
    fo.refresh_from_db()
    assert fo.status == FulfillmentStatus.OPEN

    # and: reconciliation tries again until MAX_PUSH_ATTEMPTS, then leaves it alone
    for _ in range(services.MAX_PUSH_ATTEMPTS):
        services.request_sync(conn, trigger="manual", streams=["fulfillments"])
        tasks.drain(clock=clock)
    push.refresh_from_db()
    assert push.attempts == services.MAX_PUSH_ATTEMPTS
    assert posts(threepl) == services.MAX_PUSH_ATTEMPTS
    assert not services.pending_fulfillments(conn).exists()


def test_expired_credentials_park_the_connection_without_a_retry_storm(
    network, threepl, tasks, clock
):
    # given: five orders waiting for the 3PL, whose token was revoked
    conn = connect(threepl)
    fos = [place_order(f"560{i}", [("KEEL-003-L", 1)]).fulfillments.get() for i in range(5)]
    threepl.revoke_token()

    # when: the outbox delivers all five
    outcomes = consume_outbox(PUSH)

    # then: two refusals park the connection; the other messages make no request
    assert outcomes == {PUSH: ["done"] * 5}
    assert len(threepl.journal.entries()) == services.AUTH_FAILURE_LIMIT
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.NEEDS_ATTENTION
    assert FulfillmentPush.objects.count() == 0

    # when: a person reconnects, and the next run reconciles
    threepl.token_revoked = False
    conn = services.resume_connection(conn)
    services.request_sync(conn, trigger="manual", streams=["fulfillments"])
    tasks.drain(clock=clock)

    # then: each order reached the 3PL once (the two refused POSTs never got past its
    # authentication)
    assert sorted(threepl.orders) == sorted(f"FO-{fo.pk}" for fo in fos)
    assert len(threepl.intake) == 5
    assert posts(threepl) == services.AUTH_FAILURE_LIMIT + 5
    assert set(FulfillmentPush.objects.values_list("status", flat=True)) == {PushStatus.SENT}


def test_a_rate_limited_push_waits_as_long_as_the_3pl_says(network, threepl):
    connect(threepl)
    place_order("5007", [("KEEL-004-M", 1)])
    threepl.throttle_next(retry_after=45, times=1)

    before = timezone.now()
    assert consume_outbox(PUSH) == {PUSH: ["failed"]}

    [message] = messages()
    assert (message.status, message.attempts) == (MessageStatus.PENDING, 1)
    assert message.last_error == "RetryLater: ShipBob: threepl: POST answered 429"
    wait = (message.next_attempt_at - before).total_seconds()
    assert 45 <= wait < 60
    assert threepl.orders == {}

    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=None)
    assert consume_outbox(PUSH) == {PUSH: ["done"]}
    assert len(threepl.orders) == 1


def test_a_push_another_path_is_sending_waits_instead_of_sending_twice(network, threepl):
    # given: a sync run (another database session) holds this order's push claim
    conn = connect(threepl)
    fo = place_order("5008", [("KEEL-005-S", 1)]).fulfillments.get()
    key = services._lock_key(f"push:{conn.pk}:{fo.pk}")
    other = _other_session()
    try:
        other.execute("SELECT pg_advisory_lock(hashtext(%s))", [key])

        # when
        assert consume_outbox(PUSH) == {PUSH: ["failed"]}

        # then: nothing was sent; the message comes back shortly
        assert posts(threepl) == 0
        [message] = messages()
        wait = (message.next_attempt_at - timezone.now()).total_seconds()
        assert 0 < wait <= services.BUSY_RETRY_SECONDS
    finally:
        other.close()

    OutboxMessage.objects.filter(pk=message.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    assert consume_outbox(PUSH) == {PUSH: ["done"]}
    assert posts(threepl) == 1


def _other_session() -> psycopg.Connection:
    db = connection.settings_dict
    return psycopg.connect(
        dbname=db["NAME"],
        user=db["USER"],
        password=db["PASSWORD"] or None,
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        autocommit=True,
    )
