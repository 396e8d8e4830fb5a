"""The outbox: written in the caller's transaction, consumed once, parked after N failures."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from audit.models import ActivityEntry
from config.celery import app
from outbox import services
from outbox.models import MessageStatus, OutboxMessage
from outbox.services import _Kick
from tests.conftest import brand_client, make_user
from tests.outbox.handlers import EFFECT_ACTION, EFFECT_TOPIC, FAILING_TOPIC, WAITING_TOPIC


class Rollback(Exception):
    pass


def in_schema(brand):
    return schema_context(brand.schema_name)


def effects() -> list[ActivityEntry]:
    return list(ActivityEntry.objects.filter(action=EFFECT_ACTION).order_by("id"))


def test_a_rolled_back_transaction_leaves_no_message_and_sends_no_kick(
    committed_outbox, monkeypatch
):
    # given: kicks recorded instead of sent
    kicks: list[str] = []
    monkeypatch.setattr(_Kick, "paused_until", 0.0)
    monkeypatch.setattr(app, "send_task", lambda name, **kw: kicks.append(name))

    # when: one transaction rolls back, another commits
    with pytest.raises(Rollback), transaction.atomic():
        services.enqueue(EFFECT_TOPIC, {"n": 1}, key="rolled-back")
        raise Rollback
    assert OutboxMessage.objects.count() == 0
    assert kicks == []
    with transaction.atomic():
        services.enqueue(EFFECT_TOPIC, {"n": 2}, key="committed")
        services.enqueue(EFFECT_TOPIC, {"n": 3}, key="committed-too")
        assert kicks == []  # nothing is relayed before the commit

    # then: only the committed messages exist, and one kick followed the commit
    assert list(OutboxMessage.objects.values_list("key", "status", "payload")) == [
        ("committed", MessageStatus.PENDING, {"n": 2}),
        ("committed-too", MessageStatus.PENDING, {"n": 3}),
    ]
    assert kicks == [services.RELAY_TASK]


def test_the_same_key_is_one_message(in_alpha, django_capture_on_commit_callbacks):
    # when
    with django_capture_on_commit_callbacks() as callbacks:
        first = services.enqueue(EFFECT_TOPIC, {"v": 1}, key="order-7-push")
        again = services.enqueue(EFFECT_TOPIC, {"v": 2}, key="order-7-push")

    # then
    assert first is not None and first.pk is not None
    assert again is None
    assert list(OutboxMessage.objects.values_list("key", "payload")) == [("order-7-push", {"v": 1})]
    assert [type(c).__name__ for c in callbacks] == ["_Kick"]


def test_enqueue_outside_a_brand_is_refused(db):
    with pytest.raises(RuntimeError, match="brand schema"):
        services.enqueue(EFFECT_TOPIC, {}, key="nowhere")


def test_a_duplicate_delivery_to_the_consumer_is_a_no_op(in_alpha):
    # given
    message = services.enqueue(EFFECT_TOPIC, {"id": "evt_1"}, key="k-1")

    # when: the task arrives three times (re-published, redelivered by the broker)
    outcomes = [services.consume(message.pk) for _ in range(3)]

    # then: one effect
    assert outcomes == ["done", "duplicate", "duplicate"]
    assert [e.changes["key"] for e in effects()] == ["k-1"]
    message.refresh_from_db()
    assert message.status == MessageStatus.DONE
    assert message.consumed_at is not None


def test_a_failing_handler_backs_off_then_parks_after_max_attempts(in_alpha, settings):
    # given: the failing topic allows 3 attempts; base delay 30 s
    settings.KEEL_OUTBOX_RETRY_BASE_SECONDS = 30
    message = services.enqueue(FAILING_TOPIC, {}, key="doomed")
    delays = []

    # when: each attempt fails; a copy arriving during the backoff is not run
    for _ in range(2):
        assert services.consume(message.pk) == "failed"
        message.refresh_from_db()
        delays.append((message.next_attempt_at - timezone.now()).total_seconds())
        assert services.consume(message.pk) == "not_due"
        OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    outcome = services.consume(message.pk)

    # then: exponential backoff with jitter, the handler's writes rolled back each time,
    # parked after the third failure and logged
    assert 24 - 1 <= delays[0] <= 36 and 48 - 1 <= delays[1] <= 72
    assert outcome == "parked"
    message.refresh_from_db()
    assert (message.status, message.attempts) == (MessageStatus.DEAD, 3)
    assert message.last_error == "ConnectionError: partner API is down"
    assert message.parked_at is not None
    assert effects() == []
    assert services.consume(message.pk) == "duplicate"
    parked = ActivityEntry.objects.get(action="outbox.parked")
    assert parked.changes["key"] == "doomed" and parked.changes["attempts"] == 3


def test_a_handler_told_when_to_come_back_waits_that_long_then_parks(in_alpha, settings):
    # given: backoff would be 30 s; the remote asked for 300 s, then gave no time
    settings.KEEL_OUTBOX_RETRY_BASE_SECONDS = 30
    told = services.enqueue(WAITING_TOPIC, {"after": 300}, key="told")
    untold = services.enqueue(WAITING_TOPIC, {}, key="untold")

    # when
    assert services.consume(told.pk) == "failed"
    assert services.consume(untold.pk) == "failed"

    # then: the told one waits exactly what it was told, the other the usual backoff; the
    # handler's writes rolled back; a second refusal parks it like any failure
    told.refresh_from_db()
    untold.refresh_from_db()
    assert 299 <= (told.next_attempt_at - timezone.now()).total_seconds() <= 300
    assert 24 - 1 <= (untold.next_attempt_at - timezone.now()).total_seconds() <= 36
    assert told.last_error == "RetryLater: partner asked to come back later"
    assert effects() == []
    OutboxMessage.objects.filter(pk=told.pk).update(next_attempt_at=timezone.now())
    assert services.consume(told.pk) == "parked"


def test_retry_gives_a_parked_message_fresh_attempts(in_alpha):
    # given
    message = services.enqueue(FAILING_TOPIC, {}, key="parked-1")
    OutboxMessage.objects.filter(pk=message.pk).update(
        status=MessageStatus.DEAD, attempts=3, parked_at=timezone.now(), last_error="boom"
    )

    # when
    services.retry_message(message)

    # then
    message.refresh_from_db()
    assert (message.status, message.attempts, message.parked_at) == (
        MessageStatus.PENDING,
        0,
        None,
    )
    assert ActivityEntry.objects.filter(action="outbox.retried").count() == 1
    with pytest.raises(ValidationError) as refused:
        services.retry_message(message)
    assert refused.value.code == "not_parked"


def test_a_message_without_a_handler_counts_as_failed(in_alpha):
    message = services.enqueue("nobody.listens", {}, key="orphan")

    assert services.consume(message.pk) == "failed"

    message.refresh_from_db()
    assert message.attempts == 1
    assert "No handler is registered" in message.last_error


def test_cleanup_drops_old_consumed_messages_only(in_alpha, settings):
    settings.KEEL_OUTBOX_RETENTION_DAYS = 7
    old_done = services.enqueue(EFFECT_TOPIC, {}, key="old-done")
    services.consume(old_done.pk)
    old_parked = services.enqueue(FAILING_TOPIC, {}, key="old-parked")
    OutboxMessage.objects.filter(pk=old_parked.pk).update(status=MessageStatus.DEAD)
    OutboxMessage.objects.update(
        created_at=timezone.now() - timedelta(days=8),
        consumed_at=timezone.now() - timedelta(days=8),
    )

    assert services.cleanup() == 1
    assert list(OutboxMessage.objects.values_list("key", flat=True)) == ["old-parked"]


# --- UI ------------------------------------------------------------------------------------


def test_parked_messages_are_listed_and_retried_from_the_outbox_page(brand_a, owner_a):
    # given
    with in_schema(brand_a):
        message = services.enqueue(FAILING_TOPIC, {}, key="shown-parked")
        OutboxMessage.objects.filter(pk=message.pk).update(
            status=MessageStatus.DEAD, attempts=3, last_error="HTTPError: 502 from partner"
        )
    client = brand_client(brand_a, owner_a)

    # when
    page = client.get("/outbox/")
    retried = client.post(f"/outbox/{message.pk}/retry/")

    # then
    assert page.status_code == 200
    html = page.content.decode()
    assert "shown-parked" in html and "HTTPError: 502 from partner" in html and "Retry" in html
    assert retried.status_code == 302
    with in_schema(brand_a):
        message.refresh_from_db()
        assert message.status == MessageStatus.PENDING


def test_the_outbox_page_needs_outbox_manage(brand_a):
    viewer = make_user(brand_a, role="viewer")
    buyer = make_user(brand_a, role="buyer")

    for user in (viewer, buyer):
        client = brand_client(brand_a, user)
        assert client.get("/outbox/").status_code == 403
        assert client.post("/outbox/retry/").status_code == 403


def test_ops_managers_reach_the_outbox_from_the_workers_page(brand_a):
    ops = brand_client(brand_a, make_user(brand_a, role="ops_manager"))

    assert ops.get("/outbox/").status_code == 200
    assert 'href="/outbox/"' in ops.get("/workers/").content.decode()
