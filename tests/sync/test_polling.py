"""Polling: stored cursors, resumption, politeness under 429/5xx storms, credentials that
stop working, and the per-brand schedule."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from django.utils import timezone

from connectors.fakeapi import FakeResponse
from orders.models import Order
from sync import services
from sync.models import Connection, ConnectionStatus, RunStatus, SyncCursor, SyncRun
from tests.fakes.shopify import FakeShopify, throttled_response
from tests.sync.conftest import connect_shopify

ORDERS_PATH = r"/orders\.json$"


def first_pages(fake) -> int:
    """Requests that started a pass (no page_info): a resumed sync sends none."""
    return sum(
        1 for e in fake.journal.entries("GET", ORDERS_PATH) if "page_info" not in e.raw_query
    )


def test_a_run_stopped_midway_resumes_from_the_stored_cursor(
    shop, shopify, tasks, clock, monkeypatch
):
    # given: runs may read only one page per stream, as if the worker's time ran out
    monkeypatch.setattr(services, "MAX_PAGES_PER_STREAM", 1)

    # when: the first run reads page 1 of 3, then queues its continuation
    run, _ = services.request_sync(shop, trigger="manual", streams=["orders"])
    tasks.drain(clock=clock)

    # then: three runs (one page each), one pass, every order once
    runs = list(SyncRun.objects.order_by("id"))
    assert [(r.trigger, r.status, r.pages) for r in runs] == [
        ("manual", "succeeded", 1),
        ("follow_up", "succeeded", 1),
        ("follow_up", "succeeded", 1),
    ]
    assert first_pages(shopify) == 1
    assert Order.objects.count() == 120
    assert SyncCursor.objects.get(connection=shop, stream="orders").value


class StormyShopify(FakeShopify):
    """Shopify having a bad day: the first requests for a next page fail with a 5xx."""

    def __init__(self, *, next_page_failures: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.next_page_failures = next_page_failures

    def before_route(self, request):
        if "page_info" in request.raw_query and self.next_page_failures > 0:
            self.next_page_failures -= 1
            return FakeResponse.json({"errors": "Internal Server Error"}, 503)
        return super().before_route(request)


def test_429_and_5xx_storms_complete_honouring_retry_after(in_alpha, tasks, clock):
    # given: more 429s in a row than the client retries, then a 5xx burst mid-pass
    with StormyShopify(clock=clock, orders=120, next_page_failures=3) as fake:
        shop = connect_shopify(fake)
        fake.fail_next(throttled_response(3.0), times=7)

        # when
        services.request_sync(shop, trigger="manual", streams=["orders"])
        tasks.drain(clock=clock)

    # then: the run finished with every order exactly once
    run = SyncRun.objects.get()
    assert run.status == RunStatus.SUCCEEDED
    assert Order.objects.count() == 120 == len(set(Order.objects.values_list("external_id")))
    # the client gave up after 5 attempts; the task came back after exactly Retry-After
    assert tasks.retries == [(services.RUN_TASK, 3.0)]
    assert (run.retries, run.attempts) == (1, 2)
    # and no request ever left before a 429's Retry-After had passed
    entries = fake.journal.entries()
    statuses = [e.status for e in entries]
    assert (statuses.count(429), statuses.count(503)) == (7, 3)
    for earlier, later in zip(entries, entries[1:], strict=False):
        if earlier.status == 429:
            wait = float(earlier.response_headers["Retry-After"])
            assert later.at >= earlier.at + wait - 1e-9


def test_a_retry_after_beyond_the_task_budget_ends_the_run_and_pauses_polling(
    shop, shopify, tasks, clock
):
    shopify.fail_next(throttled_response(3600.0), times=1)

    services.request_sync(shop, trigger="manual", streams=["orders"])
    tasks.drain(clock=clock)

    run = SyncRun.objects.get()
    shop.refresh_from_db()
    assert run.status == RunStatus.THROTTLED
    assert shop.throttled_until > timezone.now() + timedelta(minutes=59)
    assert len(shopify.journal) == 1
    # the schedule leaves it alone until then
    assert services.poll_connections()["queued"] == 0


def test_expired_credentials_park_the_connection_with_a_bounded_number_of_requests(
    shop, shopify, tasks, clock
):
    # given: the shop revoked our token
    shopify.revoke_token()

    # when: the schedule polls it five times, a poll interval apart
    statuses = []
    for cycle in range(5):
        services.poll_connections(now=timezone.now() + timedelta(hours=cycle))
        tasks.drain(clock=clock)
        shop.refresh_from_db()
        statuses.append(shop.status)

    # then: one request per poll until the second refusal, then none
    assert len(shopify.journal) == services.AUTH_FAILURE_LIMIT == 2
    assert set(shopify.journal.statuses()) == {401}
    assert statuses == ["active"] + ["needs_attention"] * 4
    assert shop.auth_failures == 2
    assert "Credentials were refused 2 times" in shop.status_reason
    assert shop.last_success_at is None and shop.last_error == shop.status_reason
    assert [r.status for r in SyncRun.objects.order_by("id")] == ["failed", "failed"]
    assert tasks.retries == []
    # "Sync now" is refused too, so a person cannot start a retry storm either
    with pytest.raises(Exception, match="resume it first"):
        services.request_sync(shop, trigger="manual")


def test_new_credentials_put_a_parked_connection_back_to_work(shop, shopify, tasks, clock):
    shopify.revoke_token()
    for cycle in range(2):
        services.poll_connections(now=timezone.now() + timedelta(hours=cycle))
        tasks.drain(clock=clock)
    shopify.token_revoked = False
    shopify.access_token = "shpat_fresh_access_token_0002"

    services.update_connection(
        Connection.objects.get(pk=shop.pk), credentials={"access_token": shopify.access_token}
    )
    services.request_sync(Connection.objects.get(pk=shop.pk), trigger="manual")
    tasks.drain(clock=clock)

    shop.refresh_from_db()
    assert (shop.status, shop.auth_failures) == (ConnectionStatus.ACTIVE, 0)
    assert Order.objects.count() == 120


def test_persistent_5xx_fails_the_run_after_bounded_retries(shop, shopify, tasks, clock):
    shopify.fail_next(FakeResponse.json({"errors": "down"}, 502), times=1000)

    services.request_sync(shop, trigger="manual", streams=["orders"])
    tasks.drain(clock=clock)

    run = SyncRun.objects.get()
    assert run.status == RunStatus.FAILED
    assert run.retries == services.MAX_RUN_RETRIES
    # 5 client attempts per execution, 1 + MAX_RUN_RETRIES executions
    assert len(shopify.journal) == 5 * (services.MAX_RUN_RETRIES + 1)
    countdowns = [c for _, c in tasks.retries]
    assert all(0 < c <= services.MAX_COUNTDOWN for c in countdowns)
    assert countdowns == sorted(countdowns)


def test_schedule_queues_due_connections_once_and_never_a_second_concurrent_run(
    shop, shopify, tasks
):
    now = timezone.now()
    assert services.poll_connections(now=now)["queued"] == 1
    # a minute later the run is still waiting for a worker: nothing new is queued
    assert services.poll_connections(now=now + timedelta(minutes=1))["queued"] == 0
    assert SyncRun.objects.count() == 1
    run, created = services.request_sync(shop, trigger="manual")
    assert (created, run) == (False, SyncRun.objects.get())
    assert tasks.names() == [services.RUN_TASK]


def test_paused_connections_are_not_polled_and_a_queued_run_is_cancelled(shop, shopify, tasks):
    run, _ = services.request_sync(shop, trigger="manual")
    services.pause_connection(shop)

    tasks.drain()
    assert services.poll_connections()["queued"] == 0

    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert len(shopify.journal) == 0


def test_lost_work_is_recovered_by_the_schedule(shop, shopify, tasks):
    # given: a run whose worker vanished and one whose message was lost
    stuck, _ = services.request_sync(shop, trigger="manual")
    long_ago = timezone.now() - timedelta(hours=1)
    SyncRun.objects.filter(pk=stuck.pk).update(status="running", heartbeat_at=long_ago)
    tasks.sent.clear()

    # when
    services.poll_connections()

    # then: the vanished one is failed, so the connection's next run can start
    stuck.refresh_from_db()
    assert (stuck.status, stuck.message) == (
        RunStatus.FAILED,
        "The worker running this sync stopped answering.",
    )
    assert SyncRun.objects.filter(status="queued").count() == 1
    lost = SyncRun.objects.get(status="queued")
    SyncRun.objects.filter(pk=lost.pk).update(queued_at=long_ago)
    tasks.sent.clear()
    services.poll_connections(now=timezone.now() + timedelta(seconds=1))
    assert [(s.name, s.args) for s in tasks.sent] == [(services.RUN_TASK, (lost.pk,))]


def test_a_run_that_keeps_killing_its_worker_is_given_up(shop, shopify, tasks):
    run, _ = services.request_sync(shop, trigger="manual")
    # three executions began and none finished (each worker died mid-run)
    SyncRun.objects.filter(pk=run.pk).update(status="running", attempts=3)

    services.execute_run(run.pk)

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert "stopped 3 times" in run.message
    assert len(shopify.journal) == 0


def test_one_bad_order_in_a_page_is_reported_and_the_rest_arrive(
    shop, shopify, tasks, clock, monkeypatch
):
    # given: ingestion refuses one order of the first page
    bad_id = str(shopify.order_ids[7])
    real = services.order_input

    def mapped(order, *, channel):
        data = real(order, channel=channel)
        return dataclasses.replace(data, currency="EURO") if order.external_id == bad_id else data

    monkeypatch.setattr(services, "order_input", mapped)

    # when
    services.request_sync(shop, trigger="manual", streams=["orders"])
    tasks.drain(clock=clock)

    # then
    run = SyncRun.objects.get()
    assert (run.status, run.counts["created"], run.counts["failed"]) == ("partial", 119, 1)
    assert [(e["code"], e["ref"]) for e in run.errors] == [("invalid_order", bad_id)]
    assert not Order.objects.filter(external_id=bad_id).exists()
