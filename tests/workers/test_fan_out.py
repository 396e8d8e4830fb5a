"""workers.fan_out, run eagerly, inspected at the Redis broker: one message per real
brand, each carrying that brand's `_schema_name`, and one fan-out per window."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from django.core.cache import cache
from django_tenants.utils import schema_context

from tenants.models import Brand, BrandKind
from tests.workers.celery_tasks import RECORD_FANOUT
from tests.workers.support import queued
from workers.tasks import fan_out

# A queue no worker consumes, so the messages stay put for inspection.
QUEUE = "keel_test_fan_out"


@pytest.fixture
def fan_out_queue(broker: redis.Redis) -> Iterator[str]:
    broker.delete(QUEUE)
    yield QUEUE
    broker.delete(QUEUE)


def claims(window: str) -> list[str]:
    """fan_out's per-brand dedupe keys for a window (in the public schema's keyspace)."""
    schemas = Brand.objects.brands().values_list("schema_name", flat=True)
    return [f"fanout:{RECORD_FANOUT}:{window}:{schema}" for schema in schemas]


@pytest.fixture
def window(db) -> Iterator[str]:
    value = f"test-{uuid.uuid4().hex[:12]}"
    yield value
    cache.delete_many(claims(value) + claims(f"{value}-2"))


def test_fan_out_sends_one_message_per_brand_with_its_schema(db, broker, fan_out_queue, window):
    # given
    brands = sorted(Brand.objects.brands().values_list("schema_name", flat=True))
    alpha = Brand.objects.get(slug="alpha").schema_name
    beta = Brand.objects.get(slug="beta").schema_name
    template = Brand.objects.get(kind=BrandKind.TEMPLATE).schema_name

    # when: run the way a worker runs it (tracer, prerun schema switch), from public
    sent = fan_out.apply(
        args=(RECORD_FANOUT,), kwargs={"window": window, "queue": fan_out_queue}
    ).get()

    # then
    messages = queued(broker, fan_out_queue)
    headers = sorted(m["headers"]["_schema_name"] for m in messages)
    assert sent == len(brands) == len(messages)
    assert headers == brands
    assert {alpha, beta} <= set(headers)
    assert "public" not in headers
    assert template not in headers
    assert {m["headers"]["task"] for m in messages} == {RECORD_FANOUT}
    assert [(m["args"], m["kwargs"]) for m in messages] == [([], {})] * len(brands)


def test_fan_out_sends_a_window_only_once(db, broker, fan_out_queue, window):
    # given: the window has been fanned out
    first = fan_out.apply(
        args=(RECORD_FANOUT,), kwargs={"window": window, "queue": fan_out_queue}
    ).get()

    # when: the same window comes again (second beat, redelivered message)
    again = fan_out.apply(
        args=(RECORD_FANOUT,), kwargs={"window": window, "queue": fan_out_queue}
    ).get()

    # then: nothing more is published
    assert first == Brand.objects.brands().count()
    assert again == 0
    assert len(queued(broker, fan_out_queue)) == first

    # and: the dedupe marks live in the public schema's cache keyspace, where beat's
    # fan-out runs, not in any brand's
    assert cache.get_many(claims(window)) == dict.fromkeys(claims(window), 1)
    with schema_context(Brand.objects.get(slug="alpha").schema_name):
        assert cache.get_many(claims(window)) == {}

    # when: the next window
    following = fan_out.apply(
        args=(RECORD_FANOUT,), kwargs={"window": f"{window}-2", "queue": fan_out_queue}
    ).get()

    # then: it fans out again
    assert following == first
    assert len(queued(broker, fan_out_queue)) == 2 * first


def test_fan_out_without_a_window_always_sends(db, broker, fan_out_queue):
    # given / when: no window (a manual run) twice
    first = fan_out.apply(args=(RECORD_FANOUT,), kwargs={"queue": fan_out_queue}).get()
    second = fan_out.apply(args=(RECORD_FANOUT,), kwargs={"queue": fan_out_queue}).get()

    # then
    assert first == second == Brand.objects.brands().count()
    assert len(queued(broker, fan_out_queue)) == 2 * first


def test_a_fan_out_cut_short_reaches_the_remaining_brands_when_redelivered(
    db, broker, fan_out_queue, window
):
    # given: a first delivery got through alpha and then its worker died (under
    # acks_late the message comes back); what it left behind is alpha's claim
    alpha = Brand.objects.get(slug="alpha").schema_name
    others = sorted(
        Brand.objects.brands().exclude(schema_name=alpha).values_list("schema_name", flat=True)
    )
    assert cache.add(f"fanout:{RECORD_FANOUT}:{window}:{alpha}", 1, 60)

    # when: the redelivered fan-out runs
    sent = fan_out.apply(
        args=(RECORD_FANOUT,), kwargs={"window": window, "queue": fan_out_queue}
    ).get()

    # then: every brand but alpha gets its message, alpha no second one
    headers = sorted(m["headers"]["_schema_name"] for m in queued(broker, fan_out_queue))
    assert sent == len(others)
    assert headers == others
